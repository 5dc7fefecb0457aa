package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// diskCheck is what one pass over rootfs.img found: its sha256 (link 1)
// and its verity chain (link 2).
type diskCheck struct {
	size   int64
	sha256 string
	// readErr is an I/O error that stopped the pass (no sha256 then).
	readErr error
	// structErr is a disk whose table, file system or verity superblock
	// is malformed (the pass still hashes it).
	structErr error

	data, hash *gpt.Partition
	params     verity.Params
	plan       *verity.Result
	// rootHash is the root hash of the tree recomputed from partition 1,
	// partUUIDs the one the two PARTUUIDs carry.
	rootHash, partUUIDs []byte
	// treeOK says partition 2 holds exactly the recomputed superblock and
	// tree; otherwise treeDiff says where it first differs.
	treeOK   bool
	treeDiff string
	// firstBadData is the first data block whose digest differs from
	// partition 2's leaf level (-1: none, or not known).
	firstBadData int64
	// where names the file of the erofs the first bad data block belongs
	// to ("" when none or not found).
	where string
}

// chunk is how much of the disk one read takes.
const chunk = 1 << 20

// checkDisk reads the disk image f once, in order: it hashes every byte,
// feeds partition 1's data blocks to the verity tree builder and hashes
// partition 2's superblock and tree as they go by. Only the partition
// table and the superblocks are read before the pass (a few KiB), and,
// when the trees differ, the blocks needed to say where.
func checkDisk(ctx context.Context, f *os.File, size int64) *diskCheck {
	d := &diskCheck{size: size, firstBadData: -1}
	d.structErr = d.readStructure(f, size)

	fileHash := sha256.New()
	storedTree := sha256.New()
	var computed *memWriterAt
	var pw *io.PipeWriter
	var dataEnd, hashEnd int64
	type formatted struct {
		res *verity.Result
		err error
	}
	done := make(chan formatted, 1)
	if d.structErr == nil {
		computed = &memWriterAt{b: make([]byte, d.plan.HashDeviceSize())}
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		go func() {
			r, err := verity.FormatStream(ctx, pr, computed, d.params)
			pr.CloseWithError(errors.Join(err, errFormatDone))
			done <- formatted{r, err}
		}()
		dataEnd = d.data.Offset + int64(d.params.DataBlocks)*int64(d.params.DataBlockSize)
		hashEnd = d.hash.Offset + d.plan.HashDeviceSize()
	}
	feedErr := error(nil)
	buf := make([]byte, chunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			d.readErr = err
			break
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			b := buf[:n]
			fileHash.Write(b)
			if pw != nil && feedErr == nil {
				if s, e, ok := overlap(off, int64(n), d.data.Offset, dataEnd); ok {
					if _, err := pw.Write(b[s:e]); err != nil {
						feedErr = err
					}
				}
			}
			if computed != nil {
				if s, e, ok := overlap(off, int64(n), d.hash.Offset, hashEnd); ok {
					storedTree.Write(b[s:e])
				}
			}
			off += int64(n)
		}
		if err != nil && off < size {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			d.readErr = fmt.Errorf("reading at offset %d: %w", off, err)
			break
		}
	}
	if pw != nil {
		pw.Close()
		res := <-done
		if d.readErr == nil {
			d.finishTree(ctx, f, res.res, res.err, computed.b, storedTree.Sum(nil))
		}
	}
	if d.readErr == nil {
		d.sha256 = hex.EncodeToString(fileHash.Sum(nil))
	}
	return d
}

// errFormatDone marks the pipe closed by the tree builder.
var errFormatDone = errors.New("verity tree done")

// overlap returns the part [s, e) of a buffer at off of n bytes that lies
// in [lo, hi).
func overlap(off, n, lo, hi int64) (s, e int64, ok bool) {
	s, e = max(off, lo)-off, min(off+n, hi)-off
	return s, e, s < e
}

// readStructure reads the partition tables, the erofs and the verity
// superblock, and checks that the tree they describe fits its partitions.
func (d *diskCheck) readStructure(r io.ReaderAt, size int64) error {
	tab, err := gpt.Read(r, size, 0)
	if err != nil {
		return err
	}
	if err := tab.CheckBackup(r, size); err != nil {
		return err
	}
	d.data, d.hash = tab.Find(rootfs.TypeRootX86_64), tab.Find(rootfs.TypeRootVerityX86_64)
	if d.data == nil || d.hash == nil {
		return &gpt.FormatError{Offset: int64(tab.EntriesLBA) * int64(tab.SectorSize), Msg: "no x86-64 root and root-verity partitions"}
	}
	dataR := io.NewSectionReader(r, d.data.Offset, d.data.Size)
	fsys, err := erofs.Open(dataR, d.data.Size)
	if err != nil {
		return fmt.Errorf("partition %d: %w", d.data.Number, err)
	}
	sb, err := verity.ReadSuperblock(io.NewSectionReader(r, d.hash.Offset, d.hash.Size), 0)
	if err != nil {
		return fmt.Errorf("partition %d: %w", d.hash.Number, err)
	}
	d.params = sb.Params(0)
	if d.plan, err = verity.Plan(d.params); err != nil {
		return fmt.Errorf("partition %d: %w", d.hash.Number, err)
	}
	covered := int64(d.params.DataBlocks) * int64(d.params.DataBlockSize)
	if covered/int64(d.params.DataBlockSize) != int64(d.params.DataBlocks) || covered > d.data.Size {
		return fmt.Errorf("partition %d: %w", d.hash.Number, &verity.FormatError{Offset: 0,
			Msg: fmt.Sprintf("the superblock covers %d blocks of %d bytes, partition %d has %d bytes", d.params.DataBlocks, d.params.DataBlockSize, d.data.Number, d.data.Size)})
	}
	if fsys.Size() > covered {
		return fmt.Errorf("partition %d: %w", d.data.Number, &erofs.FormatError{Offset: erofs.SuperblockOffset + 36,
			Msg: fmt.Sprintf("the file system's %d bytes are more than the %d the verity tree covers", fsys.Size(), covered)})
	}
	if n := d.plan.HashDeviceSize(); n > d.hash.Size {
		return fmt.Errorf("partition %d: %w", d.hash.Number, &verity.FormatError{Offset: 0,
			Msg: fmt.Sprintf("the tree needs %d bytes, the partition has %d", n, d.hash.Size)})
	}
	d.partUUIDs = append(append([]byte{}, d.data.UUID[:]...), d.hash.UUID[:]...)
	return nil
}

