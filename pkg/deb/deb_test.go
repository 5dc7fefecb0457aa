package deb

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// goodTree is a small package tree with every entry kind.
var goodTree = []tarEnt{
	dir("./", 0o755),
	dir("./usr/", 0o755),
	dir("./usr/bin/", 0o755),
	file("./usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755),
	file("./usr/bin/suid", "x", 0o4755),
	hardlink("./usr/bin/hello2", "./usr/bin/hello"),
	symlink("./usr/bin/hi", "hello"),
	symlink("./usr/bin/abs", "/etc/passwd"), // a symlink's target is data: never followed
	dir("./usr/share/", 0o755),
	dir("./usr/share/ro/", 0o555), // filled before its mode is set
	file("./usr/share/ro/f", "read only dir", 0o444),
	file("./etc/implied/parent", "parents not listed", 0o600),
}

// tree lists dir as "path mode [-> target] [body]" lines.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
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

func TestExtractCompressions(t *testing.T) {
	want := []string{
		"etc drwxr-xr-x",
		"etc/implied drwxr-xr-x",
		"etc/implied/parent -rw------- parents not listed",
		"usr drwxr-xr-x",
		"usr/bin drwxr-xr-x",
		"usr/bin/abs Lrwxrwxrwx -> /etc/passwd",
		"usr/bin/hello -rwxr-xr-x #!/bin/sh\necho hello\n",
		"usr/bin/hello2 -rwxr-xr-x #!/bin/sh\necho hello\n",
		"usr/bin/hi Lrwxrwxrwx -> hello",
		"usr/bin/suid urwxr-xr-x x",
		"usr/share drwxr-xr-x",
		"usr/share/ro dr-xr-xr-x",
		"usr/share/ro/f -r--r--r-- read only dir",
	}
	for _, c := range []Compression{None, Gzip, XZ, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			p, err := openBytes(t, makeDeb(t, c, goodTree))
			if err != nil {
				t.Fatal(err)
			}
			if p.Control.Package() != "hello" || p.Control.Version() != "1.0-1" || p.Control.Architecture() != "amd64" || p.DataComp != c || p.Format != "2.0" {
				t.Fatalf("package %+v control %+v", p, p.Control)
			}
			dir := filepath.Join(t.TempDir(), "x")
			res, err := p.Extract(context.Background(), dir, ExtractOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer makeWritable(dir)
			if got := tree(t, dir); !reflect.DeepEqual(got, want) {
				t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			wantRes := ExtractResult{Dir: dir, Files: 4, Dirs: 4, Symlinks: 2, HardLinks: 1, Bytes: int64(len("#!/bin/sh\necho hello\n") + 1 + len("read only dir") + len("parents not listed"))}
			if *res != wantRes {
				t.Errorf("result %+v, want %+v", *res, wantRes)
			}
		})
	}
}

// makeWritable lets t.TempDir remove read-only directories.
func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

func TestExtractUmask(t *testing.T) {
	// Modes come from the package, not the umask (implied parents 0755).
	old := umask(0o077)
	defer umask(old)
	p, err := openBytes(t, makeDeb(t, None, goodTree))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "x")
	if _, err := p.Extract(context.Background(), dir, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	defer makeWritable(dir)
	for name, want := range map[string]fs.FileMode{"etc": fs.ModeDir | 0o755, "usr/bin/hello": 0o755, "usr/share/ro/f": 0o444} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
}

func TestMultiBlockXZ(t *testing.T) {
	// Enough data for many blocks, decoded in parallel and in order.
	var ents []tarEnt
	ents = append(ents, dir("./", 0o755))
	for i := 0; i < 64; i++ {
		ents = append(ents, file("./f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), strings.Repeat(string(rune('A'+i%26)), 3000+i*17), 0o644))
	}
	data := makeTar(t, ents)
	xzData := compress(t, XZ, data, 16<<10)
	hdr, blocks := xzBlocks(readerAt(xzData), int64(len(xzData)))
	if len(blocks) < 4 || hdr == nil {
		t.Fatalf("want a multi-block stream, got %d blocks", len(blocks))
	}
	ctl := compress(t, None, makeTar(t, []tarEnt{file("./control", testControl, 0o644)}), 0)
	debBytes := makeAr([]arMem{{name: "debian-binary", data: []byte("2.0\n")}, {name: "control.tar", data: ctl}, {name: "data.tar.xz", data: xzData}})
	for _, workers := range []int{1, 2, 3} {
		p, err := openBytes(t, debBytes)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		tw := 0
		err = p.Walk(context.Background(), WalkOptions{XZWorkers: workers}, func(e *Entry, r io.Reader) error {
			b, err := io.ReadAll(r)
			got = append(got, b...)
			tw++
			return err
		})
		if err != nil {
			t.Fatalf("workers %d: %v", workers, err)
		}
		var want []byte
		for _, e := range ents[1:] {
			want = append(want, e.body...)
		}
		if string(got) != string(want) || tw != len(ents)-1 {
			t.Fatalf("workers %d: contents differ (%d entries)", workers, tw)
		}
	}
	// A flipped byte inside a block is caught by that block's check.
	bad := append([]byte(nil), debBytes...)
	off := len(debBytes) - len(xzData) + int(blocks[2].off) + 40
	bad[off] ^= 0x55
	p, err := openBytes(t, bad)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Walk(context.Background(), WalkOptions{XZWorkers: 2}, func(e *Entry, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("corrupt block: %v, want a FormatError", err)
	}
	t.Logf("corrupt block: %v", err)
}

type readerAt []byte

func (b readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestCancel(t *testing.T) {
	p, err := openBytes(t, makeDeb(t, XZ, goodTree))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "x")
	if _, err := p.Extract(ctx, dir, ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled Extract left %s behind", dir)
	}
}

func TestControl(t *testing.T) {
	c, err := ParseControl([]byte(testControl))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Get("description"); got != "a test\nsecond line" {
		t.Errorf("Description %q", got)
	}
	deps, err := c.Depends()
	if err != nil {
		t.Fatal(err)
	}
	want := []Alternatives{{{Name: "libc6", Op: ">=", Version: "2.36"}}, {{Name: "foo"}, {Name: "bar", Arch: "any"}}}
	if !reflect.DeepEqual(deps, want) {
		t.Errorf("Depends %+v, want %+v", deps, want)
	}
	for _, bad := range []string{
		"Version: 1\nArchitecture: all\n",                         // no Package
		"Package: x\nVersion: 1\nArchitecture: all\n",             // name too short
		"Package: Hello\nVersion: 1\nArchitecture: all\n",         // upper case
		"Package: ab\nPackage: ab\nVersion: 1\nArchitecture: all", // twice
		" lead\nPackage: ab\nVersion: 1\nArchitecture: all",       // continuation first
		"Package: ab\nVersion: 1\nArchitecture: all\n\nPackage: cd\n",
		"Package ab\nVersion: 1\nArchitecture: all\n",
	} {
		if _, err := ParseControl([]byte(bad)); err == nil {
			t.Errorf("ParseControl(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	}
	for _, bad := range []string{"a (>= 1", "ab (~ 1)", "ab (>=)", "A", "ab junk"} {
		if _, err := ParseRelations(bad); err == nil {
			t.Errorf("ParseRelations(%q) accepted", bad)
		}
	}
}
