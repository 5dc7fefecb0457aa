// Package source reads the sources of an image tree: OCI images (an image
// layout directory or archive, a docker save archive, a registry, or a
// v1.Image the caller holds), tar files and host directories. It parses a
// source string into a typed Source (Parse), resolves each source to its
// manifest, config and layer digests (Resolved), and layers the sources
// into one merged tree (Flatten): metadata in memory, file contents
// streamed from the sources on demand (Flat.Contents), never extracted to
// the host. pkg/rootfs writes that tree as an erofs; pkg/initrd as a cpio.
//
// Layering rules. A layer's whiteouts (".wh.NAME", ".wh..wh..opq") apply
// to the lower layers only, wherever they sit in the layer; names starting
// ".wh..wh." other than the opaque marker are ignored. Then the layer's
// other entries apply in order: a later entry replaces an earlier one of
// the same name, except that a directory over a directory only changes its
// metadata; missing parents are created (0755, root). A leading "/" is
// dropped.
//
// Hostile input. Rejected with one line naming the layer and the entry:
// a ".." component, a hard link that is absolute or escapes, an entry
// below a symlink or a file (symlinks in the tree are never followed) —
// these are InsecurePathError, errors.Is(err, ErrInsecurePath); a hard
// link that dangles or names a directory, a name component over 255 bytes,
// a file over MaxFileSize, more than MaxEntries entries, an entry type
// other than file, directory, symlink, hard link, device or FIFO, an xattr
// outside user., trusted., security. and the POSIX ACLs, a tar stream cut
// short (the error names the entry, its declared size and what was there)
// — FormatError; a blob or file whose digest does not match — CorruptError;
// an image for another platform. Work and memory follow the real size of
// the input, never a size a header declares.
//
// Digests. Every OCI blob is checked against its digest on every read (a
// layer's uncompressed stream against the config's diff_id when the blob
// itself is not at hand); registry blobs are kept by digest in a cache
// directory and checked again on every read. A tar source's sha256 is
// computed as it is first read and checked on the second read, so a file
// that changes during a build is an error, not a mixed tree.
package source
