// Package erofs holds the on-disk format of EROFS (the Linux Enhanced
// Read-Only File System, fs/erofs/erofs_fs.h) as Go structs, shared by the
// writer in pkg/rootfs, and a reader for uncompressed images that is safe
// on hostile input: every reference (inode number, block address, name
// offset, size) is checked against the image before it is followed, a
// directory reached twice (a cycle or a hard-linked directory) is an
// error, directory data may not be shared between directories, and the
// work and memory of a walk are proportional to the image, never to a
// count or size the image declares. Walk visits a whole tree in one pass
// (linear in the number of entries, at any depth), keeping only the
// current path; file contents are read on demand through File, so two
// images can be compared file by file without holding either.
//
// Supported: the flat plain and flat inline data layouts (what
// mkfs.erofs writes without compression, and what pkg/rootfs writes),
// compact and extended inodes, inline and shared extended attributes.
// Compressed and chunk-based files, long xattr name prefixes and extra
// devices are refused with a FormatError.
package erofs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Format constants.
const (
	Magic            = 0xE0F5E1E2
	SuperblockOffset = 1024 // bytes from the start of the image
	SuperblockSize   = 128

	// FeatureCompatSbChksum says the superblock carries a crc32c.
	FeatureCompatSbChksum = 0x1
	// FeatureCompatMtime says compact inodes carry a 32-bit mtime
	// relative to the build time (kernel 6.x readers ignore it otherwise).
	FeatureCompatMtime = 0x2

	// InodeSlotSize is the unit of inode numbers (nids): an inode is at
	// meta_blkaddr * block size + nid * 32.
	InodeSlotSize     = 32
	CompactInodeSize  = 32
	ExtendedInodeSize = 64

	DirentSize           = 12
	XattrIbodyHeaderSize = 12
	XattrEntrySize       = 4
	MaxNameLen           = 255
)

// Data layouts (bits 1-3 of i_format).
const (
	LayoutFlatPlain         = 0
	LayoutCompressedFull    = 1
	LayoutFlatInline        = 2
	LayoutCompressedCompact = 3
	LayoutChunkBased        = 4
)

// Directory entry file types.
const (
	FTUnknown = iota
	FTRegular
	FTDirectory
	FTCharDev
	FTBlockDev
	FTFIFO
	FTSocket
	FTSymlink
)

// Unix file type bits of i_mode.
const (
	S_IFMT   = 0o170000
	S_IFSOCK = 0o140000
	S_IFLNK  = 0o120000
	S_IFREG  = 0o100000
	S_IFBLK  = 0o060000
	S_IFDIR  = 0o040000
	S_IFCHR  = 0o020000
	S_IFIFO  = 0o010000
)

// FileType returns the directory entry type of a mode (FTUnknown for
// none).
func FileType(mode uint32) uint8 {
	switch mode & S_IFMT {
	case S_IFREG:
		return FTRegular
	case S_IFDIR:
		return FTDirectory
	case S_IFCHR:
		return FTCharDev
	case S_IFBLK:
		return FTBlockDev
	case S_IFIFO:
		return FTFIFO
	case S_IFSOCK:
		return FTSocket
	case S_IFLNK:
		return FTSymlink
	}
	return FTUnknown
}

// Superblock is struct erofs_super_block, 128 bytes at SuperblockOffset.
type Superblock struct {
	Magic               uint32
	Checksum            uint32 // crc32c of the superblock's block from byte 1024, this field zero
	FeatureCompat       uint32
	BlkSzBits           uint8
	SbExtSlots          uint8
	RootNid             uint16
	Inos                uint64
	BuildTime           uint64
	BuildTimeNsec       uint32
	Blocks              uint32
	MetaBlkAddr         uint32
	XattrBlkAddr        uint32
	UUID                [16]byte
	VolumeName          [16]byte
	FeatureIncompat     uint32
	ComprAlgs           uint16 // available_compr_algs / lz4_max_distance
	ExtraDevices        uint16
	DevtSlotOff         uint16
	DirBlkBits          uint8
	XattrPrefixCount    uint8
	XattrPrefixStart    uint32
	PackedNid           uint64
	XattrFilterReserved uint8
	Reserved            [23]byte
}

