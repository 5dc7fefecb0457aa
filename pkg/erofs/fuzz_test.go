package erofs_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/erofstest"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
)

type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// FuzzWalk damages a good image structure-aware (inode and dirent fields,
// entries pointed at other inodes, name offsets, superblock fields; see
// erofstest.Mutate) and repairs the superblock crc32c, so the mutations
// reach the walk. Open, Walk, Xattrs, ReadLink and reading every file
// must not panic, must read at most a few times the image (work follows
// the input, not what it declares) and allocate in proportion to it.
func FuzzWalk(f *testing.F) {
	_, good := buildDisk(f, testTree(f))
	layout, err := erofstest.Find(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1, 0, 0})                 // an entry to the root
	f.Add([]byte{4, 3, 0, 0x80})              // a name offset moved back
	f.Add([]byte{0, 2, 2, 0xff, 3, 0, 14, 9}) // xattr count, root nid
	f.Fuzz(func(t *testing.T, ops []byte) {
		img := append([]byte(nil), good...)
		erofstest.Mutate(img, layout, ops)
		cr := &countingReaderAt{r: bytes.NewReader(img)}
		fuzzbound.Check(t, img, 16, 16<<20, func() {
			cr.n = 0 // Check may run this again
			fsys, err := erofs.Open(cr, int64(len(img)))
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			read := map[uint64]bool{} // contents once per inode, as a diff reads hard links
			fsys.Walk(context.Background(), func(p string, in *erofs.Inode) error {
				if _, err := fsys.Xattrs(in); err != nil {
					return err
				}
				switch in.Mode & erofs.S_IFMT {
				case erofs.S_IFLNK:
					_, err = fsys.ReadLink(in)
				case erofs.S_IFREG:
					if read[in.Nid] {
						return nil
					}
					read[in.Nid] = true
					var fl *erofs.File
					if fl, err = fsys.Open(in); err == nil {
						_, err = io.CopyBuffer(io.Discard, fl, buf)
					}
				}
				return err
			})
		})
		size := int64(len(img))
		// Contents are read once per inode, metadata a few times (a
		// directory block is read again when the walk returns to it).
		t.Logf("image %d bytes, read %d", size, cr.n)
		if cr.n > 16*size+1<<20 {
			t.Fatalf("read %d bytes of a %d-byte image", cr.n, size)
		}
	})
}
