package erofs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"
)

// FormatError is a malformed image: what is wrong and where (the byte
// offset in the image, and the inode and path when known).
type FormatError struct {
	Offset int64
	Nid    uint64 // 0 when not about an inode
	Path   string // "" when not known
	Msg    string
	Err    error // ErrChecksum for a superblock checksum mismatch, else nil
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("erofs: ")
	if e.Path != "" {
		fmt.Fprintf(&b, "%s: ", e.Path)
	}
	if e.Nid != 0 {
		fmt.Fprintf(&b, "inode %d ", e.Nid)
	}
	fmt.Fprintf(&b, "at offset %#x: %s", e.Offset, e.Msg)
	return b.String()
}

// Unwrap returns ErrChecksum for a checksum mismatch.
func (e *FormatError) Unwrap() error { return e.Err }

// ErrChecksum is wrapped by the FormatError of a superblock whose crc32c
// does not match.
var ErrChecksum = errors.New("checksum mismatch")

// Limits of the reader.
const (
	// MaxSymlinkSize bounds a symlink target (the kernel's is a page).
	MaxSymlinkSize = 64 << 10
	// MaxXattrs bounds the extended attributes of one inode.
	MaxXattrs = 1024
)

// FS is an open image. Its methods may be called concurrently only if the
// underlying io.ReaderAt allows it.
type FS struct {
	r         io.ReaderAt
	sb        Superblock
	blockSize int64
	size      int64 // bytes of the image: Blocks * blockSize
	metaStart int64
}

// Open reads and checks the superblock of an image of size bytes (for
// example a partition; the file system may be smaller, not larger).
func Open(r io.ReaderAt, size int64) (*FS, error) {
	blk := make([]byte, SuperblockOffset+SuperblockSize)
	if size < int64(len(blk)) {
		return nil, &FormatError{Msg: fmt.Sprintf("%d bytes are too small for an erofs image", size)}
	}
	if _, err := r.ReadAt(blk, 0); err != nil {
		return nil, fmt.Errorf("erofs: reading the superblock: %w", err)
	}
	fs := &FS{r: r}
	sb := &fs.sb
	if err := sb.Unmarshal(blk[SuperblockOffset:]); err != nil {
		return nil, fmt.Errorf("erofs: %w", err)
	}
	at := func(field int64, format string, args ...any) error {
		return &FormatError{Offset: SuperblockOffset + field, Msg: fmt.Sprintf(format, args...)}
	}
	if sb.Magic != Magic {
		return nil, at(0, "no erofs superblock (magic %#08x, want %#08x)", sb.Magic, uint32(Magic))
	}
	if sb.BlkSzBits < 9 || sb.BlkSzBits > 16 {
		return nil, at(12, "block size 2^%d: want 512 to 64 KiB", sb.BlkSzBits)
	}
	fs.blockSize = 1 << sb.BlkSzBits
	if sb.FeatureCompat&FeatureCompatSbChksum != 0 {
		n := fs.blockSize - SuperblockOffset
		if n < SuperblockSize {
			n = SuperblockSize
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, SuperblockOffset); err != nil {
			return nil, fmt.Errorf("erofs: reading the superblock: %w", err)
		}
		if got := SuperblockChecksum(b); got != sb.Checksum {
			return nil, &FormatError{Offset: SuperblockOffset + 4, Msg: fmt.Sprintf("superblock checksum %#08x, its bytes give %#08x", sb.Checksum, got), Err: ErrChecksum}
		}
	}
	if sb.FeatureIncompat != 0 {
		return nil, at(80, "incompatible features %#x (compression, chunks, devices, ...) are not supported", sb.FeatureIncompat)
	}
	if sb.ExtraDevices != 0 {
		return nil, at(86, "%d extra devices are not supported", sb.ExtraDevices)
	}
	if sb.SbExtSlots != 0 {
		return nil, at(13, "superblock extension slots are not supported")
	}
	fs.size = int64(sb.Blocks) * fs.blockSize
	if sb.Blocks == 0 || fs.size > size {
		return nil, at(36, "%d blocks of %d bytes (%d bytes): the image has %d", sb.Blocks, fs.blockSize, fs.size, size)
	}
	fs.metaStart = int64(sb.MetaBlkAddr) * fs.blockSize
	if sb.MetaBlkAddr >= sb.Blocks {
		return nil, at(40, "metadata block %d is beyond the image (%d blocks)", sb.MetaBlkAddr, sb.Blocks)
	}
	if sb.XattrBlkAddr >= sb.Blocks && sb.XattrBlkAddr != 0 {
		return nil, at(44, "shared xattr block %d is beyond the image (%d blocks)", sb.XattrBlkAddr, sb.Blocks)
	}
	if _, err := fs.Inode(uint64(sb.RootNid)); err != nil {
		return nil, err
	}
	if root, _ := fs.Inode(uint64(sb.RootNid)); !root.IsDir() {
		return nil, &FormatError{Offset: SuperblockOffset + 14, Nid: uint64(sb.RootNid), Msg: "the root inode is not a directory"}
	}
	return fs, nil
}

