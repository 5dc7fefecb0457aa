package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// reproConfig copies pkg/podvm's reproducibility config with its inputs
// into root (keeping their relative places) and returns the config path.
// reverse creates the files in reverse order; stamp and uid set their
// times and (as root) owners.
func reproConfig(t *testing.T, root string, reverse bool, stamp time.Time, uid int) string {
	t.Helper()
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	filepath.Walk(filepath.Join(src, "pkg/podvm/testdata/repro"), func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(src, p)
			rels = append(rels, rel)
		}
		return nil
	})
	rels = append(rels, "testdata/igvm/inputs/synthetic-bzImage")
	sort.Strings(rels)
	if reverse {
		sort.Sort(sort.Reverse(sort.StringSlice(rels)))
	}
	for _, rel := range rels {
		fi, err := os.Stat(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, rel)
		if fi.IsDir() {
			os.MkdirAll(dst, 0o755)
			os.Chmod(dst, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		b, _ := os.ReadFile(filepath.Join(src, rel))
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dst, mode)
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, stamp, stamp)
			if uid > 0 && os.Geteuid() == 0 {
				os.Lchown(p, uid, uid+1)
			}
		}
		return nil
	})
	return filepath.Join(root, "pkg/podvm/testdata/repro/podvm.yaml")
}

func dirSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, n := range dirNames(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		sums[n] = hex.EncodeToString(s[:])
	}
	return sums
}

