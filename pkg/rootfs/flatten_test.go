package rootfs

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// describeFlat describes a Flat like readBack describes an image, reading
// every content through Contents.
func describeFlat(t testing.TB, f *source.Flat) map[string]string {
	t.Helper()
	nlink := map[int]int{}
	for _, e := range f.Entries {
		nlink[e.Inode]++
	}
	bodies := map[int][]byte{}
	err := f.Contents(context.Background(), func(i int, r io.Reader) error {
		e := f.Entries[i]
		if _, dup := bodies[e.Inode]; dup {
			return fmt.Errorf("%s: content passed twice", e.Path)
		}
		b, err := io.ReadAll(r)
		bodies[e.Inode] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"/": fmt.Sprintf("%06o %d:%d", f.RootMode, f.RootUID, f.RootGID)}
	prev := ""
	for _, e := range f.Entries {
		if prev != "" && !lessPathElems(prev, e.Path) {
			t.Errorf("entries out of order: %q before %q", prev, e.Path)
		}
		prev = e.Path
		desc := fmt.Sprintf("%06o %d:%d", e.Mode, e.UID, e.GID)
		switch e.Mode & sIFMT {
		case sIFLNK:
			desc += " -> " + e.Linkname
		case sIFREG:
			b := bodies[e.Inode]
			if int64(len(b)) != e.Size {
				t.Errorf("%s: read %d bytes, size %d", e.Path, len(b), e.Size)
			}
			desc += fmt.Sprintf(" size=%d nlink=%d sha=%x", len(b), nlink[e.Inode], sha256.Sum256(b))
		case sIFCHR, sIFBLK:
			desc += fmt.Sprintf(" dev=%d:%d", e.DevMajor, e.DevMinor)
		}
		if len(e.Xattrs) > 0 {
			desc += fmt.Sprintf(" xattrs=%q", rootfstest.SortedXattrs(e.Xattrs))
		}
		out[path.Join("/", e.Path)] = desc
	}
	return out
}

// lessPathElems orders paths element by element, parents first.
func lessPathElems(x, y string) bool {
	xs, ys := strings.Split(x, "/"), strings.Split(y, "/")
	for i := 0; i < len(xs) && i < len(ys); i++ {
		if xs[i] != ys[i] {
			return xs[i] < ys[i]
		}
	}
	return len(xs) < len(ys)
}

// TestFlatten checks source.Flatten against the reference model:
// an OCI layout (whiteouts, opaque directory, hard links, symlinks, a
// device, xattrs) followed by a directory and a tar, layered in order.
func TestFlatten(t *testing.T) {
	dir := t.TempDir()
	layers := rootfstest.SmallLayers(t)
	layout := writeLayout(t, filepath.Join(dir, "layout"), "amd64", layers)
	extra := rootfstest.Tar(t, []rootfstest.TarEntry{{Name: "etc/hostname", Body: "pod\n"}, {Name: ".wh.tmp"}})
	writeFile(t, filepath.Join(dir, "extra.tar"), extra)
	m := newModel()
	for _, l := range layers {
		m.applyTar(t, l)
	}
	m.applyTar(t, extra)

	ctx := context.Background()
	f, err := source.Flatten(ctx, srcs(t, "oci-layout:"+layout+":v1", "tar:"+filepath.Join(dir, "extra.tar")), source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rootfstest.CompareTrees(t, describeFlat(t, f), m.describe())

	// The same hostile-layer rules as Build.
	bad := rootfstest.Tar(t, []rootfstest.TarEntry{{Name: "a/../../etc/passwd", Body: "x"}})
	writeFile(t, filepath.Join(dir, "bad.tar"), bad)
	_, err = source.Flatten(ctx, srcs(t, "tar:"+filepath.Join(dir, "bad.tar")), source.Options{})
	if err == nil || !strings.Contains(err.Error(), `".." component`) {
		t.Errorf("escaping entry: got %v", err)
	}
	if _, err := source.Flatten(ctx, srcs(t, "oci-layout:"+layout), source.Options{Platform: "linux/arm64"}); err == nil {
		t.Errorf("wrong platform accepted")
	}
}

// The whiteout names of the OCI image spec, for the reference model.
const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
)