// Superblock returns the superblock.
func (fs *FS) Superblock() Superblock { return fs.sb }

// BlockSize is the file system block size in bytes.
func (fs *FS) BlockSize() int64 { return fs.blockSize }

// Size is the file system's size in bytes (blocks times block size).
func (fs *FS) Size() int64 { return fs.size }

// RootNid is the inode number of the root directory.
func (fs *FS) RootNid() uint64 { return uint64(fs.sb.RootNid) }

// Inode is one decoded and checked inode.
type Inode struct {
	Nid       uint64
	Mode      uint32 // type and permission bits
	UID, GID  uint32
	Nlink     uint32
	Size      uint64
	Mtime     uint64 // seconds; the build time for compact inodes
	MtimeNsec uint32
	Ino       uint32 // i_ino, for 32-bit stat
	Rdev      uint32 // devices: Linux new_encode_dev form
	Layout    int
	Extended  bool

	off       int64 // image offset of the inode
	xattrOff  int64 // image offset of the inline xattrs
	xattrSize int
	blkAddr   uint32 // first data block (flat layouts)
	tailOff   int64  // image offset of the inline tail (flat inline)
}

// IsDir says the inode is a directory.
func (i *Inode) IsDir() bool { return i.Mode&S_IFMT == S_IFDIR }

// inodeErr is a FormatError about inode nid.
func inodeErr(off int64, nid uint64, format string, args ...any) error {
	return &FormatError{Offset: off, Nid: nid, Msg: fmt.Sprintf(format, args...)}
}

