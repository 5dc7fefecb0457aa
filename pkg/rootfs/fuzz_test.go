package rootfs

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// memDisk is an in-memory Disk.
type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) Truncate(n int64) error {
	if n <= int64(len(m.b)) {
		m.b = m.b[:n]
		return nil
	}
	m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	return nil
}

// FuzzLayer feeds arbitrary bytes as a tar: layer: flattening, laying
// out and writing must fail cleanly or produce an erofs that go-erofs reads
// back. (pkg/source's FuzzTarLayer mutates the tar structure itself.)
func FuzzLayer(f *testing.F) {
	f.Add(mkTar(f, []tent{{name: ".", typ: tar.TypeDir}, {name: "bin/sh", mode: 0o755, body: "sh"},
		{name: "bin/ln", typ: tar.TypeLink, link: "bin/sh"}, {name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3},
		{name: "f", body: "x", xattrs: map[string]string{"security.capability": "c"}},
		{name: "big", body: string(make([]byte, 5000))}}))
	f.Add(mkTar(f, []tent{{name: "a/.wh..wh..opq"}, {name: "a/b", typ: tar.TypeLink, link: "c"}}))
	dir := f.TempDir()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "layer.tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		flat, err := source.Flatten(ctx, []source.Source{{Kind: source.Tar, Path: p}}, source.Options{})
		if err != nil {
			return
		}
		tr, byInode := treeFromFlat(flat)
		im, err := layoutErofs(tr, 0, GUID{})
		if err != nil {
			return
		}
		if im.Size() > 4<<20 {
			return
		}
		disk := &memDisk{}
		buf := make([]byte, 1<<16)
		err = flat.Contents(ctx, func(i int, r io.Reader) error {
			return im.writeFile(disk, byInode[flat.Entries[i].Inode-1], r, buf)
		})
		if err != nil {
			return
		}
		if err := im.finish(disk); err != nil {
			t.Fatal(err)
		}
		disk.Truncate(im.Size())
		if _, err := ListFiles(context.Background(), disk, im.Size()); err != nil {
			t.Fatalf("built image does not read back: %v", err)
		}
	})
}

// Compile-time check: the in-memory disk is a Disk.
var _ Disk = (*memDisk)(nil)
