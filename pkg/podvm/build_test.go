package podvm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testTool is the tool identity of library test builds (the manifest
// records it, so golden digests need a fixed one).
var testTool = Tool{Name: "imagebuilder", Version: "test", Revision: "test"}

// recorder is a Progress that keeps each stage's status, and the steps
// of each stage in order.
type recorder struct {
	mu    sync.Mutex
	st    map[string]StageStatus
	steps map[string][]*recTask // by stage
}

func newRecorder() *recorder {
	return &recorder{st: map[string]StageStatus{}, steps: map[string][]*recTask{}}
}

func (r *recorder) Start(stage string, total int64) ProgressTask {
	return &recTask{r: r, name: stage, total: total}
}

// recTask is a stage or a step; done is the sum of its Adds, ended says
// Done was called (with Stage "STAGE/STEP" for a step).
type recTask struct {
	r           *recorder
	name        string
	stage       string // the stage of a step
	total, done int64
	ended       string
}

func (t *recTask) Add(n int64) {
	t.r.mu.Lock()
	t.done += n
	t.r.mu.Unlock()
}

func (t *recTask) Step(name string, total int64) ProgressTask {
	s := &recTask{r: t.r, name: name, stage: t.name, total: total}
	t.r.mu.Lock()
	t.r.steps[t.name] = append(t.r.steps[t.name], s)
	t.r.mu.Unlock()
	return s
}

func (t *recTask) Done(s StageStatus) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	if t.stage != "" {
		t.ended = s.Stage
		return
	}
	t.r.st[s.Stage] = s
}

