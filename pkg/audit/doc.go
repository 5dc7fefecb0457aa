// Package audit answers an auditor's two questions about a published
// pod-VM image: does this launch digest really bind this root file system
// (Verify), and does the source build into exactly these bytes
// (Reproduce).
//
// Verify re-derives from the artifacts of an output directory (or from
// artifacts named one by one) what they alone determine, and checks the
// chain that ties an attestation report's launch digest to every block of
// the root disk, link by link:
//
//  1. outputs: every output's sha256 is the one manifest.json lists;
//  2. rootfs: rootfs.img's GPT is sound, the dm-verity tree recomputed
//     from partition 1 is partition 2, and its root hash is the two
//     PARTUUIDs;
//  3. cmdline: the command line in podvm.igvm's guest pages (not
//     cmdline.txt) names exactly that root hash and verity geometry;
//  4. payload: the kernel and the initrd in podvm.igvm's pages are vmlinuz
//     and initrd.img, its command line is cmdline.txt;
//  5. launch digest: each target's launch digest, recomputed (from the
//     IGVM file, or for qemu-ovmf from the firmware, kernel, initrd and
//     command line), is reference-values.json's;
//  6. ID blocks: each ID block carries its target's digest and policy, its
//     signature verifies, its keys are the manifest's (their digests are
//     reported);
//  7. runtime handler: each target's runtime handler name is the hash of
//     the files a node installs.
//
// Every file is read once: rootfs.img is hashed and its verity tree
// recomputed in one sequential pass, the other artifacts are read into
// memory once and every link works from those bytes. A link that fails
// says what differs with both values; a damaged or hostile artifact fails
// the links that need it with one line, never a panic.
//
// Reproduce rebuilds a config with podvm.Build in a fresh temporary
// directory, without the stage cache, pinned to what an earlier build's
// manifest resolved (podvm.Config.PinTo), and compares the outputs
// artifact by artifact; the first stage whose output differs is explained
// by pkg/diff.
//
// docs/verify.md describes both for auditors.
package audit
