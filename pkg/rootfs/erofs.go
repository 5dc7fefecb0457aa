package rootfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
)

// The erofs writer. We write uncompressed erofs ourselves instead of using
// github.com/erofs/go-erofs's writer because that writer gives every hard
// link an inode of its own, takes its build time from the clock, and wants
// to produce the whole image from an fs.FS, while we place file data
// straight into the disk image as it streams out of the layers (pass 2 of
// Build) and need exact control of inode order, uid/gid, xattrs and device
// numbers. The on-disk structures are pkg/erofs's, whose reader Inspect
// uses; go-erofs's reader is the tests' independent check.
//
// Layout: block 0 holds the superblock at byte 1024; file, directory and
// symlink data blocks follow from block 1 in inode order; the metadata area
// (inodes with their inline xattrs and inline tails) comes last, starting at
// meta_blkaddr. Inodes are numbered in depth-first order of sorted names,
// the root first (nid 1: the kernel's st_ino is the nid, and 0 is not a
// valid inode number). Compact 32-byte inodes are used unless uid, gid,
// nlink or size need the extended form. No timestamps are stored: every
// inode's time is the superblock build time, SOURCE_DATE_EPOCH.

const (
	blockBits = 12
	blockSize = 1 << blockBits

	layoutFlatPlain  = erofs.LayoutFlatPlain
	layoutFlatInline = erofs.LayoutFlatInline

	direntSize   = erofs.DirentSize
	xattrHdrSize = erofs.XattrIbodyHeaderSize
)

// layout is where the erofs writer put an inode.
type layout struct {
	done      bool
	ino       uint32
	nid       uint64
	nlink     uint32
	extended  bool
	xattrs    []byte
	dataSize  int64
	dataKind  int    // layoutFlatPlain or layoutFlatInline
	blkaddr   uint32 // first data block (absolute fs block)
	inlineOff int64  // offset in the metadata area of the inline tail
	parent    *inode // directories: the parent directory
	names     []string
}

// erofsImage is a laid-out file system, ready to be written.
type erofsImage struct {
	inodes      []*inode
	metaBlkAddr uint32
	blocks      uint32
	meta        []byte // the metadata area, blocks [metaBlkAddr, blocks)
	uuid        [16]byte
	buildTime   uint64
}

// Size is the file system's size in bytes.
func (im *erofsImage) Size() int64 { return int64(im.blocks) * blockSize }

