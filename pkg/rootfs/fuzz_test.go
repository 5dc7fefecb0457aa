package rootfs

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// FuzzLayer feeds arbitrary bytes as a tar: layer: flattening, laying
// out and writing must fail cleanly or produce an erofs that go-erofs reads
// back. (pkg/source's FuzzTarLayer mutates the tar structure itself.)
func FuzzLayer(f *testing.F) {
	f.Add(rootfstest.Tar(f, []rootfstest.TarEntry{{Name: ".", Type: tar.TypeDir}, {Name: "bin/sh", Mode: 0o755, Body: "sh"},
		{Name: "bin/ln", Type: tar.TypeLink, Link: "bin/sh"}, {Name: "lib", Type: tar.TypeSymlink, Link: "usr/lib"},
		{Name: "dev/null", Type: tar.TypeChar, Major: 1, Minor: 3},
		{Name: "f", Body: "x", Xattrs: map[string]string{"security.capability": "c"}},
		{Name: "big", Body: string(make([]byte, 5000))}}))
	f.Add(rootfstest.Tar(f, []rootfstest.TarEntry{{Name: "a/.wh..wh..opq"}, {Name: "a/b", Type: tar.TypeLink, Link: "c"}}))
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
		disk := &rootfstest.MemDisk{}
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
var _ Disk = (*rootfstest.MemDisk)(nil)
