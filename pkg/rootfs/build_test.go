package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/golden"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// smallBuild writes the small fixture's layers as tar files in dir and
// returns build options for them.
func smallBuild(t testing.TB, dir string) (Options, *model) {
	var opts Options
	m := newModel()
	for i, l := range rootfstest.SmallLayers(t) {
		p := writeFile(t, filepath.Join(dir, fmt.Sprintf("layer%d.tar", i)), l)
		opts.Sources = append(opts.Sources, srcs(t, "tar:"+p)...)
		m.applyTar(t, l)
	}
	opts.Agent = fakeAgent(t, dir)
	m.applyTar(t, additions(t, opts.Agent))
	opts.Seed = "imagebuilder-test"
	opts.SourceDateEpoch = 1700000000
	return opts, m
}

// srcs parses source strings.
func srcs(t testing.TB, specs ...string) []source.Source {
	t.Helper()
	var out []source.Source
	for _, s := range specs {
		src, err := source.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, src)
	}
	return out
}

// files parses SRC:DST[:MODE] file specs.
func files(t testing.TB, specs ...string) []source.File {
	t.Helper()
	var out []source.File
	for _, s := range specs {
		f, err := source.ParseFile(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

const goldenFile = "../../testdata/rootfs/small.sha256"

func TestSmallImage(t *testing.T) {
	dir := t.TempDir()
	opts, m := smallBuild(t, dir)
	img := filepath.Join(dir, "rootfs.img")
	d, err := buildFile(t, opts, img)
	if err != nil {
		t.Fatal(err)
	}
	rootfstest.CompareTrees(t, rootfstest.ReadBack(t, img), m.describe())

	// Golden sha256 of the whole disk image.
	sum := sha256File(t, img)
	if golden.Update() {
		writeFile(t, goldenFile, []byte(sum+"  small fixture (internal/rootfstest.SmallLayers), seed imagebuilder-test, SOURCE_DATE_EPOCH=1700000000\n"))
	}
	g, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Fields(string(g))[0]; sum != want {
		t.Errorf("rootfs.img sha256 %s, golden %s; %s", sum, want, golden.Hint)
	}

	// Inspect agrees with the description and checks the root hash.
	f, _ := os.Open(img)
	defer f.Close()
	fi, _ := f.Stat()
	in, err := Inspect(context.Background(), f, fi.Size(), InspectOptions{Files: true})
	if err != nil {
		t.Fatal(err)
	}
	if !in.RootHashOK || in.Verity != d.Verity || in.Cmdline != d.Cmdline || in.DiskGUID != d.DiskGUID || in.Filesystem != d.Filesystem {
		t.Errorf("inspect differs from build:\n%+v\n%+v", in, d)
	}
	if len(in.Files) != len(m.files) {
		t.Errorf("inspect lists %d files, want %d", len(in.Files), len(m.files))
	}
	checkGeometry(t, d)
	checkOracles(t, img, d)
}

func checkGeometry(t *testing.T, d *Description) {
	t.Helper()
	p1, p2 := d.Partitions[0], d.Partitions[1]
	if p1.Offset != 1<<20 || p1.Size != d.Filesystem.Size || p2.Offset != p1.Offset+p1.Size || p2.Size%4096 != 0 ||
		p2.Size-d.Verity.HashSize >= 4096 || d.DiskSize%4096 != 0 {
		t.Errorf("partition geometry: %+v", d.Partitions)
	}
	if p1.UUID.String() != d.Verity.RootHash[:8]+"-"+d.Verity.RootHash[8:12]+"-"+d.Verity.RootHash[12:16]+"-"+d.Verity.RootHash[16:20]+"-"+d.Verity.RootHash[20:32] ||
		strings.ReplaceAll(p2.UUID.String(), "-", "") != d.Verity.RootHash[32:] {
		t.Errorf("PARTUUIDs %s %s are not the halves of %s", p1.UUID, p2.UUID, d.Verity.RootHash)
	}
	want := fmt.Sprintf("ibroot.hash=%s ibroot.salt=%s ibroot.alg=sha256 ibroot.blocks=%d ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs",
		d.Verity.RootHash, d.Verity.Salt, d.Verity.DataBlocks)
	if d.Cmdline.IBRoot != want {
		t.Errorf("ibroot cmdline %q, want %q", d.Cmdline.IBRoot, want)
	}
	if d.Cmdline.Systemd != "roothash="+d.Verity.RootHash {
		t.Errorf("systemd cmdline %q", d.Cmdline.Systemd)
	}
	// dm-init: name,uuid,minor,flags,table; the verity table as
	// Documentation/admin-guide/device-mapper/verity.rst lists it:
	// <version> <data_dev> <hash_dev> <data_bs> <hash_bs> <#blocks>
	// <hash_start> <alg> <digest> <salt>, over data_blocks*8 sectors.
	wantDM := fmt.Sprintf(`dm-mod.create="root,,,ro,0 %d verity 1 PARTUUID=%s PARTUUID=%s 4096 4096 %d 1 sha256 %s %s" root=/dev/dm-0 rootfstype=erofs ro`,
		d.Verity.DataBlocks*8, p1.UUID, p2.UUID, d.Verity.DataBlocks, d.Verity.RootHash, d.Verity.Salt)
	if d.Cmdline.DMModCreate != wantDM {
		t.Errorf("dm-mod.create cmdline %q, want %q", d.Cmdline.DMModCreate, wantDM)
	}
}

func TestRootHashChangesWithOneByte(t *testing.T) {
	dir := t.TempDir()
	opts, _ := smallBuild(t, dir)
	extra := writeFile(t, filepath.Join(dir, "extra"), bytes.Repeat([]byte("a"), 5000))
	opts.Files = files(t, extra+":/etc/extra:0600")
	d1, err := buildFile(t, opts, filepath.Join(dir, "a.img"))
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte("a"), 5000)
	b[4321] = 'b'
	writeFile(t, extra, b)
	d2, err := buildFile(t, opts, filepath.Join(dir, "b.img"))
	if err != nil {
		t.Fatal(err)
	}
	if d1.Verity.RootHash == d2.Verity.RootHash {
		t.Fatal("root hash did not change when one byte of one file did")
	}
	if d1.DiskGUID != d2.DiskGUID || d1.Verity.Salt != d2.Verity.Salt {
		t.Error("seed-derived identifiers changed with the content")
	}
	opts.Seed = "another seed"
	d3, err := buildFile(t, opts, filepath.Join(dir, "c.img"))
	if err != nil {
		t.Fatal(err)
	}
	if d3.DiskGUID == d2.DiskGUID || d3.Verity.Salt == d2.Verity.Salt || d3.Filesystem.UUID == d2.Filesystem.UUID {
		t.Error("identifiers did not change with the seed")
	}
}

// makeDirSource writes the same tree in a given order, with given mtimes
// and (when root) owners.
func makeDirSource(t *testing.T, root string, reverse bool, mtime time.Time, uid int) {
	files := []string{"a/x", "a/y", "b/z", "c", "d/e/f"}
	if reverse {
		for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
			files[i], files[j] = files[j], files[i]
		}
	}
	for _, f := range files {
		p := writeFile(t, filepath.Join(root, f), []byte("content of "+f))
		os.Chmod(p, 0o644)
	}
	os.Symlink("c", filepath.Join(root, "link"))
	os.Link(filepath.Join(root, "c"), filepath.Join(root, "c-hard"))
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		if os.Geteuid() == 0 {
			os.Lchown(p, uid, uid)
		}
		os.Chtimes(p, mtime, mtime)
		return nil
	})
}

