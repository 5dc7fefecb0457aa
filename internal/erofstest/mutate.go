// Package erofstest makes structure-aware mutants of erofs images for the
// fuzz targets and regression tests of pkg/erofs and pkg/rootfs: it finds
// the inodes and directory entries of a good image and damages them by
// field, then repairs the superblock checksum, so mutations reach the code
// behind the checksum.
package erofstest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
)

// Layout is where the structures of a good image are.
type Layout struct {
	Inodes    []Inode  // in walk order, root first
	Dirents   []Dirent // every entry of every directory, "." and ".." included
	BlockSize int64
}

// Inode is one inode of the image.
type Inode struct {
	Path   string
	Nid    uint64
	Offset int64
	Dir    bool
}

// Dirent is one directory entry of the image.
type Dirent struct {
	Dir    string // the directory's path
	Name   string
	Offset int64 // image offset of the 12-byte dirent
	Index  int   // its index in its block
}

// Find returns the layout of a good image.
func Find(img []byte) (*Layout, error) {
	fsys, err := erofs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return nil, err
	}
	l := &Layout{BlockSize: fsys.BlockSize()}
	seen := map[uint64]bool{}
	err = fsys.Walk(context.Background(), func(p string, in *erofs.Inode) error {
		if !seen[in.Nid] {
			seen[in.Nid] = true
			l.Inodes = append(l.Inodes, Inode{Path: p, Nid: in.Nid, Offset: in.Offset(), Dir: in.IsDir()})
		}
		if !in.IsDir() {
			return nil
		}
		f, err := fsys.Open(in)
		if err != nil {
			return err
		}
		data := make([]byte, in.Size)
		if _, err := f.ReadAt(data, 0); err != nil {
			return err
		}
		for start := int64(0); start < int64(len(data)); start += l.BlockSize {
			blk := data[start:min(start+l.BlockSize, int64(len(data)))]
			n := int(binary.LittleEndian.Uint16(blk[8:])) / erofs.DirentSize
			for k := 0; k < n; k++ {
				nameOff := int(binary.LittleEndian.Uint16(blk[k*erofs.DirentSize+8:]))
				end := len(blk)
				if k+1 < n {
					end = int(binary.LittleEndian.Uint16(blk[(k+1)*erofs.DirentSize+8:]))
				}
				name := bytes.TrimRight(blk[nameOff:end], "\x00")
				off, ok := fsys.ContentOffset(in, start+int64(k*erofs.DirentSize))
				if !ok {
					return fmt.Errorf("no offset for %s entry %d", p, k)
				}
				l.Dirents = append(l.Dirents, Dirent{Dir: p, Name: string(name), Offset: off, Index: k})
			}
		}
		return nil
	})
	return l, err
}

// Inode returns the inode of a path, or nil.
func (l *Layout) Inode(path string) *Inode {
	for i := range l.Inodes {
		if l.Inodes[i].Path == path {
			return &l.Inodes[i]
		}
	}
	return nil
}

// Dirent returns the entry name of directory dir, or nil.
func (l *Layout) Dirent(dir, name string) *Dirent {
	for i := range l.Dirents {
		if l.Dirents[i].Dir == dir && l.Dirents[i].Name == name {
			return &l.Dirents[i]
		}
	}
	return nil
}

// SetNid points a directory entry at another inode.
func SetNid(img []byte, d *Dirent, nid uint64) {
	binary.LittleEndian.PutUint64(img[d.Offset:], nid)
}

// Mutate applies ops to img, 4 bytes each: kind, index, field, value.
//
//	kind%5 == 0: inode[index] byte field%64 = value
//	kind%5 == 1: dirent[index] byte field%12 = value
//	kind%5 == 2: dirent[index] points at inode[value] (cycles, hard links)
//	kind%5 == 3: superblock byte field%128 = value
//	kind%5 == 4: dirent[index] name offset += int8(value)
//
// Indexes wrap around the layout's lists. The superblock checksum is
// repaired afterwards.
func Mutate(img []byte, l *Layout, ops []byte) {
	for len(ops) >= 4 {
		kind, idx, field, val := ops[0], int(ops[1]), int(ops[2]), ops[3]
		ops = ops[4:]
		switch kind % 5 {
		case 0:
			if len(l.Inodes) > 0 {
				off := l.Inodes[idx%len(l.Inodes)].Offset + int64(field%64)
				if off < int64(len(img)) {
					img[off] = val
				}
			}
		case 1:
			if len(l.Dirents) > 0 {
				img[l.Dirents[idx%len(l.Dirents)].Offset+int64(field%12)] = val
			}
		case 2:
			if len(l.Dirents) > 0 && len(l.Inodes) > 0 {
				SetNid(img, &l.Dirents[idx%len(l.Dirents)], l.Inodes[int(val)%len(l.Inodes)].Nid)
			}
		case 3:
			img[erofs.SuperblockOffset+field%128] = val
		case 4:
			if len(l.Dirents) > 0 {
				p := img[l.Dirents[idx%len(l.Dirents)].Offset+8:]
				binary.LittleEndian.PutUint16(p, binary.LittleEndian.Uint16(p)+uint16(int16(int8(val))))
			}
		}
	}
	FixChecksum(img)
}

// FixChecksum recomputes the superblock crc32c when the feature is set.
func FixChecksum(img []byte) {
	if len(img) < erofs.SuperblockOffset+erofs.SuperblockSize {
		return
	}
	var sb erofs.Superblock
	if sb.Unmarshal(img[erofs.SuperblockOffset:]) != nil || sb.FeatureCompat&erofs.FeatureCompatSbChksum == 0 {
		return
	}
	end := erofs.SuperblockOffset + erofs.SuperblockSize
	if sb.BlkSzBits < 31 {
		end = max(end, 1<<sb.BlkSzBits)
	}
	if end > len(img) {
		return
	}
	binary.LittleEndian.PutUint32(img[erofs.SuperblockOffset+4:], erofs.SuperblockChecksum(img[erofs.SuperblockOffset:end]))
}
