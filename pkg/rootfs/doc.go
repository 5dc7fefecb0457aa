// Package rootfs builds the read-only root filesystem disk of a pod VM: it
// layers OCI images, tar files and directories into one tree with
// pkg/source (kept in memory as metadata only; file contents are streamed
// from the sources and never extracted to the host), adds the kata-agent
// and its systemd units, writes the tree as an uncompressed erofs
// filesystem, computes its dm-verity hash tree with pkg/verity, and puts
// both into a GPT disk image whose partition UUIDs are the two halves of
// the root hash, as systemd's roothash= expects. Build returns a
// Description that also records what went in: each source's digests, the
// agent's and every added file's sha256.
//
// Everything in the output is a function of the inputs and a seed: inode
// order, data placement and directory order follow sorted path names, all
// timestamps are SOURCE_DATE_EPOCH, and every UUID and the verity salt are
// derived from the seed with HMAC-SHA256 as systemd-repart derives them
// (disk GUID from "disk-uuid", salt from "verity-salt", verity UUID from
// "verity-uuid"), except the filesystem UUID: repart keys it with the
// partition UUID, but here the partition UUID is half of the root hash,
// which covers the filesystem and so its UUID; to avoid that circle it is
// derived from the seed, with the message "file-system-uuid".
//
// Layering rules and the checks on hostile input are pkg/source's (see its
// package comment); the files the caller adds (Options.AddDirs and Files)
// are layers over the sources with the same rules.
package rootfs