// Inode reads and checks the inode nid: that it lies inside the image,
// that its type, layout and size are valid, and that its data (blocks and
// inline tail) lies inside the image.
func (fs *FS) Inode(nid uint64) (*Inode, error) {
	if nid > uint64(fs.size) { // cheap overflow guard; exact check below
		return nil, inodeErr(0, nid, "inode number beyond the image")
	}
	off := fs.metaStart + int64(nid)*InodeSlotSize
	if off+CompactInodeSize > fs.size {
		return nil, inodeErr(off, nid, "inode number beyond the image (%d bytes)", fs.size)
	}
	var buf [ExtendedInodeSize]byte
	n := CompactInodeSize
	if _, err := fs.r.ReadAt(buf[:n], off); err != nil {
		return nil, fmt.Errorf("erofs: reading inode %d at offset %#x: %w", nid, off, err)
	}
	format := binary.LittleEndian.Uint16(buf[0:])
	in := &Inode{Nid: nid, off: off, Layout: int(format>>1) & 7, Extended: format&1 != 0}
	var icount uint16
	if in.Extended {
		n = ExtendedInodeSize
		if off+int64(n) > fs.size {
			return nil, inodeErr(off, nid, "extended inode beyond the image")
		}
		if _, err := fs.r.ReadAt(buf[:n], off); err != nil {
			return nil, fmt.Errorf("erofs: reading inode %d at offset %#x: %w", nid, off, err)
		}
		var x InodeExtended
		binary.Decode(buf[:], binary.LittleEndian, &x)
		icount = x.XattrICount
		in.Mode, in.UID, in.GID, in.Nlink, in.Size = uint32(x.Mode), x.UID, x.GID, x.Nlink, x.Size
		in.Mtime, in.MtimeNsec, in.Ino, in.blkAddr = x.Mtime, x.MtimeNsec, x.Ino, x.U
	} else {
		var c InodeCompact
		binary.Decode(buf[:], binary.LittleEndian, &c)
		icount = c.XattrICount
		in.Mode, in.UID, in.GID, in.Nlink, in.Size = uint32(c.Mode), uint32(c.UID), uint32(c.GID), uint32(c.Nlink), uint64(c.Size)
		in.Mtime, in.MtimeNsec, in.Ino, in.blkAddr = fs.sb.BuildTime, fs.sb.BuildTimeNsec, c.Ino, c.U
		if fs.sb.FeatureCompat&FeatureCompatMtime != 0 {
			in.Mtime += uint64(c.Reserved)
		}
	}
	if format>>4 != 0 && format>>4 != 1 { // bit 4 is EROFS_I_NLINK_1_BIT in newer images
		return nil, inodeErr(off, nid, "unknown inode format bits %#x", format)
	}
	in.xattrOff = off + int64(n)
	in.xattrSize = XattrSize(icount)
	fixed := int64(n) + int64(in.xattrSize)
	if off+fixed > fs.size {
		return nil, inodeErr(off+2, nid, "extended attributes (%d bytes) run beyond the image", in.xattrSize)
	}
	switch in.Mode & S_IFMT {
	case S_IFREG, S_IFDIR, S_IFLNK:
	case S_IFCHR, S_IFBLK:
		in.Rdev, in.blkAddr = in.blkAddr, 0
		if in.Size != 0 {
			return nil, inodeErr(off+8, nid, "a device with size %d", in.Size)
		}
		return in, nil
	case S_IFIFO, S_IFSOCK:
		if in.Size != 0 {
			return nil, inodeErr(off+8, nid, "a FIFO or socket with size %d", in.Size)
		}
		return in, nil
	default:
		return nil, inodeErr(off+4, nid, "mode %#o has no file type", in.Mode)
	}
	if in.Mode&S_IFMT == S_IFLNK && (in.Size == 0 || in.Size > MaxSymlinkSize) {
		return nil, inodeErr(off+8, nid, "symlink of %d bytes: want 1 to %d", in.Size, MaxSymlinkSize)
	}
	if in.IsDir() && in.Size == 0 {
		return nil, inodeErr(off+8, nid, "empty directory data (no . and ..)")
	}
	if in.Size > uint64(fs.size) {
		return nil, inodeErr(off+8, nid, "size %d is larger than the image", in.Size)
	}
	size := int64(in.Size)
	switch in.Layout {
	case LayoutFlatPlain:
		if err := fs.checkBlocks(in, (size+fs.blockSize-1)/fs.blockSize); err != nil {
			return nil, err
		}
	case LayoutFlatInline:
		tail := size % fs.blockSize
		if err := fs.checkBlocks(in, size/fs.blockSize); err != nil {
			return nil, err
		}
		in.tailOff = off + fixed
		// The kernel requires the inline tail in the inode's block.
		if tail > 0 && (off%fs.blockSize)+fixed+tail > fs.blockSize {
			return nil, inodeErr(off, nid, "inline data (%d bytes after %d of inode) crosses a block boundary", tail, fixed)
		}
	default:
		return nil, inodeErr(off, nid, "%s data layout is not supported", layoutName(in.Layout))
	}
	return in, nil
}

// checkBlocks checks that n data blocks from the inode's block address lie
// inside the image.
func (fs *FS) checkBlocks(in *Inode, n int64) error {
	if n > 0 && int64(in.blkAddr)+n > int64(fs.sb.Blocks) {
		return inodeErr(in.off+16, in.Nid, "data blocks %d+%d are beyond the image (%d blocks)", in.blkAddr, n, fs.sb.Blocks)
	}
	return nil
}

