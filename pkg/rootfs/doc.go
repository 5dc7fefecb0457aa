// Package rootfs builds the read-only root filesystem disk of a pod VM: it
// layers OCI images, tar files and directories into one tree (kept in
// memory as metadata only; file contents are streamed from the sources and
// never extracted to the host), adds the kata-agent and its systemd units,
// writes the tree as an uncompressed erofs filesystem, computes its
// dm-verity hash tree with pkg/verity, and puts both into a GPT disk image
// whose partition UUIDs are the two halves of the root hash, as systemd's
// roothash= expects. Flatten gives other builders (the initrd) the same
// merged tree of the same sources, with contents streamed on demand.
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
// Layering rules. A layer's whiteouts (".wh.NAME", ".wh..wh..opq") apply
// to the lower layers only, wherever they sit in the layer; names starting
// ".wh..wh." other than the opaque marker are ignored. Then the layer's
// other entries apply in order: a later entry replaces an earlier one of
// the same name, except that a directory over a directory only changes its
// metadata; missing parents are created (0755, root). A leading "/" is
// dropped. Rejected, with one line naming the layer and the entry: a ".."
// component; a hard link that is absolute, escapes, dangles or names a
// directory; an entry below a symlink or a file (symlinks in the tree are
// never followed); a name component over 255 bytes; a file over
// MaxFileSize; more than MaxEntries entries; an entry type other than
// file, directory, symlink, hard link, device or FIFO; an xattr outside
// user., trusted., security. and the POSIX ACLs; a blob whose digest does
// not match; an image for another platform.
package rootfs
