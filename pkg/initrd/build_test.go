package initrd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// TestBuildResult builds from every kind of source plus modules, an init
// with its skeleton and an early archive, and checks the Result against
// the bytes: size and sha256, the entries as Walk reads them back, the
// modules in the load order, and the assembly order (sources in order,
// then modules, then /init).
func TestBuildResult(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("from the tree\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "init"), []byte("replaced by Init\n"), 0o755)
	override := filepath.Join(dir, "motd")
	os.WriteFile(override, []byte("from File\n"), 0o600)
	spec := filepath.Join(dir, "s.spec")
	os.WriteFile(spec, []byte("dir /run 755 0 0\nslink /bin/sh busybox 777 0 0\n"), 0o644)
	modDir := fakeModules(t, true)
	modPath := "lib/modules/6.99.0-test/kernel/lib/libcrc32c.ko"
	early := buildBytes(t, goldenArchiveF(), WriteOptions{Compression: None})
	initProg := []byte("#!/bin/sh\necho guest init\n")

	cfg := Config{
		Sources: []Source{
			Dir{Path: tree},
			File{Src: override, Dst: "/etc/motd", Mode: source.Perm(0o644)},
			SpecFile{Path: spec},
			// Replaced by the module of the same path: modules come after
			// the sources.
			Entry{Path: modPath, Mode: TypeReg | 0o644, Data: []byte("not a module")},
		},
		Modules:         Modules{Dir: modDir, Names: []string{"erofs"}},
		Init:            Init{Data: initProg, Skeleton: true},
		Early:           Early{Data: early},
		Compression:     Gzip,
		SourceDateEpoch: 1700000000,
	}
	var out bytes.Buffer
	res, err := Build(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out.Bytes())
	if res.Size != int64(out.Len()) || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("result says %d bytes, sha256 %s; wrote %d bytes, sha256 %x", res.Size, res.SHA256, out.Len(), sum)
	}
	if res.Compression != Gzip || res.Level != 6 || res.EarlySize != int64(len(early)) {
		t.Errorf("compression %s level %d early %d", res.Compression, res.Level, res.EarlySize)
	}
	initSum := sha256.Sum256(initProg)
	if res.InitSHA256 != hex.EncodeToString(initSum[:]) {
		t.Errorf("init sha256 %s", res.InitSHA256)
	}
	if res.KernelRelease != "6.99.0-test" || names(res.Modules) != "crc32c_generic? libcrc32c erofs" {
		t.Errorf("modules %s: %q", res.KernelRelease, names(res.Modules))
	}
	if res.Modules[1].Path != modPath || res.Modules[2].NeededBy != "" || res.Modules[1].NeededBy != "erofs" {
		t.Errorf("module details %+v", res.Modules)
	}

	// The entries read back from the main archive (after the early one).
	var back []Header
	contents := map[string]string{}
	err = Walk(context.Background(), bytes.NewReader(out.Bytes()), func(h *Header, seg Segment, r io.Reader) error {
		if seg.Index == 1 {
			return nil
		}
		back = append(back, *h)
		b, err := io.ReadAll(r)
		contents[h.Name] = string(b) + h.Linkname
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, res.Entries) {
		t.Errorf("Result.Entries differ from what Walk reads:\n%+v\n%+v", res.Entries, back)
	}
	for name, want := range map[string]string{
		"etc/motd": "from File\n",
		"init":     string(initProg),
		"bin/sh":   "busybox",
		LoadOrderPath: "# kernel modules to load, in order (imagebuilder initrd)\n" +
			"/lib/modules/6.99.0-test/kernel/crypto/crc32c_generic.ko optional\n/" + modPath + "\n" +
			"/lib/modules/6.99.0-test/kernel/fs/erofs/erofs.ko\n",
	} {
		if contents[name] != want {
			t.Errorf("%s: %q, want %q", name, contents[name], want)
		}
	}
	if !strings.HasPrefix(contents[modPath], "\x7fELF") {
		t.Errorf("%s is not the module", modPath)
	}
	for _, p := range []string{"dev/console", "proc", "sys", "run"} {
		if _, ok := contents[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
}

// TestBuildCancel: a cancelled build stops inside a large file and
// returns the context's error and no result.
func TestBuildCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const size = 1 << 30
	big := Entry{Path: "big", Mode: TypeReg | 0o644, Size: size, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(&cancelAfter{n: 1 << 20, cancel: cancel}), nil
	}}
	var out countWriter
	res, err := Build(ctx, Config{Sources: []Source{big}, Compression: Gzip}, &out)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Fatalf("result %v, error %v; want none and context.Canceled", res, err)
	}
	if out.n > 64<<20 {
		t.Errorf("wrote %d bytes after the cancel", out.n)
	}
	// Cancelled before: nothing is read.
	res, err = Build(ctx, Config{Sources: []Source{Dir{Path: "/nonexistent"}}}, io.Discard)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("cancelled build: %v, %v", res, err)
	}
}

