// Package rootfs builds the read-only root filesystem disk of a pod VM: it
// layers OCI images, tar files and directories into one tree (kept in
// memory as metadata only; file contents are streamed from the sources and
// never extracted to the host), adds the kata-agent and its systemd units,
// writes the tree as an uncompressed erofs filesystem, computes its
// dm-verity hash tree with pkg/verity, and puts both into a GPT disk image
// whose partition UUIDs are the two halves of the root hash, as systemd's
// roothash= expects.
//
// Everything in the output is a function of the inputs and a seed: inode
// order, data placement and directory order follow sorted path names, all
// timestamps are SOURCE_DATE_EPOCH, and every UUID and the verity salt are
// derived from the seed with HMAC-SHA256.
package rootfs