// runBuildChild runs `imagebuilder build args...` in a child process with
// extra environment and a shell prefix (umask), in dir.
func runBuildChild(t *testing.T, dir string, env []string, umask string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := cliCommand(append([]string{"build"}, args...)...)
	if umask != "" {
		cmd = exec.Command("sh", append([]string{"-c", "umask " + umask + " && exec \"$0\" \"$@\"", cmd.Path}, cmd.Args[1:]...)...)
		cmd.Env = append(os.Environ(), cliChildEnv+"=1")
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// TestBuildReproducibleCLI builds the reproducibility config in two child
// processes with different working directories, TZ, LC_ALL, umask,
// GOMAXPROCS, input times, owners and directory creation orders: every
// output, manifest.json included, is identical, and identical to what the
// library builds in this process (whose digests pkg/podvm pins).
func TestBuildReproducibleCLI(t *testing.T) {
	base := t.TempDir()
	var sums []map[string]string
	for i, v := range []struct {
		env     []string
		umask   string
		reverse bool
		uid     int
	}{
		{[]string{"TZ=UTC", "LC_ALL=C", "GOMAXPROCS=2"}, "022", false, 0},
		{[]string{"TZ=Asia/Kolkata", "LC_ALL=de_DE.UTF-8", "GOMAXPROCS=1"}, "077", true, 4321},
	} {
		root := filepath.Join(base, strings.Repeat("deeper/", i), "src")
		cfg := reproConfig(t, root, v.reverse, time.Unix(int64(1e9+i*99991), 0), v.uid)
		out := filepath.Join(root, "out")
		wd := filepath.Join(root, "pkg")
		_, stderr, code := runBuildChild(t, wd, v.env, v.umask, "-q", "-f", cfg, "-o", out, "--cache", filepath.Join(root, "cache"))
		if code != 0 {
			t.Fatalf("build %d: exit %d: %s", i, code, stderr)
		}
		sums = append(sums, dirSums(t, out))
	}
	// The library in this process, with the same tool identity.
	root := filepath.Join(base, "lib")
	cfgPath := reproConfig(t, root, false, time.Now(), 0)
	cfg, err := podvm.Load(cfgPath, podvm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := podvm.Build(context.Background(), cfg, podvm.BuildOptions{Output: filepath.Join(root, "out"), Tool: toolInfo()}); err != nil {
		t.Fatal(err)
	}
	sums = append(sums, dirSums(t, filepath.Join(root, "out")))
	if len(sums[0]) != 15 {
		t.Errorf("%d outputs: %v", len(sums[0]), sums[0])
	}
	for name, sum := range sums[0] {
		if sums[1][name] != sum || sums[2][name] != sum {
			t.Errorf("%s differs: %s, %s, library %s", name, sum, sums[1][name], sums[2][name])
		}
	}
}

// TestBuildCLI checks what the command prints: the table and the summary
// line on stdout, one log line per stage on stderr (not a terminal), the
// manifest with --json, nothing with -q.
func TestBuildCLI(t *testing.T) {
	root := t.TempDir()
	cfg := reproConfig(t, root, false, time.Now(), 0)
	out, cache := filepath.Join(root, "out"), filepath.Join(root, "cache")
	stdout, stderr, code := runBuildChild(t, root, nil, "", "-f", cfg, "-o", out, "--cache", cache)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ARTIFACT", "rootfs.img", "podvm.igvm", "TARGET", "aks-clh-snp", "EPYC-Genoa", "STAGE", "rootfs   built",
		out + "/manifest.json: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	// One line per stage, and before the rootfs and initrd stages' lines
	// one per step (an OCI layout has nothing to pull).
	var stages, steps []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		f := logFields(l)
		switch {
		case f["msg"] == `"stage done"` && f["cached"] == "false":
			stages = append(stages, f["stage"])
		case f["msg"] == `"step done"` && f["bytes"] != "" && f["bytes"] != "0":
			if slices.Contains(stages, f["stage"]) {
				t.Errorf("step line after its stage's: %q", l)
			}
			steps = append(steps, f["stage"]+"/"+f["step"])
		default:
			t.Errorf("log line %q", l)
		}
	}
	if len(stages) != len(podvm.Stages) {
		t.Errorf("stderr: %d stage lines, want one per stage (%d):\n%s", len(stages), len(podvm.Stages), stderr)
	}
	// rootfs and initrd run side by side: their steps interleave.
	var rootfs []string
	for _, s := range steps {
		if strings.HasPrefix(s, "rootfs/") {
			rootfs = append(rootfs, s)
		}
	}
	if len(steps) != 4 || !slices.Contains(steps, "initrd/compress") || strings.Join(rootfs, " ") != "rootfs/flatten rootfs/erofs rootfs/verity" {
		t.Errorf("step lines %q, want rootfs/flatten, rootfs/erofs, rootfs/verity in order and initrd/compress", steps)
	}
	// --json: the manifest, the same as manifest.json; log lines as JSON.
	stdout, stderr, code = runBuildChild(t, root, nil, "", "-f", cfg, "-o", out, "--cache", cache, "--json", "--log-format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	mf, _ := os.ReadFile(filepath.Join(out, podvm.FileManifest))
	if stdout != string(mf) {
		t.Errorf("--json printed something else than manifest.json:\n%s", stdout)
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["cached"] != true {
			t.Errorf("log line %q: %v", l, err)
		}
	}
	// -q: nothing.
	stdout, stderr, code = runBuildChild(t, root, nil, "", "-q", "-f", cfg, "-o", out, "--cache", cache)
	if code != 0 || stdout != "" || stderr != "" {
		t.Errorf("-q: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestBuildCLIErrors: each bad input is one line naming the stage and the
// field or input, exit 1 (2 for the config file itself), and nothing is
// written; a corrupt cache entry is rebuilt with a log line.
func TestBuildCLIErrors(t *testing.T) {
	root := t.TempDir()
	cfg := reproConfig(t, root, false, time.Now(), 0)
	orig, _ := os.ReadFile(cfg)
	deb, _ := filepath.Abs("../../pkg/deb/testdata/hello_1.0-1_amd64.deb")
	bz := "bzImage: ../../../../testdata/igvm/inputs/synthetic-bzImage"
	notOurs := filepath.Join(root, "not-ours")
	os.MkdirAll(notOurs, 0o755)
	os.WriteFile(filepath.Join(notOurs, "keep"), nil, 0o644)
	for _, c := range []struct {
		name string
		old  string
		new  string
		out  string
		code int
		want string
	}{
		{"missing file", "agent: agent", "agent: gone", "", 1, "build: inputs: spec.rootfs.agent: gone: no such file"},
		{"bad YAML", "kind: PodVMImage", "kind: [PodVMImage", "", 2, "podvm.yaml:6: YAML syntax"},
		{"unknown field", "  sourceDateEpoch:", "  sourceDateEpock:", "", 2, `spec.sourceDateEpock: unknown field (did you mean "sourceDateEpoch"?)`},
		{"not a bzImage", bz, "bzImage: init", "", 1, "build: kernel: spec.kernel.bzImage (init): not a bzImage"},
		{"deb without a kernel", bz, "deb: " + deb, "", 1, "build: kernel: spec.kernel.deb (" + deb + "): hello 1.0-1: no kernel image"},
		{"OCI reference that does not resolve", "oci-layout:oci:v1", "oci-layout:oci:v9", "", 1, `build: sources: spec.rootfs.sources[0] (oci-layout:oci:v9): no manifest "v9"`},
		{"target the layout cannot satisfy", "platform: igvm-mshv", "platform: igvm-kvm", "", 2, "spec.measurements.targets[0].platform: igvm-kvm needs the kvm IGVM layout, and spec.igvm.layout.kind is mshv (the default)"},
		{"runtime setting the payload refuses", "handlerPrefix: contrast-cc-", "handlerPrefix: contrast-cc-\n    containerdConfigVersion: 4", "", 2, "podvm.yaml:51: spec.runtime.containerdConfigVersion: 4: want 2 or 3"},
		{"command line too long", "quiet]", "quiet, x=" + strings.Repeat("y", 2100) + "]", "", 1, "build: cmdline: spec.cmdline.parameters: the command line is"},
		{"unwritable output", "", "", "/proc/imagebuilder-out", 1, "build: output: /proc/imagebuilder-out: cannot create files in /proc"},
		{"output not ours", "", "", notOurs, 1, "refusing to replace it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(cfg, bytes.Replace(orig, []byte(c.old), []byte(c.new), 1), 0o644)
			defer os.WriteFile(cfg, orig, 0o644)
			out := c.out
			if out == "" {
				out = filepath.Join(t.TempDir(), "out")
			}
			stdout, stderr, code := runBuildChild(t, root, nil, "", "-f", cfg, "-o", out, "--cache", filepath.Join(root, "cache"))
			// Log lines of the stages done before may precede the error,
			// which is one line, the last.
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if code != c.code || stdout != "" || strings.Count(stderr, "imagebuilder:") != 1 || !strings.HasPrefix(last, "imagebuilder: build: ") || !strings.Contains(last, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and one line with %q", code, stdout, stderr, c.code, c.want)
			}
			if c.out == "" {
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%s written", out)
				}
			} else if c.out == notOurs {
				if n := dirNames(t, notOurs); len(n) != 1 {
					t.Errorf("not-ours holds %v", n)
				}
			}
		})
	}

	// A cache entry whose digest does not match is rebuilt, with a log
	// line, and the output is right.
	out, cache := filepath.Join(root, "out"), filepath.Join(root, "cache2")
	if _, stderr, code := runBuildChild(t, root, nil, "", "-q", "-f", cfg, "-o", out, "--cache", cache); code != 0 {
		t.Fatal(stderr)
	}
	want := dirSums(t, out)
	imgs, _ := filepath.Glob(filepath.Join(cache, "stages", "*", "*", "initrd.img"))
	if len(imgs) != 1 {
		t.Fatalf("cached initrds: %v", imgs)
	}
	os.Remove(filepath.Join(out, "initrd.img")) // the output shares the cached file
	os.WriteFile(imgs[0], []byte("corrupt"), 0o644)
	os.RemoveAll(out)
	_, stderr, code := runBuildChild(t, root, nil, "", "-f", cfg, "-o", out, "--cache", cache)
	if code != 0 || !strings.Contains(stderr, `msg="stage cache entry corrupt: rebuilding" stage=initrd`) ||
		!strings.Contains(stderr, "stage=initrd seconds=") || !strings.Contains(stderr, "rebuilt=") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if got := dirSums(t, out); got["initrd.img"] != want["initrd.img"] || got["manifest.json"] != want["manifest.json"] {
		t.Errorf("rebuilt output differs")
	}
}

// TestBuildCLIKilled signals a real build while its rootfs stage pulls a
// layer from a registry: whatever the signal, the previous output is
// untouched and nothing is left beside it or in the stage cache; SIGINT
// exits 130 after removing what it started.
func TestBuildCLIKilled(t *testing.T) {
	ref, started := stallingRegistry(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			root := t.TempDir()
			cfg := reproConfig(t, root, false, time.Now(), 0)
			out, cache := filepath.Join(root, "out"), filepath.Join(root, "cache")
			if _, stderr, code := runBuildChild(t, root, nil, "", "-q", "-f", cfg, "-o", out, "--cache", cache); code != 0 {
				t.Fatal(stderr)
			}
			before := dirSums(t, out)
			b, _ := os.ReadFile(cfg)
			os.WriteFile(cfg, bytes.Replace(b, []byte("oci-layout:oci:v1"), []byte(ref), 1), 0o644)
			cmd, stderr := imagebuilderChild(t, "build", "-f", cfg, "-o", out, "--cache", cache)
			select {
			case <-started:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the layer download never started: %s", stderr)
			}
			// The disk is open in the stage cache, unnamed.
			if !waitOpen(cmd.Process.Pid, 20*time.Second, func(p string) bool {
				return strings.HasPrefix(p, filepath.Join(cache, "stages")) && strings.Contains(p, "(deleted)")
			}) {
				t.Errorf("open in the child: %v", openFiles(cmd.Process.Pid))
			}
			cmd.Process.Signal(sig)
			cmd.Wait()
			if sig == syscall.SIGINT {
				if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "interrupted by interrupt") {
					t.Errorf("exit %d, stderr %q", code, stderr)
				}
			}
			if got := dirSums(t, out); len(got) != len(before) || got["manifest.json"] != before["manifest.json"] {
				t.Errorf("the previous output changed")
			}
			if names := dirNames(t, root); strings.Contains(strings.Join(names, " "), ".out") {
				t.Errorf("left beside the output: %v", names)
			}
			// Only complete entries in the cache: each has its entry.json.
			dirs, _ := filepath.Glob(filepath.Join(cache, "stages", "*", "*"))
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, "entry.json")); err != nil {
					t.Errorf("incomplete cache entry %s", d)
				}
			}
			if tmp, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(tmp) > 0 && sig != syscall.SIGKILL {
				t.Errorf("temporary directories left: %v", tmp)
			}
		})
	}
}

// TestBuildDocs runs the console examples of docs/build.md in a copy of
// the reproducibility config's tree.
func TestBuildDocs(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("sha256sum not installed")
	}
	root := t.TempDir()
	reproConfig(t, root, false, time.Now(), 0)
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/build.md", doctest.Options{Dir: root, Path: []string{bin}})
}

// logFields splits a slog text line into its key=value fields (a quoted
// value keeps its quotes; values here have no spaces inside quotes except
// msg's).
func logFields(l string) map[string]string {
	f := map[string]string{}
	for l != "" {
		k, rest, ok := strings.Cut(l, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`) + 2
			v, rest = rest[:end], rest[end:]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		f[strings.TrimSpace(k)] = v
		l = strings.TrimPrefix(rest, " ")
	}
	return f
}
