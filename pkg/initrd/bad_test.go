package initrd

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// write writes a to nowhere.
func write(a *Archive, opts WriteOptions) error {
	_, err := a.Write(context.Background(), io.Discard, opts)
	return err
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.img")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: takes no disk space.
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bigDir := filepath.Join(dir, "tree")
	os.MkdirAll(bigDir, 0o755)
	os.Link(big, filepath.Join(bigDir, "huge"))
	os.WriteFile(filepath.Join(dir, "ok"), []byte("ok"), 0o644)

	for _, c := range []struct {
		name string
		do   func(a *Archive) error
		want string
	}{
		{"escaping path", func(a *Archive) error { return a.Add(Entry{Path: "../etc/passwd", Mode: TypeReg | 0o644}) }, `path "../etc/passwd" escapes the archive root`},
		{"escaping path inside", func(a *Archive) error { return a.Add(Entry{Path: "a/../../x", Mode: TypeDir | 0o755}) }, "escapes the archive root"},
		{"escaping file", func(a *Archive) error {
			return File{Src: filepath.Join(dir, "ok"), Dst: "/../../root/ok"}.AddTo(ctx, a)
		}, "escapes the archive root"},
		{"escaping spec", func(a *Archive) error {
			return a.AddSpec(ctx, strings.NewReader("dir /ok 755 0 0\nslink /../x y 777 0 0\n"), "s.spec", dir)
		}, "s.spec:2: path \"/../x\" escapes"},
		{"root itself", func(a *Archive) error { return a.Add(Entry{Path: "/", Mode: TypeDir | 0o755}) }, "names the archive root"},
		{"file over 4 GiB", func(a *Archive) error { return File{Src: big, Dst: "big"}.AddTo(ctx, a) }, "size 4294967296 exceeds the newc limit"},
		{"dir with a file over 4 GiB", func(a *Archive) error { return Dir{Path: bigDir}.AddTo(ctx, a) }, "huge: size 4294967296 exceeds the newc limit"},
		{"entry over 4 GiB", func(a *Archive) error {
			return a.Add(Entry{Path: "x", Mode: TypeReg, Size: 1 << 33, Open: func() (io.ReadCloser, error) { return nil, nil }})
		}, "exceeds the newc limit"},
		{"spec unknown type", func(a *Archive) error {
			return a.AddSpec(ctx, strings.NewReader("# c\n\ndir /a 755 0 0\nfiel /a/b x 644 0 0\n"), "init.spec", dir)
		}, `init.spec:4: unknown type "fiel"`},
		{"spec bad mode", func(a *Archive) error { return a.AddSpec(ctx, strings.NewReader("dir /a 8755 0 0\n"), "m.spec", dir) }, `m.spec:1: mode "8755" is not an octal permission`},
		{"spec fields", func(a *Archive) error { return a.AddSpec(ctx, strings.NewReader("dir /a 755 0\n"), "f.spec", dir) }, "f.spec:1: dir wants 4 fields, got 3"},
		{"spec missing file", func(a *Archive) error {
			return a.AddSpec(ctx, strings.NewReader("file /a nosuch 644 0 0\n"), "g.spec", dir)
		}, "g.spec:1: stat " + filepath.Join(dir, "nosuch")},
		{"spec device type", func(a *Archive) error {
			return a.AddSpec(ctx, strings.NewReader("nod /dev/x 600 0 0 x 1 1\n"), "d.spec", dir)
		}, `d.spec:1: device type "x"`},
		{"file under a file", func(a *Archive) error {
			a.Add(Entry{Path: "bin", Mode: TypeReg | 0o644})
			a.Add(Entry{Path: "bin/sh", Mode: TypeReg | 0o755})
			return write(a, WriteOptions{Compression: None})
		}, "bin/sh: parent bin is not a directory"},
		{"unknown compression", func(a *Archive) error { return write(a, WriteOptions{Compression: "lz4"}) }, `unknown compression "lz4" (want none, gzip or zstd)`},
		{"gzip level", func(a *Archive) error { return write(a, WriteOptions{Compression: Gzip, Level: 12}) }, "gzip level 12 out of range"},
		{"level without compression", func(a *Archive) error { return write(a, WriteOptions{Compression: None, Level: 3}) }, "level 3 given without compression"},
		{"mtime beyond newc", func(a *Archive) error { return write(a, WriteOptions{SourceDateEpoch: 1 << 32}) }, "SourceDateEpoch 4294967296 does not fit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.do(New())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestFileChangedWhileBuilding: a source that shrinks between AddDir and
// Build is an error, not a short archive.
func TestFileChangedWhileBuilding(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	a := New()
	mustAdd(t, a, Dir{Path: dir})
	os.WriteFile(p, []byte("01"), 0o644)
	err := write(a, WriteOptions{Compression: Gzip})
	if err == nil || !strings.Contains(err.Error(), "changed size") {
		t.Fatalf("error %v", err)
	}
}