// Offset is the byte offset of the inode in the image.
func (i *Inode) Offset() int64 { return i.off }

// ContentOffset maps byte off of an inode's content to its byte offset in
// the image (content lives in data blocks, its tail possibly inline after
// the inode); ok is false beyond the content.
func (fs *FS) ContentOffset(in *Inode, off int64) (imageOff int64, ok bool) {
	if off < 0 || off >= int64(in.Size) {
		return 0, false
	}
	full := int64(in.Size)
	if in.Layout == LayoutFlatInline {
		full -= full % fs.blockSize
	}
	if off < full {
		return int64(in.blkAddr)*fs.blockSize + off, true
	}
	return in.tailOff + off - full, true
}

// File is the content of a regular file, a symlink or a directory, read on
// demand. It is an io.ReaderAt and, from its start, an io.Reader.
type File struct {
	fs   *FS
	in   *Inode
	full int64 // bytes in data blocks
	pos  int64
}

// Open returns the content of a regular file, symlink or directory.
func (fs *FS) Open(in *Inode) (*File, error) {
	switch in.Mode & S_IFMT {
	case S_IFREG, S_IFLNK, S_IFDIR:
	default:
		return nil, fmt.Errorf("erofs: inode %d (mode %#o) has no content", in.Nid, in.Mode)
	}
	full := int64(in.Size)
	if in.Layout == LayoutFlatInline {
		full -= full % fs.blockSize
	}
	return &File{fs: fs, in: in, full: full}, nil
}

// Size is the content's size in bytes.
func (f *File) Size() int64 { return int64(f.in.Size) }

