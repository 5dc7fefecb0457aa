package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	erofs "github.com/erofs/go-erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// Inspection is what Inspect finds in a disk image.
type Inspection struct {
	DiskSize   int64       `json:"disk_size"`
	DiskGUID   GUID        `json:"disk_guid"`
	Partitions []Partition `json:"partitions"`
	Filesystem Filesystem  `json:"filesystem"`
	Verity     VerityInfo  `json:"verity"`
	// RootHashOK says that the hash tree in partition 2 matches every block
	// of partition 1 and that the root hash is the one the PARTUUIDs carry.
	RootHashOK bool       `json:"root_hash_ok"`
	Cmdline    Cmdline    `json:"cmdline"`
	Files      []FileInfo `json:"files,omitempty"`
}

// FileInfo is one file of the erofs, as read back through go-erofs.
type FileInfo struct {
	Path   string            `json:"path"`
	Mode   uint32            `json:"mode"` // Unix st_mode: type and permission bits
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   int64             `json:"size"`
	Nlink  int               `json:"nlink"`
	Ino    int64             `json:"ino"`
	Link   string            `json:"link,omitempty"`
	Rdev   uint32            `json:"rdev,omitempty"`
	Xattrs map[string]string `json:"xattrs,omitempty"`
}

// Inspect reads a disk image written by Build: its GPT, the erofs
// superblock, the verity superblock; it recomputes the hash tree and checks
// it against the root hash carried by the PARTUUIDs. With files, it lists
// every file of the erofs. A mismatch is reported in RootHashOK together
// with a non-nil error.
func Inspect(r io.ReaderAt, size int64, files bool) (*Inspection, error) {
	tab, err := gpt.Read(r, size, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	disk, parts := tab.DiskGUID, tab.Partitions
	in := &Inspection{DiskSize: size, DiskGUID: disk, Partitions: parts}
	var data, hash *Partition
	for i := range parts {
		switch parts[i].Type {
		case TypeRootX86_64:
			data = &parts[i]
		case TypeRootVerityX86_64:
			hash = &parts[i]
		}
	}
	if data == nil || hash == nil {
		return in, errors.New("rootfs: no x86-64 root and root-verity partitions")
	}
	dataR := io.NewSectionReader(r, data.Offset, data.Size)
	hashR := io.NewSectionReader(r, hash.Offset, hash.Size)
	fsi, err := readErofsSuper(dataR)
	if err != nil {
		return in, fmt.Errorf("rootfs: partition 1: %w", err)
	}
	in.Filesystem = fsi
	sb, err := verity.ReadSuperblock(hashR, 0)
	if err != nil {
		return in, fmt.Errorf("rootfs: partition 2: %w", err)
	}
	p := sb.Params(0)
	rootHash := append(append([]byte{}, data.UUID[:]...), hash.UUID[:]...)
	// The geometry, from a tree computed into memory-free discard.
	vr, err := verity.Format(dataR, int64(p.DataBlocks)*int64(p.DataBlockSize), discardAt{}, p)
	if err != nil {
		return in, fmt.Errorf("rootfs: verity: %w", err)
	}
	in.Verity = verityInfo(vr, p.UUID)
	if in.Cmdline, err = cmdlines(vr, data.UUID, hash.UUID); err != nil {
		return in, fmt.Errorf("rootfs: %w", err)
	}
	if !bytes.Equal(vr.RootHash, rootHash) {
		return in, fmt.Errorf("rootfs: root hash %s of partition 1 does not match the PARTUUIDs (%x)", vr.RootHashHex(), rootHash)
	}
	if err := verity.Verify(dataR, hashR, rootHash, p); err != nil {
		return in, fmt.Errorf("rootfs: %w", err)
	}
	in.RootHashOK = true
	if files {
		in.Files, err = ListFiles(dataR)
		if err != nil {
			return in, fmt.Errorf("rootfs: %w", err)
		}
	}
	return in, nil
}

type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

func readErofsSuper(r io.ReaderAt) (Filesystem, error) {
	var fsi Filesystem
	s := make([]byte, 128)
	if _, err := r.ReadAt(s, erofsSBOffset); err != nil {
		return fsi, err
	}
	le := binary.LittleEndian
	if le.Uint32(s) != erofsMagic {
		return fsi, errors.New("no erofs superblock")
	}
	fsi.Type = "erofs"
	fsi.BlockSize = 1 << s[12]
	fsi.Inodes = int(le.Uint64(s[16:]))
	fsi.Blocks = le.Uint32(s[36:])
	fsi.Size = int64(fsi.Blocks) * int64(fsi.BlockSize)
	copy(fsi.UUID[:], s[48:64])
	return fsi, nil
}

// ListFiles reads an erofs image back through go-erofs (an independent
// reader) and lists every file in path order ("/" first).
func ListFiles(r io.ReaderAt) ([]FileInfo, error) {
	fsys, err := erofs.Open(r)
	if err != nil {
		return nil, fmt.Errorf("erofs: %w", err)
	}
	var out []FileInfo
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*erofs.Stat)
		if !ok {
			return fmt.Errorf("%s: no erofs stat", p)
		}
		f := FileInfo{Path: path.Join("/", p), Mode: unixMode(st.Mode), UID: st.UID, GID: st.GID,
			Size: fi.Size(), Nlink: st.Nlink, Ino: st.Ino, Rdev: st.Rdev, Xattrs: st.Xattrs}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if f.Link, err = fs.ReadLink(fsys, p); err != nil {
				return err
			}
		}
		if fi.IsDir() {
			f.Size = 0 // directory sizes are a detail of the encoding
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erofs: %w", err)
	}
	return out, nil
}

func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	switch {
	case m.IsDir():
		u |= sIFDIR
	case m&fs.ModeSymlink != 0:
		u |= sIFLNK
	case m&fs.ModeCharDevice != 0:
		u |= sIFCHR
	case m&fs.ModeDevice != 0:
		u |= sIFBLK
	case m&fs.ModeNamedPipe != 0:
		u |= sIFIFO
	case m&fs.ModeSocket != 0:
		u |= sIFSOCK
	default:
		u |= sIFREG
	}
	return u
}