// cancelAfter reads zeros and cancels after n bytes.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	clear(p)
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestConfigValidate: inconsistent configs are refused before any work,
// with errors naming the Config fields (never a CLI flag).
func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Compression: "lz4"}, `unknown compression "lz4"`},
		{Config{Compression: None, Level: 3}, "level 3 given without compression"},
		{Config{Compression: Zstd, Level: 23}, "zstd level 23 out of range 1..22"},
		{Config{SourceDateEpoch: -1}, "SourceDateEpoch -1 does not fit"},
		{Config{Init: Init{Path: "x", Data: []byte("y")}}, "Config.Init: give Path or Data, not both"},
		{Config{Init: Init{Skeleton: true}}, "Config.Init: Skeleton without an init program"},
		{Config{Early: Early{Path: "x", Data: []byte("y")}}, "Config.Early: give Path or Data, not both"},
		{Config{Modules: Modules{Names: []string{"erofs"}}}, "Config.Modules: Names without Dir"},
		{Config{Modules: Modules{Dir: "/lib/modules/6.1.0"}}, "Config.Modules: Dir without Names"},
		{Config{Modules: Modules{Dir: "/lib/modules/6.1.0", Names: []string{"a", "a"}}}, "Config.Modules: a named twice"},
		{Config{Sources: []Source{nil}}, "Config.Sources[0] is nil"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "--") {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
		if res, err := Build(context.Background(), c.cfg, io.Discard); err == nil || res != nil {
			t.Errorf("%+v: Build gave %v, %v", c.cfg, res, err)
		}
	}
}

// TestModulesTree: a modules directory that is not lib/modules/VERSION
// is refused (before, lib/modules itself gave an archive with every
// module under lib/modules/modules/VERSION/...), and a missing module is
// a ModuleNotFoundError.
func TestModulesTree(t *testing.T) {
	ctx := context.Background()
	good := fakeModules(t, false)
	empty := filepath.Join(t.TempDir(), "6.1.0-1-amd64")
	os.MkdirAll(empty, 0o755)
	file := filepath.Join(t.TempDir(), "6.1.0")
	os.WriteFile(file, nil, 0o644)
	for _, dir := range []string{filepath.Dir(good), filepath.Join(good, "kernel"), t.TempDir(), empty, file} {
		_, err := OpenModules(ctx, dir)
		if !errors.Is(err, ErrNotModulesTree) {
			t.Errorf("%s: %v, want ErrNotModulesTree", dir, err)
		}
		_, err = Build(ctx, Config{Modules: Modules{Dir: dir, Names: []string{"erofs"}}}, io.Discard)
		if !errors.Is(err, ErrNotModulesTree) || !strings.Contains(err.Error(), dir) {
			t.Errorf("Build with %s: %v", dir, err)
		}
	}
	_, err := Build(ctx, Config{Modules: Modules{Dir: good, Names: []string{"needs-missing"}}}, io.Discard)
	var nf *ModuleNotFoundError
	if !errors.As(err, &nf) || nf.Name != "no_such_mod" || nf.NeededBy != "needs_missing" {
		t.Errorf("missing dependency: %v", err)
	}
	_, err = Build(ctx, Config{Modules: Modules{Dir: good, Names: []string{"nonesuch"}}}, io.Discard)
	if !errors.As(err, &nf) || nf.Name != "nonesuch" || nf.NeededBy != "" {
		t.Errorf("missing module: %v", err)
	}
}

// TestTypedErrors: spec errors carry file and line; hostile paths match
// ErrInsecurePath.
func TestTypedErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	spec := filepath.Join(dir, "bad.spec")
	os.WriteFile(spec, []byte("dir /a 755 0 0\n\nnod /dev/x 600 0 0 q 1 1\n"), 0o644)
	_, err := Build(ctx, Config{Sources: []Source{SpecFile{Path: spec}}}, io.Discard)
	var se *SpecError
	if !errors.As(err, &se) || se.Name != spec || se.Line != 3 {
		t.Errorf("spec error %v", err)
	}
	for _, src := range []Source{
		Entry{Path: "../etc/passwd", Mode: TypeReg | 0o644},
		File{Src: spec, Dst: "a/../../x"},
		Entry{Path: "a\x00b", Mode: TypeDir | 0o755},
	} {
		_, err := Build(ctx, Config{Sources: []Source{src}}, io.Discard)
		var ip *InsecurePathError
		if !errors.Is(err, ErrInsecurePath) || !errors.As(err, &ip) {
			t.Errorf("%s: %v, want ErrInsecurePath", src, err)
		}
	}
}