// ReadAt reads content at off.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	size := int64(f.in.Size)
	if off < 0 {
		return 0, errors.New("erofs: negative offset")
	}
	if off >= size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	n := 0
	if off < f.full {
		k := min(int64(len(p)), f.full-off)
		m, err := f.fs.r.ReadAt(p[:k], int64(f.in.blkAddr)*f.fs.blockSize+off)
		n += m
		if err != nil {
			return n, unexpectedEOF(err)
		}
		off += k
	}
	if n < len(p) {
		m, err := f.fs.r.ReadAt(p[n:], f.in.tailOff+off-f.full)
		n += m
		if err != nil {
			return n, unexpectedEOF(err)
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Read reads sequentially from the start.
func (f *File) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadLink returns a symlink's target.
func (fs *FS) ReadLink(in *Inode) (string, error) {
	if in.Mode&S_IFMT != S_IFLNK {
		return "", fmt.Errorf("erofs: inode %d is not a symlink", in.Nid)
	}
	f, _ := fs.Open(in)
	b := make([]byte, in.Size) // at most MaxSymlinkSize, checked by Inode
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return "", fmt.Errorf("erofs: reading symlink inode %d: %w", in.Nid, err)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return "", inodeErr(in.off, in.Nid, "symlink target holds a NUL byte")
	}
	return string(b), nil
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value string
}

// Xattrs returns an inode's extended attributes (inline and shared), in
// the order they are stored.
func (fs *FS) Xattrs(in *Inode) ([]Xattr, error) {
	if in.xattrSize == 0 {
		return nil, nil
	}
	if in.xattrSize < XattrIbodyHeaderSize {
		return nil, inodeErr(in.off+2, in.Nid, "xattr area of %d bytes", in.xattrSize)
	}
	b := make([]byte, in.xattrSize)
	if _, err := fs.r.ReadAt(b, in.xattrOff); err != nil {
		return nil, fmt.Errorf("erofs: reading the xattrs of inode %d: %w", in.Nid, err)
	}
	shared := int(b[4])
	p := XattrIbodyHeaderSize + 4*shared
	if p > len(b) {
		return nil, inodeErr(in.xattrOff+4, in.Nid, "%d shared xattrs do not fit in %d bytes", shared, len(b))
	}
	var out []Xattr
	for i := 0; i < shared; i++ {
		id := binary.LittleEndian.Uint32(b[XattrIbodyHeaderSize+4*i:])
		off := int64(fs.sb.XattrBlkAddr)*fs.blockSize + int64(id)*4
		x, _, err := fs.xattrAt(in, off, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	for p < len(b) {
		x, n, err := fs.xattrAt(in, in.xattrOff+int64(p), b[p:])
		if err != nil {
			return nil, err
		}
		out = append(out, x)
		if len(out) > MaxXattrs {
			return nil, inodeErr(in.xattrOff, in.Nid, "more than %d xattrs", MaxXattrs)
		}
		p += n
	}
	return out, nil
}

// xattrAt decodes the entry at image offset off, from b when given (inline)
// or from the image (shared); it returns the entry's padded size.
func (fs *FS) xattrAt(in *Inode, off int64, b []byte) (Xattr, int, error) {
	if b == nil {
		if off < 0 || off+XattrEntrySize > fs.size {
			return Xattr{}, 0, inodeErr(off, in.Nid, "shared xattr beyond the image")
		}
		var h [XattrEntrySize]byte
		if _, err := fs.r.ReadAt(h[:], off); err != nil {
			return Xattr{}, 0, fmt.Errorf("erofs: reading a shared xattr at %#x: %w", off, err)
		}
		n := XattrEntrySize + int64(h[0]) + int64(binary.LittleEndian.Uint16(h[2:]))
		if off+n > fs.size {
			return Xattr{}, 0, inodeErr(off, in.Nid, "shared xattr beyond the image")
		}
		b = make([]byte, n)
		if _, err := fs.r.ReadAt(b, off); err != nil {
			return Xattr{}, 0, fmt.Errorf("erofs: reading a shared xattr at %#x: %w", off, err)
		}
	}
	if len(b) < XattrEntrySize {
		return Xattr{}, 0, inodeErr(off, in.Nid, "truncated xattr entry")
	}
	nameLen, index, valLen := int(b[0]), b[1], int(binary.LittleEndian.Uint16(b[2:]))
	n := XattrEntrySize + nameLen + valLen
	if n > len(b) {
		return Xattr{}, 0, inodeErr(off, in.Nid, "xattr entry of %d bytes overruns its area (%d bytes)", n, len(b))
	}
	prefix := XattrPrefix(index)
	if index&0x80 != 0 {
		return Xattr{}, 0, inodeErr(off+1, in.Nid, "long xattr name prefixes are not supported")
	}
	if prefix == "" {
		return Xattr{}, 0, inodeErr(off+1, in.Nid, "unknown xattr name index %d", index)
	}
	name := b[XattrEntrySize : XattrEntrySize+nameLen]
	x := Xattr{Name: prefix + string(name), Value: string(b[XattrEntrySize+nameLen : n])}
	return x, (n + 3) &^ 3, nil
}

// DirEntry is one decoded directory entry.
type DirEntry struct {
	Name     string
	Nid      uint64
	FileType uint8
}

// dirBlock decodes directory block i of dir (the block's bytes in buf,
// reused): its entries in order, checked against the block.
func (fs *FS) dirBlock(dir *Inode, f *File, i int64, buf []byte, out []DirEntry) ([]DirEntry, error) {
	start := i * fs.blockSize
	n := min(fs.blockSize, int64(dir.Size)-start)
	b := buf[:n]
	if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
		return nil, fmt.Errorf("erofs: reading directory inode %d: %w", dir.Nid, err)
	}
	at := func(rel int, format string, args ...any) error {
		off := int64(dir.blkAddr)*fs.blockSize + start + int64(rel)
		if start >= f.full {
			off = dir.tailOff + start - f.full + int64(rel)
		}
		return &FormatError{Offset: off, Nid: dir.Nid, Msg: fmt.Sprintf("directory block %d: ", i) + fmt.Sprintf(format, args...)}
	}
	if n < DirentSize {
		return nil, at(0, "%d bytes cannot hold a directory entry", n)
	}
	first := int(binary.LittleEndian.Uint16(b[8:]))
	if first < DirentSize || first%DirentSize != 0 || first >= int(n) {
		return nil, at(8, "first name offset %d: want a multiple of %d below %d", first, DirentSize, n)
	}
	count := first / DirentSize
	out = out[:0]
	for k := 0; k < count; k++ {
		d := b[k*DirentSize:]
		nameOff := int(binary.LittleEndian.Uint16(d[8:]))
		end := int(n)
		if k+1 < count {
			end = int(binary.LittleEndian.Uint16(d[DirentSize+8:]))
		}
		if nameOff < first || nameOff >= end || end > int(n) {
			return nil, at(k*DirentSize+8, "entry %d: name at %d-%d is outside the names (%d-%d)", k, nameOff, end, first, n)
		}
		name := b[nameOff:end]
		if k+1 == count {
			if z := bytes.IndexByte(name, 0); z >= 0 {
				name = name[:z]
			}
		}
		if len(name) == 0 || len(name) > MaxNameLen || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
			return nil, at(nameOff, "entry %d: bad name %s", k, quoteShort(name))
		}
		ft := d[10]
		if ft > FTSymlink {
			return nil, at(k*DirentSize+10, "entry %d (%s): unknown file type %d", k, quoteShort(name), ft)
		}
		out = append(out, DirEntry{Name: string(name), Nid: binary.LittleEndian.Uint64(d), FileType: ft})
	}
	return out, nil
}

// ReadDir calls fn for each entry of a directory in stored (sorted)
// order, "." and ".." included, reading one block at a time.
func (fs *FS) ReadDir(dir *Inode, fn func(DirEntry) error) error {
	if !dir.IsDir() {
		return fmt.Errorf("erofs: inode %d is not a directory", dir.Nid)
	}
	f, _ := fs.Open(dir)
	buf := make([]byte, fs.blockSize)
	var ents []DirEntry
	blocks := (int64(dir.Size) + fs.blockSize - 1) / fs.blockSize
	for i := int64(0); i < blocks; i++ {
		var err error
		if ents, err = fs.dirBlock(dir, f, i, buf, ents); err != nil {
			return err
		}
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// WalkFunc is called by Walk for each path, parents before children,
// entries of a directory in name order; path is "/" for the root and
// "/a/b" below it. Returning fs.SkipDir from a directory skips its
// contents (from another entry it is ignored); any other error ends the
// walk.
type WalkFunc func(path string, in *Inode) error

// frame is one directory being walked: where to resume it.
type frame struct {
	dir     *Inode
	f       *File
	block   int64 // next block to read
	entry   int   // next entry of that block
	pathLen int   // length of the directory's path in Walk's buffer
	prevs   string
}

// Walk visits every inode reachable from the root, once per name (a hard
// link is visited once per name). It checks what a walk relies on: each
// directory's "." is itself and ".." its parent, names are unique and
// sorted, every entry's type matches its inode's, every nid lies in the
// image, no directory is reached twice (a cycle or a hard-linked
// directory) and no two directories share data blocks. It keeps only the
// current path and one position per level (a block is read again when a
// walk returns to it), so memory is proportional to the depth and the
// number of directories, and work to the number of entries. The path
// strings handed to fn add up to the sum of all path lengths, which a
// hostile image can make grow with the square of its depth: a caller that
// keeps them bounds them (rootfs.MaxListing does).
func (fs *FS) Walk(ctx context.Context, fn WalkFunc) error {
	root, err := fs.Inode(fs.RootNid())
	if err != nil {
		return err
	}
	visited := map[uint64]struct{}{root.Nid: {}}
	claimed := map[uint32]uint64{} // directory data block -> directory nid
	path := make([]byte, 0, 256)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fn("/", root); err != nil {
		if err == iofs.SkipDir {
			return nil
		}
		return err
	}
	claim := func(dir *Inode, p string) error {
		blocks := int64(dir.Size) / fs.blockSize
		if dir.Layout == LayoutFlatPlain && int64(dir.Size)%fs.blockSize != 0 {
			blocks++
		}
		for b := int64(0); b < blocks; b++ {
			blk := dir.blkAddr + uint32(b)
			if other, ok := claimed[blk]; ok {
				return &FormatError{Offset: int64(blk) * fs.blockSize, Nid: dir.Nid, Path: p,
					Msg: fmt.Sprintf("directory data block %d is also directory inode %d's", blk, other)}
			}
			claimed[blk] = dir.Nid
		}
		return nil
	}
	if err := claim(root, "/"); err != nil {
		return err
	}
	rf, _ := fs.Open(root)
	stack := []frame{{dir: root, f: rf}}
	buf := make([]byte, fs.blockSize)
	var ents []DirEntry
	count := 0
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		dir := top.dir
		blocks := (int64(dir.Size) + fs.blockSize - 1) / fs.blockSize
		if top.block >= blocks {
			stack = stack[:len(stack)-1]
			continue
		}
		dpath := string(path[:top.pathLen])
		if dpath == "" {
			dpath = "/"
		}
		if ents, err = fs.dirBlock(dir, top.f, top.block, buf, ents); err != nil {
			var fe *FormatError
			if errors.As(err, &fe) {
				fe.Path = dpath
			}
			return err
		}
		descended := false
		for top.entry < len(ents) {
			e := ents[top.entry]
			top.entry++
			if count++; count%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			bad := func(format string, args ...any) error {
				return &FormatError{Offset: fs.metaStart + int64(dir.Nid)*InodeSlotSize, Nid: dir.Nid, Path: dpath,
					Msg: fmt.Sprintf("entry %q: ", e.Name) + fmt.Sprintf(format, args...)}
			}
			if e.Name <= top.prevs {
				return bad("names are not unique and sorted (after %q)", top.prevs)
			}
			top.prevs = e.Name
			switch e.Name {
			case ".":
				if e.Nid != dir.Nid {
					return bad("points to inode %d, not to the directory itself", e.Nid)
				}
				continue
			case "..":
				parent := dir.Nid
				if len(stack) > 1 {
					parent = stack[len(stack)-2].dir.Nid
				}
				if e.Nid != parent {
					return bad("points to inode %d, not to the parent %d", e.Nid, parent)
				}
				continue
			}
			in, err := fs.Inode(e.Nid)
			if err != nil {
				var fe *FormatError
				if errors.As(err, &fe) {
					fe.Path = joinPath(path[:top.pathLen], e.Name)
				}
				return err
			}
			if ft := FileType(in.Mode); e.FileType != FTUnknown && e.FileType != ft {
				return bad("type %d in the directory, %d in inode %d", e.FileType, ft, e.Nid)
			}
			p := joinPath(path[:top.pathLen], e.Name)
			if !in.IsDir() {
				if err := fn(p, in); err != nil && err != iofs.SkipDir {
					return err
				}
				continue
			}
			if _, ok := visited[in.Nid]; ok {
				return bad("directory inode %d is reached twice (a cycle or a hard link to a directory)", in.Nid)
			}
			visited[in.Nid] = struct{}{}
			if err := claim(in, p); err != nil {
				return err
			}
			if err := fn(p, in); err != nil {
				if err == iofs.SkipDir {
					continue
				}
				return err
			}
			// Descend: the parent resumes at its next entry, re-reading
			// this block then.
			if top.entry >= len(ents) {
				top.block, top.entry = top.block+1, 0
			}
			path = append(path[:top.pathLen], '/')
			path = append(path, e.Name...)
			cf, _ := fs.Open(in)
			stack = append(stack, frame{dir: in, f: cf, pathLen: len(path)})
			descended = true
			break
		}
		if !descended {
			top.block, top.entry = top.block+1, 0
		}
	}
	return nil
}

// quoteShort quotes at most 64 bytes of a name for a one-line message.
func quoteShort(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%q... (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func joinPath(dir []byte, name string) string {
	return string(dir) + "/" + name
}
