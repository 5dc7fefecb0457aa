package diff

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
)

// compareRootDisks compares two root disks: partition tables and verity
// parameters (as rootfs.Inspect reads them, without checking the hash tree:
// that is `verify`'s job and would read every block), the erofs
// superblocks, then the trees.
func compareRootDisks(ctx context.Context, a, b *input, rep *report) error {
	var ins [2]*rootfs.Inspection
	var fss [2]*erofs.FS
	for i, in := range []*input{a, b} {
		x, err := rootfs.Inspect(ctx, in.r, in.size, rootfs.InspectOptions{SkipHashCheck: true})
		if err != nil {
			return in.fail(err)
		}
		ins[i] = x
		data := x.Partitions[0]
		for _, p := range x.Partitions {
			if p.Type == rootfs.TypeRootX86_64 {
				data = p
				break
			}
		}
		fs, err := erofs.Open(io.NewSectionReader(in.r, data.Offset, data.Size), data.Size)
		if err != nil {
			return in.fail(fmt.Errorf("partition %d: %w", data.Number, err))
		}
		fss[i] = fs
	}
	if err := compareDiskHeaders(ins[0], ins[1], rep); err != nil {
		return err
	}
	return compareFilesystems(ctx, a, b, fss[0], fss[1], rep)
}

// compareErofsImages compares two erofs images: superblocks, then trees.
func compareErofsImages(ctx context.Context, a, b *input, rep *report) error {
	fa, err := erofs.Open(a.r, a.size)
	if err != nil {
		return a.fail(err)
	}
	fb, err := erofs.Open(b.r, b.size)
	if err != nil {
		return b.fail(err)
	}
	fields := func(fs *erofs.FS) any {
		sb := fs.Superblock()
		return map[string]any{"uuid": rootfs.GUID(sb.UUID), "block_size": fs.BlockSize(), "blocks": sb.Blocks, "size": fs.Size(), "inodes": sb.Inos}
	}
	va, _ := toJSONValue(fields(fa))
	vb, _ := toJSONValue(fields(fb))
	err = diffJSON("", va, vb, func(path string, c Change, x, y string) error {
		d := Difference{Section: SectionErofs, Kind: c, Path: strings.TrimPrefix(path, "."), A: x, B: y}
		if derivedDiskField(".filesystem" + path) {
			return rep.consequence(d)
		}
		return rep.add(d)
	})
	if err != nil {
		return err
	}
	return compareFilesystems(ctx, a, b, fa, fb, rep)
}

// diskFields are the parts of an Inspection a diff compares (the root
// hash check and the file list are not made; the command-line fragments
// restate the verity parameters).
type diskFields struct {
	DiskSize   int64              `json:"disk_size"`
	DiskGUID   rootfs.GUID        `json:"disk_guid"`
	Partitions []rootfs.Partition `json:"partitions"`
	Filesystem rootfs.Filesystem  `json:"filesystem"`
	Verity     rootfs.VerityInfo  `json:"verity"`
}

// derivedDiskField says a field of diskFields follows from the content of
// the file system (sizes, counts, the root hash and what carries it), as
// opposed to a choice of the build (seed-derived GUIDs and salt, types,
// names, algorithms, block sizes).
func derivedDiskField(path string) bool {
	if strings.HasPrefix(path, ".partitions[") {
		for _, f := range []string{".uuid", ".first_lba", ".last_lba", ".offset", ".size"} {
			if strings.HasSuffix(path, f) {
				return true
			}
		}
		return false
	}
	switch path {
	case ".disk_size", ".filesystem.blocks", ".filesystem.size", ".filesystem.inodes",
		".verity.root_hash", ".verity.data_blocks", ".verity.hash_offset", ".verity.hash_start_block", ".verity.hash_size":
		return true
	}
	return false
}

func compareDiskHeaders(a, b *rootfs.Inspection, rep *report) error {
	pick := func(x *rootfs.Inspection) diskFields {
		return diskFields{x.DiskSize, x.DiskGUID, x.Partitions, x.Filesystem, x.Verity}
	}
	va, err := toJSONValue(pick(a))
	if err != nil {
		return err
	}
	vb, err := toJSONValue(pick(b))
	if err != nil {
		return err
	}
	// In the order of the disk: table, verity, file system. (The kernel
	// command-line fragments say nothing these do not.)
	ma, mb := va.(map[string]any), vb.(map[string]any)
	for _, key := range []string{"disk_size", "disk_guid", "partitions", "verity", "filesystem"} {
		err := diffJSON("."+key, ma[key], mb[key], func(path string, c Change, x, y string) error {
			section, field := SectionGPT, strings.TrimPrefix(path, ".")
			for prefix, s := range map[string]string{".filesystem.": SectionErofs, ".verity.": SectionVerity} {
				if strings.HasPrefix(path, prefix) {
					section, field = s, strings.TrimPrefix(path, prefix)
				}
			}
			d := Difference{Section: section, Kind: c, Path: field, A: x, B: y}
			if path == ".verity.root_hash" {
				d.Detail = "as the PARTUUIDs carry it"
			}
			if derivedDiskField(path) {
				return rep.consequence(d)
			}
			return rep.add(d)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
