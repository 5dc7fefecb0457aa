package rootfs

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// InspectOptions choose what Inspect does beyond the partition table,
// the superblocks and the root hash.
type InspectOptions struct {
	// Files lists every file of the erofs in Inspection.Files.
	Files bool
	// SkipHashCheck reads only the tables and superblocks, not every block
	// of partition 1: Verity.RootHash is then the root hash the PARTUUIDs
	// carry, and RootHashOK is false (nothing was checked). For callers
	// that read the file system themselves (pkg/diff).
	SkipHashCheck bool
}

// Inspection is what Inspect finds in a disk image.
type Inspection struct {
	DiskSize   int64       `json:"disk_size"`
	DiskGUID   GUID        `json:"disk_guid"`
	Partitions []Partition `json:"partitions"`
	Filesystem Filesystem  `json:"filesystem"`
	// Verity is the geometry from the verity superblock; its RootHash is
	// the root hash computed from partition 1.
	Verity VerityInfo `json:"verity"`
	// PartUUIDRootHash is the root hash the two PARTUUIDs carry.
	PartUUIDRootHash string `json:"partuuid_root_hash"`
	// RootHashOK says the hash tree computed over partition 1 has the root
	// hash the PARTUUIDs carry, and partition 2 holds that tree.
	RootHashOK bool `json:"root_hash_ok"`
	// Mismatch says what differs when RootHashOK is false.
	Mismatch string     `json:"mismatch,omitempty"`
	Cmdline  Cmdline    `json:"cmdline"`
	Files    []FileInfo `json:"files,omitempty"`
}

// FileInfo is one file of the erofs.
type FileInfo struct {
	Path   string            `json:"path"`
	Mode   uint32            `json:"mode"` // Unix st_mode: type and permission bits
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   int64             `json:"size"` // 0 for directories (their size is a detail of the encoding)
	Nlink  int               `json:"nlink"`
	Ino    int64             `json:"ino"` // the inode's nid, the kernel's st_ino
	Link   string            `json:"link,omitempty"`
	Rdev   uint32            `json:"rdev,omitempty"`
	Xattrs map[string]string `json:"xattrs,omitempty"`
}

// MaxListing bounds the memory of a file listing (Inspect with Files, and
// ListFiles): about 64 MiB of paths, link targets, xattrs and per-entry
// overhead. A real root file system lists in a few MiB; a hostile image
// can name one deep path many times over, and the listing's size grows
// with the square of the depth.
const MaxListing = 64 << 20

// Inspect reads a disk image written by Build: its GPT (both copies), the
// erofs and verity superblocks; it checks the hash tree in partition 2 against every
// block of partition 1 and against the root hash the PARTUUIDs carry.
// A root hash that differs from the PARTUUIDs' is reported in the result
// (RootHashOK false, both values, Mismatch); a hash partition whose tree
// does not match a data partition that has the right root hash is a
// *verity.CorruptError. A malformed table, file system or verity
// superblock is a *gpt.FormatError, *erofs.FormatError or
// *verity.FormatError. On any error the result is nil.
func Inspect(ctx context.Context, r io.ReaderAt, size int64, opts InspectOptions) (*Inspection, error) {
	in, err := inspect(ctx, r, size, opts)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	return in, nil
}

func inspect(ctx context.Context, r io.ReaderAt, size int64, opts InspectOptions) (*Inspection, error) {
	r = ctxio.ReaderAt(ctx, r)
	tab, err := gpt.Read(r, size, 0)
	if err != nil {
		return nil, err
	}
	if err := tab.CheckBackup(r, size); err != nil {
		return nil, err
	}
	in := &Inspection{DiskSize: size, DiskGUID: tab.DiskGUID, Partitions: tab.Partitions}
	data, hash := tab.Find(TypeRootX86_64), tab.Find(TypeRootVerityX86_64)
	if data == nil || hash == nil {
		return nil, &gpt.FormatError{Offset: int64(tab.EntriesLBA) * sectorSize, Msg: "no x86-64 root and root-verity partitions"}
	}
	dataR := io.NewSectionReader(r, data.Offset, data.Size)
	hashR := io.NewSectionReader(r, hash.Offset, hash.Size)
	fsys, err := erofs.Open(dataR, data.Size)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", data.Number, err)
	}
	sb := fsys.Superblock()
	in.Filesystem = Filesystem{Type: "erofs", UUID: GUID(sb.UUID), BlockSize: int(fsys.BlockSize()),
		Blocks: sb.Blocks, Size: fsys.Size(), Inodes: int(sb.Inos)}
	vsb, err := verity.ReadSuperblock(hashR, 0)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", hash.Number, err)
	}
	p := vsb.Params(0)
	// Every block of the file system must be under the hash tree: the
	// kernel would see a verity device shorter than the file system.
	if covered := int64(p.DataBlocks) * int64(p.DataBlockSize); fsys.Size() > covered {
		return nil, fmt.Errorf("partition %d: %w", data.Number, &erofs.FormatError{Offset: erofs.SuperblockOffset + 36,
			Msg: fmt.Sprintf("the file system's %d bytes are more than the %d the verity tree covers", fsys.Size(), covered)})
	}
	plan, err := verity.Plan(p)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", hash.Number, err)
	}
	want := append(append([]byte{}, data.UUID[:]...), hash.UUID[:]...)
	in.PartUUIDRootHash = hex.EncodeToString(want)
	vr := *plan
	vr.RootHash = want
	if !opts.SkipHashCheck {
		mismatch, err := checkHashTree(ctx, dataR, data, hashR, hash, p, want)
		if err != nil {
			return nil, err
		}
		if mismatch != nil {
			vr.RootHash = mismatch.RootHash
			in.Mismatch = fmt.Sprintf("partition %d has root hash %s, the PARTUUIDs carry %s (%v)",
				data.Number, mismatch.RootHashHex(), in.PartUUIDRootHash, mismatch.err)
		} else {
			in.RootHashOK = true
		}
	}
	in.Verity = verityInfo(&vr, p.UUID)
	if in.Cmdline, err = cmdlines(&vr, data.UUID, hash.UUID); err != nil {
		return nil, err
	}
	if opts.Files {
		if in.Files, err = listFiles(ctx, fsys); err != nil {
			return nil, fmt.Errorf("partition %d: %w", data.Number, err)
		}
	}
	return in, nil
}