// InodeCompact is struct erofs_inode_compact (32 bytes).
type InodeCompact struct {
	Format      uint16 // bit 0: 0 = compact; bits 1-3: data layout
	XattrICount uint16
	Mode        uint16
	Nlink       uint16
	Size        uint32
	Reserved    uint32 // mtime relative to the build time with FeatureCompatMtime
	U           uint32 // raw block address, or rdev for devices
	Ino         uint32
	UID         uint16
	GID         uint16
	Reserved2   uint32
}

// InodeExtended is struct erofs_inode_extended (64 bytes).
type InodeExtended struct {
	Format      uint16 // bit 0: 1 = extended; bits 1-3: data layout
	XattrICount uint16
	Mode        uint16
	Reserved    uint16
	Size        uint64
	U           uint32
	Ino         uint32
	UID         uint32
	GID         uint32
	Mtime       uint64
	MtimeNsec   uint32
	Nlink       uint32
	Reserved2   [16]byte
}

// Dirent is struct erofs_dirent (12 bytes); a directory block holds its
// dirents, then their names, each name ending where the next begins (the
// last one at the end of the block or at a NUL).
type Dirent struct {
	Nid      uint64
	NameOff  uint16
	FileType uint8
	Reserved uint8
}

// XattrIbodyHeader is struct erofs_xattr_ibody_header (12 bytes), followed
// by SharedCount shared xattr ids (uint32 each, in 4-byte units from
// xattr_blkaddr) and then the inline entries.
type XattrIbodyHeader struct {
	NameFilter  uint32
	SharedCount uint8
	Reserved    [7]byte
}

// XattrEntry is struct erofs_xattr_entry (4 bytes), followed by the name
// suffix and the value, padded to 4 bytes.
type XattrEntry struct {
	NameLen   uint8
	NameIndex uint8
	ValueSize uint16
}

// XattrSize is the bytes of inline xattrs (header, shared ids, entries)
// that an inode's i_xattr_icount gives.
func XattrSize(icount uint16) int {
	if icount == 0 {
		return 0
	}
	return XattrIbodyHeaderSize + 4*(int(icount)-1)
}

// Xattr name prefixes by index (EROFS_XATTR_INDEX_*).
var xattrPrefixes = [...]string{
	1: "user.",
	2: "system.posix_acl_access",
	3: "system.posix_acl_default",
	4: "trusted.",
	5: "lustre.",
	6: "security.",
}

// XattrPrefixIndex splits an xattr name into an index and the suffix
// stored after it; ok is false for a name no index covers.
func XattrPrefixIndex(name string) (index uint8, suffix string, ok bool) {
	switch name {
	case "system.posix_acl_access":
		return 2, "", true
	case "system.posix_acl_default":
		return 3, "", true
	}
	for _, i := range []uint8{1, 4, 6} {
		p := xattrPrefixes[i]
		if len(name) > len(p) && name[:len(p)] == p && len(name)-len(p) <= MaxNameLen {
			return i, name[len(p):], true
		}
	}
	return 0, "", false
}

// XattrPrefix is the name prefix of an index, "" when unknown.
func XattrPrefix(index uint8) string {
	if int(index) < len(xattrPrefixes) {
		return xattrPrefixes[index]
	}
	return ""
}

// Marshal encodes the superblock.
func (sb *Superblock) Marshal() []byte {
	b, err := binary.Append(make([]byte, 0, SuperblockSize), binary.LittleEndian, sb)
	if err != nil {
		panic(err) // fixed-size struct: cannot fail
	}
	return b
}

// Unmarshal decodes the superblock from at least 128 bytes.
func (sb *Superblock) Unmarshal(b []byte) error {
	_, err := binary.Decode(b, binary.LittleEndian, sb)
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SuperblockChecksum is the crc32c the kernel checks when
// FeatureCompatSbChksum is set: over the superblock's block from byte 1024
// to its end (b), with the checksum field taken as zero.
func SuperblockChecksum(b []byte) uint32 {
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(c[4:], 0)
	return ^crc32.Checksum(c, castagnoli)
}

// String names a data layout.
func layoutName(l int) string {
	switch l {
	case LayoutFlatPlain:
		return "flat plain"
	case LayoutCompressedFull:
		return "compressed (full)"
	case LayoutFlatInline:
		return "flat inline"
	case LayoutCompressedCompact:
		return "compressed (compact)"
	case LayoutChunkBased:
		return "chunk-based"
	}
	return fmt.Sprintf("unknown layout %d", l)
}
