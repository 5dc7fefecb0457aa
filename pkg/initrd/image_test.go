package initrd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/imagebuilder/imagebuilder/internal/ocitest"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

type tarEnt struct {
	name, body, link string
	typ              byte
	mode             int64
	uid              int
}

func tarBytes(t *testing.T, ents []tarEnt) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Linkname: e.link}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// imageOf is the Image source of the source strings refs.
func imageOf(t *testing.T, refs ...string) Image {
	t.Helper()
	var im Image
	for _, r := range refs {
		s, err := source.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		im.Sources = append(im.Sources, s)
	}
	return im
}

// writeOCILayout writes a linux/amd64 image of the given layers as an OCI
// layout with go-containerregistry, tagged v1.
func writeOCILayout(t *testing.T, dir string, layers ...[]byte) string {
	t.Helper()
	img := ocitest.Image(t, nil, layers...)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAddImage merges a directory, a two-layer OCI image (whiteout, hard
// link, symlink, a non-root owner) and a single file, in that order, and
// checks what GNU cpio extracts against the tree written by hand.
func TestAddImage(t *testing.T) {
	needTool(t, "cpio")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for name, body := range map[string]string{"etc/motd": "from the directory\n", "bin/gone": "below the image\n"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l1 := tarBytes(t, []tarEnt{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", body: "busybox binary", mode: 0o755},
		{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "bin/ls", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/old", body: "removed by layer 2"},
		{name: "etc/motd", body: "from the image\n"},
		{name: "home/user/notes", body: "owned by 1000", mode: 0o600, uid: 1000},
		{name: "usr/lib/big", body: strings.Repeat("0123456789abcdef", 70000)},
	})
	l2 := tarBytes(t, []tarEnt{
		{name: "bin/.wh.old"},
		{name: "bin/.wh.gone"}, // hides nothing: whiteouts act inside the image only
		{name: "etc/extra", body: "layer 2"},
	})
	lay := writeOCILayout(t, filepath.Join(dir, "layout"), l1, l2)
	override := filepath.Join(dir, "override")
	if err := os.WriteFile(override, []byte("from --file\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	a := New()
	defer a.Close()
	mustAdd(t, a, Dir{Path: src}, imageOf(t, "oci-layout:"+lay+":v1"),
		File{Src: override, Dst: "etc/extra", Mode: source.Perm(0o640)})

	want := filepath.Join(dir, "want")
	mk := func(name, body string, mode os.FileMode) {
		p := filepath.Join(want, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	mk("bin/gone", "below the image\n", 0o644)
	mk("bin/busybox", "busybox binary", 0o755)
	os.Link(filepath.Join(want, "bin/busybox"), filepath.Join(want, "bin/sh"))
	os.Symlink("busybox", filepath.Join(want, "bin/ls"))
	mk("etc/motd", "from the image\n", 0o644)
	mk("etc/extra", "from --file\n", 0o640)
	mk("home/user/notes", "owned by 1000", 0o600)
	mk("usr/lib/big", strings.Repeat("0123456789abcdef", 70000), 0o644)

	// Deterministic: a second build from a fresh archive, in another
	// working directory, gives the same bytes, pinned by a golden sha256.
	first := bytes.NewBuffer(buildBytes(t, a, WriteOptions{Compression: None}))
	wd, _ := os.Getwd()
	os.Chdir(dir)
	// The same sources through Build, with relative paths.
	var second bytes.Buffer
	_, err := Build(context.Background(), Config{Compression: None, Sources: []Source{
		Dir{Path: "src"}, imageOf(t, "oci-layout:layout:v1"),
		File{Src: "override", Dst: "etc/extra", Mode: source.Perm(0o640)}}}, &second)
	os.Chdir(wd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Errorf("two builds of the same sources differ")
	}
	const golden = "6cc12b51431f27bb4c43431165151cceb82488842f9614b78f2d8d08229ae078"
	if sum := sha256.Sum256(first.Bytes()); hex.EncodeToString(sum[:]) != golden {
		t.Errorf("sha256 %x, golden %s", sum, golden)
	}

	for _, comp := range []Compression{None, Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			b := bytes.NewBuffer(buildBytes(t, a, WriteOptions{Compression: comp}))
			img := filepath.Join(t.TempDir(), "initrd.img")
			os.WriteFile(img, b.Bytes(), 0o644)
			out := t.TempDir()
			sh := "cat " + img + " | cpio -idm --quiet --no-absolute-filenames"
			if comp == Zstd {
				needTool(t, "zstd")
				sh = "zstd -dcq < " + img + " | cpio -idm --quiet --no-absolute-filenames"
			}
			cmd := exec.Command("sh", "-c", sh)
			cmd.Dir = out
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", sh, err, o)
			}
			diffTrees(t, treeInfo(t, want), treeInfo(t, out))
			// Owners from the image are kept; host files are 0:0.
			owners := map[string]uint32{}
			err := walkAll(b.Bytes(), func(h *Header, _ Segment) {
				owners[h.Name] = h.UID
			})
			if err != nil {
				t.Fatal(err)
			}
			if owners["home/user/notes"] != 1000 || owners["bin/gone"] != 0 {
				t.Errorf("owners: home/user/notes %d (want 1000), bin/gone %d (want 0)", owners["home/user/notes"], owners["bin/gone"])
			}
		})
	}
}

// TestAddImageHostile checks that the rootfs layer rules apply: an escaping
// entry and a hard link out of the tree are errors naming the entry.
func TestAddImageHostile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		ent  tarEnt
		want string
	}{
		{tarEnt{name: "a/../../../etc/passwd", body: "x"}, `".." component`},
		{tarEnt{name: "evil", typ: tar.TypeLink, link: "/etc/shadow"}, "hard link to absolute path"},
		{tarEnt{name: "dangling", typ: tar.TypeLink, link: "missing"}, "does not exist"},
	} {
		lay := writeOCILayout(t, filepath.Join(dir, c.ent.name[:1]+c.want[:3]), tarBytes(t, []tarEnt{c.ent}))
		err := imageOf(t, "oci-layout:"+lay).AddTo(context.Background(), New())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "layer 1/1") {
			t.Errorf("%s: got %v, want an error with %q naming the layer", c.ent.name, err, c.want)
		}
	}
}