// hashMismatch is partition 1's own root hash when it is not the
// PARTUUIDs'.
type hashMismatch struct {
	*verity.Result
	err *verity.CorruptError
}

// checkHashTree checks the tree in partition 2 top down against the
// PARTUUIDs' root hash and every block of partition 1 against it (one pass
// when all is well). It returns a mismatch when partition 1's root hash is
// not the PARTUUIDs', and an error when partition 2's tree is not
// partition 1's.
func checkHashTree(ctx context.Context, dataR io.ReaderAt, data *Partition, hashR io.ReaderAt, hash *Partition, p verity.Params, want []byte) (*hashMismatch, error) {
	_, err := verity.Verify(ctx, dataR, data.Size, hashR, want, verity.VerifyOptions{Params: p})
	if err == nil {
		return nil, nil
	}
	var ce *verity.CorruptError
	if !errors.As(err, &ce) {
		return nil, fmt.Errorf("partition %d: %w", hash.Number, err)
	}
	// Which is wrong: partition 1 (its root hash is not the PARTUUIDs')
	// or partition 2 (its tree is not partition 1's)?
	got, ferr := verity.Format(ctx, dataR, int64(p.DataBlocks)*int64(p.DataBlockSize), discardAt{}, p)
	if ferr != nil {
		return nil, fmt.Errorf("partition %d: %w", data.Number, ferr)
	}
	if bytes.Equal(got.RootHash, want) {
		return nil, fmt.Errorf("partition %d: %w", hash.Number, err)
	}
	return &hashMismatch{got, ce}, nil
}

type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// ListFiles lists every file of an erofs image of size bytes, in path
// order ("/" first), with pkg/erofs's checked reader.
func ListFiles(ctx context.Context, r io.ReaderAt, size int64) ([]FileInfo, error) {
	fsys, err := erofs.Open(r, size)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	files, err := listFiles(ctx, fsys)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	return files, nil
}

// ErrListingTooLarge is returned when a listing would exceed MaxListing.
var ErrListingTooLarge = fmt.Errorf("file listing larger than %d MiB", MaxListing>>20)

func listFiles(ctx context.Context, fsys *erofs.FS) ([]FileInfo, error) {
	var out []FileInfo
	budget := int64(MaxListing)
	err := fsys.Walk(ctx, func(p string, n *erofs.Inode) error {
		f := FileInfo{Path: p, Mode: n.Mode, UID: n.UID, GID: n.GID, Size: int64(n.Size),
			Nlink: int(n.Nlink), Ino: int64(n.Nid), Rdev: n.Rdev}
		if n.IsDir() {
			f.Size = 0
		}
		if n.Mode&erofs.S_IFMT == erofs.S_IFLNK {
			l, err := fsys.ReadLink(n)
			if err != nil {
				return err
			}
			f.Link = l
		}
		xs, err := fsys.Xattrs(n)
		if err != nil {
			return err
		}
		for _, x := range xs {
			if f.Xattrs == nil {
				f.Xattrs = map[string]string{}
			}
			f.Xattrs[x.Name] = x.Value
			budget -= int64(len(x.Name) + len(x.Value) + 64)
		}
		if budget -= int64(len(f.Path) + len(f.Link) + 160); budget < 0 {
			return fmt.Errorf("%w (at %d entries)", ErrListingTooLarge, len(out))
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
