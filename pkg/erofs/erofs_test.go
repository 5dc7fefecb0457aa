package erofs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	goerofs "github.com/erofs/go-erofs"
	"github.com/imagebuilder/imagebuilder/internal/erofstest"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// memDisk is an in-memory rootfs.Disk.
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

// testTree is a tar with what a reader must handle: file sizes around
// block boundaries (plain and inline tails), hard links, short and long
// symlinks, devices, a FIFO, xattrs, large ids, a directory over several
// blocks and some depth.
func testTree(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for _, n := range []int{0, 1, 100, 4095, 4096, 4097, 8192 + 3000, 70000} {
		add(&tar.Header{Name: fmt.Sprintf("data/f%d", n), Typeflag: tar.TypeReg}, bytes.Repeat([]byte{byte(n)}, n))
	}
	add(&tar.Header{Name: "data/hard", Typeflag: tar.TypeLink, Linkname: "data/f100"}, nil)
	add(&tar.Header{Name: "data/short", Typeflag: tar.TypeSymlink, Linkname: "f1"}, nil)
	add(&tar.Header{Name: "data/long", Typeflag: tar.TypeSymlink, Linkname: strings.Repeat("x/", 2000)}, nil)
	add(&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, nil)
	add(&tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8, Devminor: 0}, nil)
	add(&tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}, nil)
	add(&tar.Header{Name: "bin/ping", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 100000, Gid: 70000,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.note": "hi"}}, []byte("ping"))
	for i := range 400 {
		add(&tar.Header{Name: fmt.Sprintf("many/entry-with-a-long-name-%04d", i), Typeflag: tar.TypeReg}, []byte{byte(i)})
	}
	add(&tar.Header{Name: "a/b/c/d/e/f/g/h", Typeflag: tar.TypeReg}, []byte("deep"))
	tw.Close()
	return buf.Bytes()
}

// buildDisk builds a root disk of layers with rootfs.Build and returns the
// disk and its erofs partition's bytes.
func buildDisk(t testing.TB, layers ...[]byte) (disk, part []byte) {
	t.Helper()
	dir := t.TempDir()
	opts := rootfs.Options{Seed: "erofs-test", SourceDateEpoch: 1700000000}
	for i, l := range layers {
		p := filepath.Join(dir, fmt.Sprintf("l%d.tar", i))
		if err := os.WriteFile(p, l, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := source.Parse("tar:" + p)
		if err != nil {
			t.Fatal(err)
		}
		opts.Sources = append(opts.Sources, src)
	}
	opts.Agent = filepath.Join(dir, "agent")
	os.WriteFile(opts.Agent, []byte("#!/bin/sh\n"), 0o755)
	d := &memDisk{}
	if _, err := rootfs.Build(context.Background(), opts, d); err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(bytes.NewReader(d.b), int64(len(d.b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Partitions[0]
	return d.b, d.b[p.Offset : p.Offset+p.Size]
}

// listOurs describes every path as pkg/erofs reads it.
func listOurs(t testing.TB, img []byte) map[string]string {
	t.Helper()
	fsys, err := erofs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = fsys.Walk(context.Background(), func(p string, in *erofs.Inode) error {
		d := fmt.Sprintf("%06o %d:%d nlink=%d ino=%d", in.Mode, in.UID, in.GID, in.Nlink, in.Nid)
		switch in.Mode & erofs.S_IFMT {
		case erofs.S_IFREG:
			f, err := fsys.Open(in)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" size=%d/%d sha=%x", in.Size, n, h.Sum(nil))
		case erofs.S_IFLNK:
			l, err := fsys.ReadLink(in)
			if err != nil {
				return err
			}
			d += " -> " + l
		case erofs.S_IFCHR, erofs.S_IFBLK:
			d += fmt.Sprintf(" rdev=%d", in.Rdev)
		}
		xs, err := fsys.Xattrs(in)
		if err != nil {
			return err
		}
		var x []string
		for _, e := range xs {
			x = append(x, e.Name+"="+e.Value)
		}
		sort.Strings(x)
		if len(x) > 0 {
			d += fmt.Sprintf(" xattrs=%q", x)
		}
		if _, dup := out[p]; dup {
			return fmt.Errorf("%s listed twice", p)
		}
		out[p] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	for _, b := range []struct {
		f fs.FileMode
		u uint32
	}{{fs.ModeSetuid, 0o4000}, {fs.ModeSetgid, 0o2000}, {fs.ModeSticky, 0o1000}} {
		if m&b.f != 0 {
			u |= b.u
		}
	}
	switch {
	case m.IsDir():
		return u | erofs.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return u | erofs.S_IFLNK
	case m&fs.ModeCharDevice != 0:
		return u | erofs.S_IFCHR
	case m&fs.ModeDevice != 0:
		return u | erofs.S_IFBLK
	case m&fs.ModeNamedPipe != 0:
		return u | erofs.S_IFIFO
	case m&fs.ModeSocket != 0:
		return u | erofs.S_IFSOCK
	}
	return u | erofs.S_IFREG
}

// listGoErofs describes every path as go-erofs (an independent reader)
// reads it.
func listGoErofs(t testing.TB, img []byte) map[string]string {
	t.Helper()
	fsys, err := goerofs.Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = fs.WalkDir(fsys, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*goerofs.Stat)
		mode := unixMode(st.Mode)
		d := fmt.Sprintf("%06o %d:%d nlink=%d ino=%d", mode, st.UID, st.GID, st.Nlink, st.Ino)
		switch mode & erofs.S_IFMT {
		case erofs.S_IFREG:
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" size=%d/%d sha=%x", fi.Size(), len(b), sha256.Sum256(b))
		case erofs.S_IFLNK:
			l, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			d += " -> " + l
		case erofs.S_IFCHR, erofs.S_IFBLK:
			d += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		var x []string
		for k, v := range st.Xattrs {
			x = append(x, k+"="+v)
		}
		sort.Strings(x)
		if len(x) > 0 {
			d += fmt.Sprintf(" xattrs=%q", x)
		}
		out[path.Join("/", p)] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compare(t testing.TB, ours, theirs map[string]string) {
	t.Helper()
	var bad []string
	for p, d := range theirs {
		if ours[p] != d {
			bad = append(bad, fmt.Sprintf("%s:\n  ours    %s\n  go-erofs %s", p, ours[p], d))
		}
	}
	for p, d := range ours {
		if _, ok := theirs[p]; !ok {
			bad = append(bad, fmt.Sprintf("%s: only ours: %s", p, d))
		}
	}
	sort.Strings(bad)
	if len(bad) > 10 {
		bad = bad[:10]
	}
	if len(bad) > 0 {
		t.Fatalf("pkg/erofs and go-erofs differ:\n%s", strings.Join(bad, "\n"))
	}
}

// TestAgainstGoErofs: on an image our writer made, pkg/erofs and go-erofs
// list the same tree with the same contents.
func TestAgainstGoErofs(t *testing.T) {
	_, part := buildDisk(t, testTree(t))
	ours := listOurs(t, part)
	compare(t, ours, listGoErofs(t, part))
	if !strings.Contains(ours["/bin/ping"], `security.capability=\x01\x00\x00\x02`) || !strings.Contains(ours["/data/hard"], "nlink=2") ||
		!strings.Contains(ours["/dev/null"], fmt.Sprint(" rdev=", 1<<8|3)) || len(ours) < 440 {
		t.Errorf("unexpected listing: %d paths, ping %q, hard %q, null %q", len(ours), ours["/bin/ping"], ours["/data/hard"], ours["/dev/null"])
	}
}

// TestMkfsImage: the same on images mkfs.erofs (the reference writer)
// makes, with and without inline data.
func TestMkfsImage(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		fixtures.Missing(t, "mkfs.erofs missing (make deps installs it)")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	tr := tar.NewReader(bytes.NewReader(testTree(t)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tree, h.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			os.WriteFile(p, b, os.FileMode(h.Mode&0o777))
		case tar.TypeLink:
			os.Link(filepath.Join(tree, h.Linkname), p)
		case tar.TypeSymlink:
			os.Symlink(h.Linkname, p)
		case tar.TypeFifo:
			syscall.Mkfifo(p, 0o600)
		}
	}
	for _, extra := range [][]string{nil, {"-E", "noinline_data"}, {"-x", "1"}} {
		img := filepath.Join(dir, "img.erofs")
		args := append([]string{"-T0", "--all-root", "-U", "6b1e6a2c-4f0a-4b7e-9a55-0c2b8b7f3e01"}, extra...)
		if out, err := exec.Command("mkfs.erofs", append(args, img, tree)...).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.erofs %v: %v\n%s", extra, err, out)
		}
		b, _ := os.ReadFile(img)
		compare(t, listOurs(t, b), listGoErofs(t, b))
	}
}

// TestDebianAgainstGoErofs: the real Debian systemd root, built by
// rootfs.Build, lists the same through both readers.
func TestDebianAgainstGoErofs(t *testing.T) {
	if testing.Short() {
		t.Skip("Debian fixture skipped with -short")
	}
	fix := fixtures.DebianSystemd(t)
	tarball, err := os.ReadFile(filepath.Join(fix, "rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	_, part := buildDisk(t, tarball)
	tarball = nil
	ours := listOurs(t, part)
	compare(t, ours, listGoErofs(t, part))
	if len(ours) < 5000 {
		t.Errorf("only %d paths", len(ours))
	}
	t.Logf("%d paths agree", len(ours))
}

// TestBadImages: damage that must be a FormatError, not a panic, a hang or
// a listing.
func TestBadImages(t *testing.T) {
	_, good := buildDisk(t, testTree(t))
	fsys, err := erofs.Open(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	sb := fsys.Superblock()
	fix := erofstest.FixChecksum
	for _, tc := range []struct {
		name   string
		damage func(b []byte)
		want   string
	}{
		{"magic", func(b []byte) { b[1024] ^= 1 }, "no erofs superblock"},
		{"checksum", func(b []byte) { b[1024+60] ^= 1 }, "superblock checksum"},
		{"block size", func(b []byte) { b[1024+12] = 20; fix(b) }, "block size 2^20"},
		{"blocks", func(b []byte) { putU32(b[1024+36:], sb.Blocks+1); fix(b) }, "the image has"},
		{"incompat", func(b []byte) { putU32(b[1024+80:], 1); fix(b) }, "incompatible features"},
		{"root nid", func(b []byte) { putU16(b[1024+14:], 0xffff); fix(b) }, "beyond the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.damage(b)
			_, err := erofs.Open(bytes.NewReader(b), int64(len(b)))
			var fe *erofs.FormatError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a FormatError with %q", err, tc.want)
			}
		})
	}
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
func putU16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }

func ExampleFS_Walk() {
	_, img := buildDisk(&testing.T{}, testTree(&testing.T{}))
	fsys, err := erofs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fsys.Walk(context.Background(), func(p string, in *erofs.Inode) error {
		if strings.HasPrefix(p, "/data/f4") {
			fmt.Printf("%s %o %d\n", p, in.Mode, in.Size)
		}
		return nil
	})
	// Output:
	// /data/f4095 100644 4095
	// /data/f4096 100644 4096
	// /data/f4097 100644 4097
}

// TestWalkSkipDir: fs.SkipDir from a directory skips its contents.
func TestWalkSkipDir(t *testing.T) {
	_, img := buildDisk(t, testTree(t))
	fsys, err := erofs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = fsys.Walk(context.Background(), func(p string, in *erofs.Inode) error {
		if strings.HasPrefix(p, "/many/") {
			t.Errorf("walked into /many: %s", p)
		}
		n++
		if p == "/many" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil || n < 20 {
		t.Errorf("%d paths, %v", n, err)
	}
}