func TestReproducible(t *testing.T) {
	base := t.TempDir()
	build := func(name string, reverse bool, mtime time.Time, uid int, umask int, tz *time.Location) string {
		dir := filepath.Join(base, name)
		os.MkdirAll(dir, 0o755)
		old := syscall.Umask(umask)
		defer syscall.Umask(old)
		oldTZ := time.Local
		time.Local = tz
		defer func() { time.Local = oldTZ }()
		wd, _ := os.Getwd()
		defer os.Chdir(wd)
		os.Chdir(dir)
		makeDirSource(t, "src", reverse, mtime, uid)
		opts, _ := smallBuild(t, ".")
		opts.Sources = append(opts.Sources, srcs(t, "dir:src")...)
		os.MkdirAll("add/etc", 0o755)
		writeFile(t, "add/etc/added", []byte("added"))
		os.Chmod("add/etc/added", 0o644)
		os.Chmod("add/etc", 0o755)
		os.Chmod("add", 0o777&^os.FileMode(umask)) // the --add directory's own mode must not matter
		opts.AddDirs = []string{"add"}
		if _, err := buildFile(t, opts, "rootfs.img"); err != nil {
			t.Fatal(err)
		}
		return sha256File(t, "rootfs.img")
	}
	a := build("one", false, time.Unix(1000, 0), 0, 0o022, time.UTC)
	b := build("two/deeper", true, time.Now(), 4242, 0o077, time.FixedZone("X", -7*3600))
	if a != b {
		t.Fatalf("builds differ: %s vs %s", a, b)
	}
}