// cachedStages lists the stages reused from the cache, sorted.
func (r *recorder) cachedStages() []string {
	var out []string
	for n, s := range r.st {
		if s.Cached {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// reproTree copies the reproducibility config and its inputs into root,
// keeping their relative places (pkg/podvm/testdata/repro and
// testdata/igvm/inputs/synthetic-bzImage), with fixed modes, and returns
// the config's path. reverse creates files and directories in reverse
// order.
func reproTree(t testing.TB, root string, reverse bool) string {
	t.Helper()
	type item struct{ src, dst string }
	var items []item
	srcRoot := filepath.Join("testdata", "repro")
	dstRoot := filepath.Join(root, "pkg", "podvm", "testdata", "repro")
	err := filepath.Walk(srcRoot, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(srcRoot, p)
		items = append(items, item{p, filepath.Join(dstRoot, rel)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items = append(items, item{filepath.Join("..", "..", "testdata", "igvm", "inputs", "synthetic-bzImage"),
		filepath.Join(root, "testdata", "igvm", "inputs", "synthetic-bzImage")})
	if reverse {
		sort.Slice(items, func(i, j int) bool { return items[i].dst > items[j].dst })
	}
	for _, it := range items {
		fi, err := os.Stat(it.src)
		if err != nil {
			t.Fatal(err)
		}
		if fi.IsDir() {
			if err := os.MkdirAll(it.dst, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(it.dst, 0o755)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(it.dst), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(it.src)
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := os.WriteFile(it.dst, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(it.dst, mode)
	}
	return filepath.Join(dstRoot, "podvm.yaml")
}

// outputSums returns the sha256 of every file of an output directory.
func outputSums(t testing.TB, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		sums[e.Name()] = hex.EncodeToString(s[:])
	}
	return sums
}

func build(t testing.TB, cfgPath, out string, opts BuildOptions) (*Manifest, *recorder, error) {
	t.Helper()
	cfg, err := Load(cfgPath, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	opts.Output, opts.Progress = out, rec
	if opts.Tool == (Tool{}) {
		opts.Tool = testTool
	}
	m, err := Build(context.Background(), cfg, opts)
	return m, rec, err
}

// reproGolden pins the sha256 of every output of testdata/repro/podvm.yaml
// built with testTool. A change of any stage's bytes moves them: say which
// and why in the commit that updates them.
var reproGolden = map[string]string{
	"cmdline.txt":                       "8bd43ce50d26adad01060d6089110af9749220924ce7f421ef99f32738bcd5ed",
	"configuration-metal-qemu-snp.toml": "8824f1c213591bf4eda4844df81347ce4b40a3486f60a07267033162fad6235d",
	"containerd-runtime.toml":           "a687ab8d9779dac2d32fc54958b24532cad7a041817deec8d643138728a36d8f",
	"id-block-aks-clh-snp.json":         "335c15ac309bd5343e86de3455d28dce5c43f399ae23c644cd57fec1c8814d46",
	"id-block-metal-qemu-snp.json":      "74140fece4ab2aae228afa0b9c36770535ef8a777afb7fc42d79e7ba3aba2c1e",
	"initrd.img":                        "973ae3e4fa46fb539db1a8d8d698d7786d7a2aaa6c747412750bdb5140cacf6b",
	"install-plan.json":                 "f8f4d16856400c98a2c56dc6723910fec5b39cf97ea623b762b78a4aa79b37a7",
	"manifest.json":                     "157ddc25d80568c7d23bc6c775254c97da14dc4bb5a4759634ecbe9378f09973",
	"ovmf-metal-qemu-snp.fd":            "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c",
	"podvm.igvm":                        "6cea8d6c4f4c560ecb649a63d6ea3bc77032bccab9e865a20dc3c2c06b4a94d0",
	"reference-values.contrast.json":    "66ac9d1eb52db9e031b777de47c8255589b1dc65b6bc583b73745df1e3629573",
	"reference-values.json":             "e19c8038e574a2c4e4af515cef15110c6ffd43e99296e9ef27b3f801075aaa80",
	"rootfs.img":                        "40cc91b370668ff30e40b11836e4483c091bf6c2be4fc977ec982060f2288d55",
	"runtimeclass.yaml":                 "91c5df57f3326531e04370498418d4ff7cadc43ca8e02c5fabc35b1109fe6c07",
	"vmlinuz":                           "897fb4c6b7acd73a95663800114bade1ef746331030b791a8ab0aee9ea9adaa6",
}

// TestBuildReproducible builds the reproducibility config twice, under
// different working directories, time zones, umasks, GOMAXPROCS, input
// times, owners and directory creation orders, with and without the
// stage cache: every output, manifest.json included, is identical, and
// equal to the pinned digests. (cmd/imagebuilder's TestBuildReproducibleCLI
// does the same in child processes with their environment changed.)
func TestBuildReproducible(t *testing.T) {
	base := t.TempDir()
	type run struct {
		dir     string
		reverse bool
		tz      *time.Location
		umask   int
		procs   int
		cache   bool
		owner   bool
	}
	runs := []run{
		{dir: filepath.Join(base, "a"), tz: time.UTC, umask: 0o022, procs: 2, cache: true},
		{dir: filepath.Join(base, "b", "deeper", "still"), reverse: true, tz: time.FixedZone("IST", 5*3600+1800), umask: 0o077, procs: 1, owner: true},
	}
	var sums []map[string]string
	for i, r := range runs {
		cfg := reproTree(t, r.dir, r.reverse)
		// Input times and owners.
		stamp := time.Unix(int64(1000000000+i*12345), 0)
		filepath.Walk(r.dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				os.Chtimes(p, stamp, stamp)
				if r.owner && os.Geteuid() == 0 {
					os.Lchown(p, 1234, 5678)
				}
			}
			return nil
		})
		oldWD, _ := os.Getwd()
		oldTZ := time.Local
		oldUmask := syscall.Umask(r.umask)
		oldProcs := runtime.GOMAXPROCS(r.procs)
		os.Chdir(r.dir)
		time.Local = r.tz
		out := filepath.Join(r.dir, "out")
		opts := BuildOptions{}
		if r.cache {
			opts.CacheDir = filepath.Join(r.dir, "cache")
		}
		_, _, err := build(t, cfg, out, opts)
		os.Chdir(oldWD)
		time.Local = oldTZ
		syscall.Umask(oldUmask)
		runtime.GOMAXPROCS(oldProcs)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, outputSums(t, out))
	}
	if len(sums[0]) != 15 {
		t.Errorf("%d outputs, want 15: %v", len(sums[0]), sums[0])
	}
	for name, sum := range sums[0] {
		if sums[1][name] != sum {
			t.Errorf("%s differs between the two builds: %s and %s", name, sum, sums[1][name])
		}
	}
	if len(reproGolden) == 0 {
		t.Logf("golden digests:\n%s", goldenLiteral(sums[0]))
		t.Fatal("no golden digests pinned")
	}
	for name, sum := range sums[0] {
		if reproGolden[name] != sum {
			t.Errorf("%s: sha256 %s, pinned %s", name, sum, reproGolden[name])
		}
	}
	if t.Failed() {
		t.Logf("digests of this build:\n%s", goldenLiteral(sums[0]))
	}
}

func goldenLiteral(sums map[string]string) string {
	var b strings.Builder
	for _, n := range sortedKeys2(sums) {
		b.WriteString("\t\"" + n + "\": \"" + sums[n] + "\",\n")
	}
	return b.String()
}

// TestBuildCache: a rebuild reuses every stage and gives the same bytes;
// changing only the command line reuses the kernel, rootfs and initrd; a
// corrupt cache entry is detected, logged and rebuilt, never used.
func TestBuildCache(t *testing.T) {
	dir := t.TempDir()
	cfg := reproTree(t, dir, false)
	cache := filepath.Join(dir, "cache")
	out := filepath.Join(dir, "out")
	_, rec, err := build(t, cfg, out, BuildOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.cachedStages(); len(c) != 0 {
		t.Errorf("first build reused %v", c)
	}
	// An OCI layout has nothing to pull.
	checkSteps(t, rec, stageRootfs, "flatten", "erofs", "verity")
	checkSteps(t, rec, stageInitrd, "compress")
	first := outputSums(t, out)

	_, rec, err = build(t, cfg, out, BuildOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(rec.cachedStages(), ","), "idblock,igvm,initrd,kernel,measure,rootfs"; got != want {
		t.Errorf("rebuild reused %s, want %s", got, want)
	}
	if len(rec.steps) != 0 {
		t.Errorf("stages reused from the cache reported steps: %v", rec.steps)
	}
	if again := outputSums(t, out); !equalSums(first, again) {
		t.Errorf("rebuild from the cache differs:\n%v\n%v", first, again)
	}

	// Without the cache: the same bytes.
	noCache := filepath.Join(dir, "nocache")
	_, rec, err = build(t, cfg, noCache, BuildOptions{CacheDir: cache, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.cachedStages(); len(c) != 0 {
		t.Errorf("--no-cache build reused %v", c)
	}
	if got := outputSums(t, noCache); !equalSums(first, got) {
		t.Errorf("build without the cache differs:\n%v\n%v", first, got)
	}

	// Only the command line changes.
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("panic=-1, quiet]"), []byte("panic=-1]"), 1), 0o644)
	_, rec, err = build(t, cfg, out, BuildOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(rec.cachedStages(), ","), "initrd,kernel,rootfs"; got != want {
		t.Errorf("command line change reused %s, want %s", got, want)
	}
	second := outputSums(t, out)
	if first[FileRootfs] != second[FileRootfs] || first[FileInitrd] != second[FileInitrd] || first[FileIGVM] == second[FileIGVM] {
		t.Errorf("command line change: rootfs, initrd must stay and the IGVM change:\n%v\n%v", first, second)
	}

	// A cached rootfs.img with one byte changed is found, logged and
	// rebuilt; the output is the right one.
	entries, _ := filepath.Glob(filepath.Join(cache, "stages", "*", "*", FileRootfs))
	if len(entries) != 1 {
		t.Fatalf("cached rootfs images: %v", entries)
	}
	f, err := os.OpenFile(entries[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	f.ReadAt(one, 1<<20+100)
	one[0] ^= 1
	f.WriteAt(one, 1<<20+100)
	f.Close()
	var logs bytes.Buffer
	_, rec, err = build(t, cfg, out, BuildOptions{CacheDir: cache, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if s := rec.st[stageRootfs]; s.Cached || !strings.Contains(s.Rebuilt, "sha256") {
		t.Errorf("corrupt rootfs entry: status %+v", s)
	}
	if !strings.Contains(logs.String(), "stage cache entry corrupt: rebuilding") || !strings.Contains(logs.String(), "rootfs.img") {
		t.Errorf("no log line for the corrupt entry: %q", logs.String())
	}
	if got := outputSums(t, out); !equalSums(second, got) {
		t.Errorf("rebuilt output differs:\n%v\n%v", second, got)
	}
}

// checkSteps checks that stage reported exactly the steps want, in order,
// each ended under its STAGE/STEP name with all of its known total done.
func checkSteps(t *testing.T, rec *recorder, stage string, want ...string) {
	t.Helper()
	var got []string
	for _, s := range rec.steps[stage] {
		got = append(got, s.name)
		if s.ended != stage+"/"+s.name {
			t.Errorf("step %s/%s ended as %q", stage, s.name, s.ended)
		}
		if s.total <= 0 || s.done != s.total {
			t.Errorf("step %s/%s: %d of %d bytes done", stage, s.name, s.done, s.total)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("stage %s reported steps %v, want %v", stage, got, want)
	}
}

func equalSums(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var _ = io.Discard
var _ = json.Marshal

// TestBuildErrors: bad inputs fail in the stage they belong to, naming the
// field or input, and publish nothing; a previous output stays as it was.
func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	cfgPath := reproTree(t, dir, false)
	orig, _ := os.ReadFile(cfgPath)
	prev := filepath.Join(dir, "prev")
	if _, _, err := build(t, cfgPath, prev, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	before := outputSums(t, prev)
	notOurs := filepath.Join(dir, "not-ours")
	os.MkdirAll(notOurs, 0o755)
	os.WriteFile(filepath.Join(notOurs, "precious"), []byte("x"), 0o644)
	deb, _ := filepath.Abs("../deb/testdata/hello_1.0-1_amd64.deb")
	for _, c := range []struct {
		name   string
		edit   func(string) string
		out    string // "" for a fresh directory, "prev" for the previous output
		stage  string // "" for a config *Error
		field  string
		substr string
	}{
		{"missing file", func(s string) string { return strings.Replace(s, "agent: agent", "agent: no-such-agent", 1) },
			"prev", "inputs", "spec.rootfs.agent", "no-such-agent: no such file"},
		{"not a bzImage", func(s string) string {
			return strings.Replace(s, "bzImage: ../../../../testdata/igvm/inputs/synthetic-bzImage", "bzImage: agent", 1)
		}, "prev", "kernel", "spec.kernel.bzImage", "not a bzImage"},
		{"deb without a kernel", func(s string) string {
			return strings.Replace(s, "bzImage: ../../../../testdata/igvm/inputs/synthetic-bzImage", "deb: "+deb, 1)
		}, "", "kernel", "spec.kernel.deb", "no kernel image"},
		{"module not in the package", func(s string) string {
			return strings.Replace(s, "bzImage: ../../../../testdata/igvm/inputs/synthetic-bzImage\n    modules: []", "deb: "+kernelDeb(t, dir)+"\n    modules: [no_such_module]", 1)
		}, "", "kernel", "spec.kernel.modules", "module no_such_module (requested) not found in lib/modules/1.0.0-test of linux-image-1.0.0-test"},
		{"OCI tag that does not resolve", func(s string) string { return strings.Replace(s, "oci-layout:oci:v1", "oci-layout:oci:v2", 1) },
			"prev", "sources", "spec.rootfs.sources[0]", `"v2"`},
		{"command line too long", func(s string) string {
			return strings.Replace(s, "quiet]", "quiet, x="+strings.Repeat("y", 2000)+"]", 1)
		}, "prev", "cmdline", "spec.cmdline.parameters", "longer than the 2047"},
		{"output not ours", func(s string) string { return s }, notOurs, "output", "", "refusing to replace it"},
		{"unwritable output", func(s string) string { return s }, "/proc/imagebuilder-test-out", "output", "", "cannot create files in /proc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(cfgPath, []byte(c.edit(string(orig))), 0o644)
			defer os.WriteFile(cfgPath, orig, 0o644)
			out := c.out
			switch out {
			case "":
				out = filepath.Join(t.TempDir(), "out")
			case "prev":
				out = prev
			}
			_, _, err := build(t, cfgPath, out, BuildOptions{CacheDir: filepath.Join(dir, "cache")})
			if err == nil {
				t.Fatal("built")
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("multi-line error %q", err)
			}
			if strings.Contains(err.Error(), filepath.Join(dir, "cache", "tmp")) {
				t.Errorf("%v: names a temporary path of the build", err)
			}
			var se *StageError
			var ce *Error
			switch {
			case c.stage == "":
				if errors.As(err, &se) || !errors.As(err, &ce) || ce.Path != c.field {
					t.Errorf("%v (%T): want a config *Error at %s", err, err, c.field)
				}
			case !errors.As(err, &se):
				t.Errorf("%v (%T) is not a *StageError", err, err)
			case se.Stage != c.stage || se.Field != c.field:
				t.Errorf("%v: stage %q field %q, want %q %q", err, se.Stage, se.Field, c.stage, c.field)
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), c.substr) {
				t.Errorf("%v: want %q in it", err, c.substr)
			}
			switch {
			case out == prev:
				if got := outputSums(t, prev); !equalSums(before, got) {
					t.Error("the previous output changed")
				}
			case out == notOurs:
				if names := dirNamesOf(t, notOurs); strings.Join(names, ",") != "precious" {
					t.Errorf("not-ours holds %v", names)
				}
			default:
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%s exists after a failed build", out)
				}
			}
			if names := dirNamesOf(t, dir); strings.Contains(strings.Join(names, ","), "tmp") {
				t.Errorf("temporary files left beside the output: %v", names)
			}
		})
	}
}

// kernelDeb writes a minimal Debian kernel package into dir: the
// synthetic bzImage as boot/vmlinuz-1.0.0-test and an empty modules tree
// (modules.dep), as ar with gzip'd tar members.
func kernelDeb(t *testing.T, dir string) string {
	t.Helper()
	bz, err := os.ReadFile("../../testdata/igvm/inputs/synthetic-bzImage")
	if err != nil {
		t.Fatal(err)
	}
	tgz := func(files map[string][]byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		for _, name := range sortedKeys2(files) {
			tw.WriteHeader(&tar.Header{Name: "./" + name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg})
			tw.Write(files[name])
		}
		tw.Close()
		zw.Close()
		return b.Bytes()
	}
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", tgz(map[string][]byte{"control": []byte("Package: linux-image-1.0.0-test\nVersion: 1.0-1\nArchitecture: amd64\n")})},
		{"data.tar.gz", tgz(map[string][]byte{"boot/vmlinuz-1.0.0-test": bz, "lib/modules/1.0.0-test/modules.dep": nil})},
	} {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		ar.Write(m.data)
		if len(m.data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	p := filepath.Join(dir, "linux-image-1.0.0-test_1.0-1_amd64.deb")
	if err := os.WriteFile(p, ar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func dirNamesOf(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestSweepTemp: a temporary tree left by a killed build (its process
// gone) is removed by the next build; one of a live process is kept.
func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	cfg := reproTree(t, dir, false)
	cache := filepath.Join(dir, "cache")
	dead := filepath.Join(cache, "tmp", "imagebuilder-2147483646-kernel-1")
	live := filepath.Join(cache, "tmp", fmt.Sprintf("imagebuilder-%d-kernel-2", os.Getppid()))
	other := filepath.Join(cache, "tmp", "someone-else")
	for _, d := range []string{dead, live, other} {
		os.MkdirAll(filepath.Join(d, "x"), 0o755)
	}
	if _, _, err := build(t, cfg, filepath.Join(dir, "out"), BuildOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{dead: false, live: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", d, err == nil, want)
		}
	}
}