// finishTree compares the recomputed tree with partition 2, and the root
// hash with the PARTUUIDs.
func (d *diskCheck) finishTree(ctx context.Context, ra io.ReaderAt, res *verity.Result, err error, computed, storedSum []byte) {
	if err != nil {
		d.structErr = fmt.Errorf("partition %d: %w", d.data.Number, err)
		return
	}
	d.rootHash = res.RootHash
	if sum := sha256.Sum256(computed); bytes.Equal(sum[:], storedSum) {
		d.treeOK = true
		return
	}
	// Where partition 2 first differs from the recomputed tree: read it
	// again, block by block (only when it differs), the leaf level first
	// (a difference there names a data block), then the rest.
	hbs := int64(d.params.HashBlockSize)
	leaf, _ := d.plan.LeafLevel()
	stored := make([]byte, hbs)
	for _, r := range [][2]int64{{leaf, int64(len(computed))}, {0, leaf}} {
		for off := r[0]; off < r[1]; off += hbs {
			n := min(hbs, r[1]-off)
			if _, err := ra.ReadAt(stored[:n], d.hash.Offset+off); err != nil {
				d.treeDiff = fmt.Sprintf("cannot read partition %d again: %v", d.hash.Number, err)
				return
			}
			i := firstDiff(stored[:n], computed[off:off+n])
			if i < 0 {
				continue
			}
			block := off / hbs
			if block < int64(d.plan.HashStartBlock) {
				d.treeDiff = fmt.Sprintf("its verity superblock, byte %d", off+int64(i))
				return
			}
			d.treeDiff = fmt.Sprintf("hash block %d", block)
			if n, ok := d.plan.DataBlockAt(off + int64(i)); ok {
				d.firstBadData = int64(n)
				d.treeDiff += fmt.Sprintf(", the digest of data block %d", n)
				d.where = fileAt(ctx, ra, d.data, int64(d.params.DataBlockSize), int64(n))
			}
			return
		}
	}
}

// fileAt says what data block n of the erofs in partition part holds:
// "/path, byte N" for a block of a file's content, or, for a metadata
// block, the files whose inodes' inline data lie in it (a block holds
// many: which of them changed cannot be told from the block alone).
func fileAt(ctx context.Context, r io.ReaderAt, part *gpt.Partition, bs, n int64) string {
	fsys, err := erofs.Open(io.NewSectionReader(r, part.Offset, part.Size), part.Size)
	if err != nil {
		return ""
	}
	lo, hi := n*bs, (n+1)*bs
	if lo >= fsys.Size() {
		return "past the end of the file system"
	}
	found := ""
	var inline []string
	errFound := errors.New("found")
	err = fsys.Walk(ctx, func(p string, in *erofs.Inode) error {
		if in.Size == 0 {
			return nil
		}
		// The content is one run of blocks, then possibly an inline
		// tail after the inode.
		size := int64(in.Size)
		full := size
		if in.Layout == erofs.LayoutFlatInline {
			full = size - size%fsys.BlockSize()
		}
		if full > 0 {
			if start, ok := fsys.ContentOffset(in, 0); ok && start < hi && start+full > lo {
				found = fmt.Sprintf("%s, byte %d", p, max(lo-start, 0))
				return errFound
			}
		}
		if full < size {
			tail, ok := fsys.ContentOffset(in, full)
			if ok && tail < hi && tail+size-full > lo {
				inline = append(inline, p)
			}
		}
		return nil
	})
	switch {
	case err == errFound:
		return found
	case err != nil:
		return ""
	case len(inline) == 0:
		return "the file system's metadata"
	case len(inline) > 4:
		return fmt.Sprintf("a metadata block with the inline data of %s and %d more", strings.Join(inline[:4], ", "), len(inline)-4)
	}
	return "a metadata block with the inline data of " + strings.Join(inline, ", ")
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// memWriterAt is an io.WriterAt over a fixed buffer.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m.b)) || int64(len(p)) > int64(len(m.b))-off {
		return 0, fmt.Errorf("write of %d bytes at %d beyond the %d-byte hash area", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}
