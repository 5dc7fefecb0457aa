package deb

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"testing/fstest"
)

// memSpool is a SpoolFile in memory.
type memSpool struct{ b []byte }

func (m *memSpool) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }
func (m *memSpool) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fsTree lists fsys as tree lists a directory.
func fsTree(t *testing.T, fsys fs.FS) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		fi, err := fs.Lstat(fsys, p)
		if err != nil {
			return err
		}
		if fi.Mode().Type() != d.Type() {
			t.Errorf("%s: ReadDir says %v, Lstat %v", p, d.Type(), fi.Mode().Type())
		}
		line := p + " " + fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			line += " -> " + l
		case fi.Mode().IsRegular():
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestSpoolMatchesExtract: the spooled tree is the extracted tree, entry
// for entry (modes, symlink targets, contents, implied parents), and a
// valid fs.FS (fstest.TestFS checks ReadDir order, Stat, Open, ReadFile
// and ReadLink against each other).
func TestSpoolMatchesExtract(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Compression{None, Gzip, XZ, Zstd} {
		d := makeDeb(t, c, goodTree)
		p, err := openBytes(t, d)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "x")
		xres, err := p.Extract(ctx, dir, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sp := &memSpool{}
		sfs, sres, err := p.Spool(ctx, sp, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, got := tree(t, dir), fsTree(t, sfs)
		if len(want) != len(got) {
			t.Fatalf("%s: spooled\n%q\nextracted\n%q", c, got, want)
		}
		for i := range want {
			if want[i] != got[i] {
				t.Errorf("%s: spooled %q, extracted %q", c, got[i], want[i])
			}
		}
		xres.Dir = ""
		if *xres != *sres {
			t.Errorf("%s: spool counts %+v, extract %+v", c, *sres, *xres)
		}
		// Contents are in the spool once each, in archive order (the hard
		// link shares its target's).
		if n := len(sp.b); int64(n) != sres.Bytes {
			t.Errorf("%s: spool of %d bytes for %d bytes of files", c, n, sres.Bytes)
		}
		// TestFS opens every entry: leave out the dangling symlink.
		sfs, _, err = p.Spool(ctx, &memSpool{}, ExtractOptions{Filter: func(e *Entry) bool { return e.Path != "usr/bin/abs" }})
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(sfs, "usr/bin/hello", "usr/bin/hello2", "usr/bin/suid", "usr/share/ro/f", "etc/implied/parent"); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
}

// TestSpoolFilter: only the chosen entries are spooled; their parents
// appear as directories.
func TestSpoolFilter(t *testing.T) {
	p, err := openBytes(t, makeDeb(t, XZ, goodTree))
	if err != nil {
		t.Fatal(err)
	}
	sp := &memSpool{}
	sfs, res, err := p.Spool(context.Background(), sp, ExtractOptions{Filter: func(e *Entry) bool { return e.Path == "usr/share/ro/f" }})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"usr drwxr-xr-x", "usr/share drwxr-xr-x", "usr/share/ro drwxr-xr-x", "usr/share/ro/f -r--r--r-- read only dir"}
	if got := fsTree(t, sfs); !equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if string(sp.b) != "read only dir" || res.Files != 1 {
		t.Errorf("spool %q, %+v", sp.b, res)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSpoolSymlinks: symlinks resolve inside the package tree only.
func TestSpoolSymlinks(t *testing.T) {
	ents := []tarEnt{
		dir("./", 0o755),
		file("./etc/passwd", "the package's own", 0o644),
		file("./lib/modules/1.0/kernel/a.ko", "a", 0o644),
		symlink("./lib/modules/1.0/rel.ko", "kernel/a.ko"),
		symlink("./lib/modules/1.0/abs", "/etc/passwd"),
		symlink("./lib/modules/1.0/up", "../../../../../../etc/passwd"),
		symlink("./lib/modules/1.0/dir", "kernel"),
		symlink("./lib/modules/1.0/build", "/usr/src/linux-headers-1.0"),
		symlink("./loop1", "loop2"),
		symlink("./loop2", "loop1"),
	}
	p, err := openBytes(t, makeDeb(t, Gzip, ents))
	if err != nil {
		t.Fatal(err)
	}
	sfs, _, err := p.Spool(context.Background(), &memSpool{}, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := fs.Sub(sfs, "lib/modules/1.0")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"rel.ko":      "a",
		"abs":         "the package's own", // from the package root, never the host's
		"up":          "the package's own", // ".." stops at the package root
		"dir/a.ko":    "a",
		"kernel/a.ko": "a",
	} {
		b, err := fs.ReadFile(mfs, name)
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
		f, err := mfs.Open(name)
		if err != nil {
			t.Errorf("open %s: %v", name, err)
			continue
		}
		b, err = io.ReadAll(f)
		fi, _ := f.Stat()
		f.Close()
		if string(b) != want || fi.Size() != int64(len(want)) || !fi.Mode().IsRegular() {
			t.Errorf("open %s: %q, %v, size %d mode %v", name, b, err, fi.Size(), fi.Mode())
		}
	}
	if fi, err := fs.Stat(mfs, "dir"); err != nil || !fi.IsDir() {
		t.Errorf("stat dir: %v, %v", fi, err)
	}
	if ents, err := fs.ReadDir(mfs, "dir"); err != nil || len(ents) != 1 || ents[0].Name() != "a.ko" {
		t.Errorf("readdir through a symlink: %v, %v", ents, err)
	}
	if fi, err := fs.Lstat(mfs, "dir"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat dir: %v, %v", fi, err)
	}
	if l, err := fs.ReadLink(mfs, "build"); err != nil || l != "/usr/src/linux-headers-1.0" {
		t.Errorf("readlink build: %q, %v", l, err)
	}
	if _, err := fs.Stat(mfs, "build"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a symlink to what the package lacks: %v, want ErrNotExist", err)
	}
	if _, err := sfs.Open("loop1"); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("symlink loop: %v, want ELOOP", err)
	}
	if _, err := sfs.Open("etc/passwd/x"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("below a file: %v, want ENOTDIR", err)
	}
	for _, bad := range []string{"/etc/passwd", "../x", "a/../b", ""} {
		if _, err := sfs.Open(bad); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("open %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestSpoolHardLinkNotTaken: a hard link to an entry the filter dropped
// is refused (Extract cannot make it either).
func TestSpoolHardLinkNotTaken(t *testing.T) {
	p, err := openBytes(t, makeDeb(t, None, goodTree))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Spool(context.Background(), &memSpool{}, ExtractOptions{Filter: func(e *Entry) bool { return e.Path != "usr/bin/hello" }})
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want a FormatError", err)
	}
}