// TestDescriptionRecords: the description says what went into the image:
// each source's digest, the agent's sha256 and every added file's path,
// host source, sha256 and mode, hard links and empty files included.
func TestDescriptionRecords(t *testing.T) {
	dir := t.TempDir()
	opts, _ := smallBuild(t, dir)
	add := filepath.Join(dir, "add")
	writeFile(t, filepath.Join(add, "etc/kata/agent.toml"), []byte("[agent]\n"))
	writeFile(t, filepath.Join(add, "etc/kata/empty"), nil)
	writeFile(t, filepath.Join(add, "etc/kata/replaced"), []byte("from the tree"))
	os.Link(filepath.Join(add, "etc/kata/agent.toml"), filepath.Join(add, "etc/kata/agent-link.toml"))
	os.Symlink("agent.toml", filepath.Join(add, "etc/kata/symlink"))
	over := writeFile(t, filepath.Join(dir, "over"), []byte("from a file"))
	opts.AddDirs = []string{add}
	opts.Files = files(t, over+":/etc/kata/replaced:0600")
	d, err := buildFile(t, opts, filepath.Join(dir, "rootfs.img"))
	if err != nil {
		t.Fatal(err)
	}
	sha := func(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
	// The two names of one file share its content, read from the name
	// listed first.
	want := []AddedFile{
		{Path: "/etc/kata/agent-link.toml", Source: filepath.Join(add, "etc/kata/agent-link.toml"), Size: 8, SHA256: sha("[agent]\n"), Mode: sIFREG | 0o644},
		{Path: "/etc/kata/agent.toml", Source: filepath.Join(add, "etc/kata/agent-link.toml"), Size: 8, SHA256: sha("[agent]\n"), Mode: sIFREG | 0o644},
		{Path: "/etc/kata/empty", Source: filepath.Join(add, "etc/kata/empty"), Size: 0, SHA256: sha(""), Mode: sIFREG | 0o644},
		{Path: "/etc/kata/replaced", Source: over, Size: 11, SHA256: sha("from a file"), Mode: sIFREG | 0o600},
	}
	if fmt.Sprint(d.AddedFiles) != fmt.Sprint(want) {
		t.Errorf("added files:\n%+v\nwant\n%+v", d.AddedFiles, want)
	}
	agent, _ := os.ReadFile(opts.Agent)
	if d.Agent != (AddedFile{Path: "/usr/bin/kata-agent", Source: opts.Agent, Size: int64(len(agent)), SHA256: sha(string(agent)), Mode: sIFREG | 0o755}) {
		t.Errorf("agent: %+v", d.Agent)
	}
	if len(d.Sources) != len(opts.Sources) {
		t.Fatalf("%d sources recorded, want %d", len(d.Sources), len(opts.Sources))
	}
	for i, r := range d.Sources {
		if r.Source != opts.Sources[i].String() || r.SHA256 != sha256File(t, opts.Sources[i].Path) ||
			r.Pinned != opts.Sources[i].String()+"@sha256:"+r.SHA256 {
			t.Errorf("source %d: %+v", i, r)
		}
	}
}

// TestOptionErrors: a bad option is an OptionError naming the field, never
// a command-line flag.
func TestOptionErrors(t *testing.T) {
	dir := t.TempDir()
	good, _ := smallBuild(t, dir)
	notDir := writeFile(t, filepath.Join(dir, "plain"), []byte("x"))
	for _, c := range []struct {
		field  string
		index  int
		change func(o *Options)
	}{
		{"Seed", -1, func(o *Options) { o.Seed = "" }},
		{"Sources", -1, func(o *Options) { o.Sources = nil }},
		{"Agent", -1, func(o *Options) { o.Agent = "" }},
		{"Agent", -1, func(o *Options) { o.Agent = dir }},
		{"Agent", -1, func(o *Options) { o.Agent = filepath.Join(dir, "missing") }},
		{"AddDirs", 1, func(o *Options) { o.AddDirs = []string{dir, notDir} }},
		{"Files", 0, func(o *Options) { o.Files = []source.File{{Src: dir, Dst: "/x"}} }},
		{"Platform", -1, func(o *Options) { o.Platform = "bogus" }},
		{"SourceDateEpoch", -1, func(o *Options) { o.SourceDateEpoch = -1 }},
	} {
		o := good
		c.change(&o)
		d, err := Build(context.Background(), o, &rootfstest.MemDisk{})
		var oe *OptionError
		if d != nil || !errors.As(err, &oe) || oe.Field != c.field || oe.Index != c.index || strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %v (%+v)", c.field, err, oe)
		}
	}
}

// TestBuildCancel: a cancelled build returns the context's error and no
// description.
func TestBuildCancel(t *testing.T) {
	dir := t.TempDir()
	opts, _ := smallBuild(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := Build(ctx, opts, &rootfstest.MemDisk{})
	if d != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context: %v, %v", d, err)
	}
	// Cancelled while the disk is written.
	ctx, cancel = context.WithCancel(context.Background())
	disk := &cancellingDisk{cancel: cancel, after: 3}
	d, err = Build(ctx, opts, disk)
	if d != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Build cancelled mid-way: %v, %v", d, err)
	}
}

// cancellingDisk cancels the build after a few writes.
type cancellingDisk struct {
	rootfstest.MemDisk
	cancel func()
	after  int
}

func (c *cancellingDisk) WriteAt(p []byte, off int64) (int, error) {
	if c.after--; c.after == 0 {
		c.cancel()
	}
	return c.MemDisk.WriteAt(p, off)
}