// encodeXattrs builds the inline xattr body (header and entries) of an inode.
func encodeXattrs(x map[string]string) []byte {
	if len(x) == 0 {
		return nil
	}
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := make([]byte, xattrHdrSize)
	for _, k := range keys {
		idx, suf, _ := erofs.XattrPrefixIndex(k)
		v := x[k]
		var h [4]byte
		h[0] = uint8(len(suf))
		h[1] = idx
		binary.LittleEndian.PutUint16(h[2:], uint16(len(v)))
		b = append(b, h[:]...)
		b = append(b, suf...)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func ftypeOf(mode uint32) uint8 { return erofs.FileType(mode) }

type dirent struct {
	name  string
	nid   uint64
	ftype uint8
}

// dirData encodes directory entries (sorted by name) into erofs directory
// blocks: each block holds its dirents, then their names; all blocks but the
// last are padded to the block size.
func dirData(ents []dirent) []byte {
	var out []byte
	for i := 0; i < len(ents); {
		j, used := i, 0
		for j < len(ents) && used+direntSize+len(ents[j].name) <= blockSize {
			used += direntSize + len(ents[j].name)
			j++
		}
		blk := make([]byte, used)
		nameOff := (j - i) * direntSize
		for k := i; k < j; k++ {
			d := blk[(k-i)*direntSize:]
			binary.LittleEndian.PutUint64(d[0:], ents[k].nid)
			binary.LittleEndian.PutUint16(d[8:], uint16(nameOff))
			d[10] = ents[k].ftype
			nameOff += copy(blk[nameOff:], ents[k].name)
		}
		out = append(out, blk...)
		if j < len(ents) {
			out = append(out, make([]byte, blockSize-used)...)
		}
		i = j
	}
	return out
}

func (n *inode) dirents() []dirent {
	ents := make([]dirent, 0, len(n.children)+2)
	ents = append(ents, dirent{".", n.lay.nid, 2}, dirent{"..", n.lay.parent.lay.nid, 2})
	for _, name := range n.lay.names {
		c := n.children[name]
		ents = append(ents, dirent{name, c.lay.nid, ftypeOf(c.mode)})
	}
	sort.Slice(ents, func(a, b int) bool { return ents[a].name < ents[b].name })
	return ents
}

// layoutErofs numbers the inodes, decides where each one's data goes and
// sizes the image. Nothing is written yet.
func layoutErofs(t *tree, buildTime uint64, uuid [16]byte) (*erofsImage, error) {
	im := &erofsImage{uuid: uuid, buildTime: buildTime}
	// Depth-first, sorted names, root first; hard links visited once.
	t.root.lay = layout{parent: t.root}
	var walk func(n *inode)
	walk = func(n *inode) {
		n.lay.done = true
		n.lay.ino = uint32(len(im.inodes) + 1)
		im.inodes = append(im.inodes, n)
		if !n.isDir() {
			return
		}
		n.lay.names = sortedNames(n)
		n.lay.nlink = 2
		for _, name := range n.lay.names {
			c := n.children[name]
			if c.isDir() {
				n.lay.nlink++
				c.lay = layout{parent: n}
				walk(c)
				continue
			}
			if !c.lay.done {
				c.lay = layout{}
				walk(c)
			}
			c.lay.nlink++
		}
	}
	walk(t.root)

	// Sizes of everything, then the metadata area. Slot 0 stays empty:
	// Linux uses the nid as the inode number, and 0 is no valid st_ino.
	cur := int64(32)
	for _, n := range im.inodes {
		l := &n.lay
		switch n.mode & sIFMT {
		case sIFREG:
			l.dataSize = n.size
		case sIFLNK:
			l.dataSize = int64(len(n.target))
		case sIFDIR:
			ents := make([]dirent, 0, len(l.names)+2)
			ents = append(ents, dirent{name: "."}, dirent{name: ".."})
			for _, name := range l.names {
				ents = append(ents, dirent{name: name})
			}
			l.dataSize = int64(len(dirData(ents)))
		}
		l.extended = n.uid > 0xffff || n.gid > 0xffff || l.nlink > 0xffff || l.dataSize > 0xffffffff
		l.xattrs = encodeXattrs(n.xattrs)
		hdr := int64(32)
		if l.extended {
			hdr = 64
		}
		fixed := hdr + int64(len(l.xattrs))
		if fixed > blockSize {
			return nil, errors.New("erofs: extended attributes of one file exceed a block")
		}
		cur = (cur + 31) &^ 31
		room := blockSize - cur%blockSize
		tail := l.dataSize % blockSize
		l.dataKind = layoutFlatPlain
		switch {
		case tail == 0:
		case fixed+tail <= room:
			l.dataKind = layoutFlatInline
		case tail <= blockSize/4 && fixed+tail <= blockSize:
			cur = (cur + blockSize - 1) &^ (blockSize - 1)
			l.dataKind = layoutFlatInline
		}
		if l.dataKind == layoutFlatPlain && fixed > room {
			cur = (cur + blockSize - 1) &^ (blockSize - 1)
		}
		if n == t.root && cur != 32 {
			return nil, errors.New("erofs: internal error: root inode not first")
		}
		l.nid = uint64(cur / 32)
		cur += fixed
		if l.dataKind == layoutFlatInline {
			l.inlineOff = cur
			cur += tail
		}
	}
	metaBlocks := (cur + blockSize - 1) / blockSize
	// Data blocks from block 1, in inode order.
	blk := int64(1)
	for _, n := range im.inodes {
		l := &n.lay
		nb := l.dataSize / blockSize
		if l.dataKind == layoutFlatPlain && l.dataSize%blockSize != 0 {
			nb++
		}
		if nb > 0 {
			l.blkaddr = uint32(blk)
		}
		blk += nb
		if blk+metaBlocks > 0xffffffff {
			return nil, errors.New("erofs: image larger than 16 TiB")
		}
	}
	im.metaBlkAddr = uint32(blk)
	im.blocks = uint32(blk + metaBlocks)
	im.meta = make([]byte, metaBlocks*blockSize)
	return im, nil
}

// fileDataWriter places one regular file's content: full blocks at its data
// blocks in w (an io.WriterAt positioned at the file system's start), the
// tail inline in the metadata area or in its last data block.
func (im *erofsImage) writeFile(w io.WriterAt, n *inode, r io.Reader, buf []byte) error {
	l := &n.lay
	full := l.dataSize
	if l.dataKind == layoutFlatInline {
		full -= l.dataSize % blockSize
	}
	off := int64(l.blkaddr) * blockSize
	for done := int64(0); done < full; {
		k := min(int64(len(buf)), full-done)
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return unexpected(err)
		}
		if _, err := w.WriteAt(buf[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	if tail := l.dataSize - full; tail > 0 {
		if _, err := io.ReadFull(r, im.meta[l.inlineOff:l.inlineOff+tail]); err != nil {
			return unexpected(err)
		}
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeBytes places a symlink target or directory content like writeFile.
func (im *erofsImage) writeBytes(w io.WriterAt, n *inode, b []byte) error {
	l := &n.lay
	full := int64(len(b))
	if l.dataKind == layoutFlatInline {
		full -= int64(len(b)) % blockSize
		copy(im.meta[l.inlineOff:], b[full:])
	}
	if full > 0 {
		blk := make([]byte, (full+blockSize-1)&^(blockSize-1))
		copy(blk, b[:full])
		if _, err := w.WriteAt(blk, int64(l.blkaddr)*blockSize); err != nil {
			return err
		}
	}
	return nil
}

// finish writes directories, symlinks, every inode, the metadata area and
// the superblock. File contents must have been written with writeFile.
func (im *erofsImage) finish(w io.WriterAt) error {
	for _, n := range im.inodes {
		l := &n.lay
		switch n.mode & sIFMT {
		case sIFDIR:
			if err := im.writeBytes(w, n, dirData(n.dirents())); err != nil {
				return fmt.Errorf("erofs: %w", err)
			}
		case sIFLNK:
			if err := im.writeBytes(w, n, []byte(n.target)); err != nil {
				return fmt.Errorf("erofs: %w", err)
			}
		}
		b := im.meta[l.nid*32:]
		iu := l.blkaddr
		if t := n.mode & sIFMT; t == sIFCHR || t == sIFBLK {
			iu = n.rdev
		}
		icount := uint16(0)
		if len(l.xattrs) > 0 {
			icount = uint16((len(l.xattrs)-xattrHdrSize)/4 + 1)
		}
		format := uint16(l.dataKind) << 1
		var enc []byte
		if !l.extended {
			enc, _ = binary.Append(b[:0], binary.LittleEndian, &erofs.InodeCompact{
				Format: format, XattrICount: icount, Mode: uint16(n.mode), Nlink: uint16(l.nlink),
				Size: uint32(l.dataSize), U: iu, Ino: l.ino, UID: uint16(n.uid), GID: uint16(n.gid)})
		} else {
			enc, _ = binary.Append(b[:0], binary.LittleEndian, &erofs.InodeExtended{
				Format: format | 1, XattrICount: icount, Mode: uint16(n.mode), Size: uint64(l.dataSize),
				U: iu, Ino: l.ino, UID: n.uid, GID: n.gid, Mtime: im.buildTime, Nlink: l.nlink})
		}
		copy(b[len(enc):], l.xattrs)
	}
	if _, err := w.WriteAt(im.meta, int64(im.metaBlkAddr)*blockSize); err != nil {
		return fmt.Errorf("erofs: %w", err)
	}
	sb := &erofs.Superblock{
		Magic:         erofs.Magic,
		FeatureCompat: erofs.FeatureCompatSbChksum,
		BlkSzBits:     blockBits,
		RootNid:       uint16(im.inodes[0].lay.nid),
		Inos:          uint64(len(im.inodes)),
		BuildTime:     im.buildTime,
		Blocks:        im.blocks,
		MetaBlkAddr:   im.metaBlkAddr,
		UUID:          im.uuid,
	}
	blk := make([]byte, blockSize)
	copy(blk[erofs.SuperblockOffset:], sb.Marshal())
	binary.LittleEndian.PutUint32(blk[erofs.SuperblockOffset+4:], erofs.SuperblockChecksum(blk[erofs.SuperblockOffset:]))
	if _, err := w.WriteAt(blk, 0); err != nil {
		return fmt.Errorf("erofs: %w", err)
	}
	return nil
}
