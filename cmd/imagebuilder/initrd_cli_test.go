package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// initrdTree writes a small source tree and returns its directory.
func initrdTree(t *testing.T, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("hi\n"), 0o644)
	return tree
}

// TestInitrdBuildDefects: each case was accepted, or answered without the
// command or flag, before; now each is refused before any output exists,
// with one line naming the command and the flag or file.
func TestInitrdBuildDefects(t *testing.T) {
	dir := t.TempDir()
	tree := initrdTree(t, dir)
	out := filepath.Join(dir, "initrd.img")
	mods := filepath.Join(dir, "lib", "modules", "6.99.0-test")
	os.MkdirAll(filepath.Join(mods, "kernel"), 0o755)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"modules-dir without module", []string{"--dir", tree, "--modules-dir", mods}, exitUsage,
			"initrd build: --modules-dir " + mods + ": give the modules to add with --module"},
		{"modules-dir that is lib/modules", []string{"--modules-dir", filepath.Dir(mods), "--module", "erofs"}, exitFailure,
			"initrd build: modules directory " + filepath.Dir(mods) + `: not a lib/modules/VERSION tree (its name "modules" is not a kernel release)`},
		{"modules-dir that is the kernel directory", []string{"--modules-dir", filepath.Join(mods, "kernel"), "--module", "erofs"}, exitFailure,
			"not a lib/modules/VERSION tree"},
		{"modules-dir that is some directory", []string{"--modules-dir", tree, "--module", "erofs"}, exitFailure,
			"not a lib/modules/VERSION tree"},
		{"level with --compress none", []string{"--dir", tree, "--compress", "none", "--level", "3"}, exitUsage,
			"initrd build: --level 3: has no effect with --compress none"},
		{"level out of range", []string{"--dir", tree, "--compress", "gzip", "--level", "12"}, exitUsage,
			"initrd build: --level: gzip level 12 out of range 1..9"},
		{"duplicate module", []string{"--modules-dir", mods, "--module", "erofs,erofs"}, exitUsage,
			"initrd build: --module erofs: given twice"},
		{"duplicate module in two flags", []string{"--modules-dir", mods, "--module", "virtio_blk", "--module", "virtio_blk"}, exitUsage,
			"--module virtio_blk: given twice"},
		{"empty module", []string{"--modules-dir", mods, "--module", "erofs,"}, exitUsage, "--module: empty module name"},
		{"duplicate dir", []string{"--dir", tree, "--dir", tree}, exitUsage, "initrd build: --dir " + tree + ": given twice"},
		{"output is a directory", []string{"--dir", tree, "-o", dir}, exitUsage, "initrd build: -o " + dir + ": is a directory"},
		{"output is a FIFO", []string{"--dir", tree, "-o", fifo}, exitUsage, "initrd build: -o " + fifo + ": is a FIFO, not a regular file (-o - writes to stdout)"},
		{"json to stdout with -o -", []string{"--dir", tree, "-o", "-", "--json"}, exitUsage, "-o - and --json both write to stdout"},
		{"missing dir", []string{"--dir", filepath.Join(dir, "nosuch")}, exitFailure,
			"initrd build: dir " + filepath.Join(dir, "nosuch") + ": stat " + filepath.Join(dir, "nosuch") + ": no such file or directory"},
		{"missing file", []string{"--file", "nosuch:/x"}, exitFailure, "initrd build: file nosuch: stat nosuch: no such file or directory"},
		{"missing spec", []string{"--spec", "nosuch.spec"}, exitFailure, "initrd build: spec open nosuch.spec: no such file or directory"},
		{"missing init", []string{"--verity-init", "nosuch"}, exitFailure, "initrd build: init program: stat nosuch: no such file or directory"},
		{"missing early cpio", []string{"--dir", tree, "--early-cpio", "nosuch"}, exitFailure, "initrd build: early cpio: open nosuch: no such file or directory"},
		{"file mode not octal", []string{"--file", "x:/x:8"}, exitUsage, `initrd build: --file: file "x:/x:8": bad octal mode "8"`},
		{"source without a scheme naming a path", []string{"--source", tree}, exitUsage, "initrd build: --source: source "},
		{"bad platform", []string{"--dir", tree, "--platform", "bogus"}, exitUsage, "initrd build: --platform: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"initrd", "build", "-o", out}, c.args...)
			code, stdout, stderr := runCaptured(t, args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, c.code, c.want)
			}
			if !strings.HasPrefix(stderr, "imagebuilder: initrd build: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("not one line naming the command: %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("output %s left behind", out)
			}
		})
	}
}

// TestInitrdModulesDirFixture: the Debian kernel fixture's lib/modules
// (one level too high) used to give an archive with every requested
// module under /lib/modules/modules/VERSION/..., which the guest init
// never finds.
func TestInitrdModulesDirFixture(t *testing.T) {
	k := fixtures.DebianKernel(t)
	out := filepath.Join(t.TempDir(), "initrd.img")
	code, _, stderr := runCaptured(t, "initrd", "build", "--modules-dir", filepath.Dir(k.ModulesDir), "--module", "erofs", "-o", out)
	if code != exitFailure || !strings.Contains(stderr, "not a lib/modules/VERSION tree") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCaptured(t, "initrd", "build", "--modules-dir", k.ModulesDir, "--module", "erofs", "-o", out)
	if code != exitOK || !strings.Contains(stdout, "entries") {
		t.Errorf("the fixture's own tree: exit %d: %s", code, stderr)
	}
}

var summaryLine = regexp.MustCompile(`^(\S+): ([0-9]+) bytes, sha256 ([0-9a-f]{64}), ([0-9]+) entries, (none|gzip|zstd)\n$`)

// TestInitrdBuildOutputs: the summary line, -o - (a stream on stdout,
// the summary on stderr), --json and --json=FILE, all describing the same
// bytes, which are those initrd.Build writes for the same Config.
func TestInitrdBuildOutputs(t *testing.T) {
	dir := t.TempDir()
	tree := initrdTree(t, dir)
	img := filepath.Join(dir, "initrd.img")
	code, stdout, stderr := runCaptured(t, "initrd", "build", "--dir", tree, "--compress", "gzip", "-o", img)
	m := summaryLine.FindStringSubmatch(stdout)
	if code != exitOK || m == nil || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if m[1] != img || m[2] != strconv.Itoa(len(b)) || m[3] != hex.EncodeToString(sum[:]) || m[4] != "2" || m[5] != "gzip" {
		t.Errorf("summary %q does not describe the %d bytes written (sha256 %x)", stdout, len(b), sum)
	}

	// The library gives the same bytes for the same description.
	var lib bytes.Buffer
	res, err := initrd.Build(context.Background(), initrd.Config{Sources: []initrd.Source{initrd.Dir{Path: tree}}, Compression: initrd.Gzip}, &lib)
	if err != nil || !bytes.Equal(lib.Bytes(), b) {
		t.Fatalf("initrd.Build: %v; same bytes as the CLI: %v", err, bytes.Equal(lib.Bytes(), b))
	}

	// -o -: the initrd on stdout, the summary on stderr.
	code, stdout, stderr = runCaptured(t, "initrd", "build", "--dir", tree, "--compress", "gzip", "-o", "-")
	if code != exitOK || stdout != string(b) || !strings.HasPrefix(stderr, "(stdout): "+strconv.Itoa(len(b))+" bytes, sha256 "+m[3]) {
		t.Errorf("-o -: exit %d, %d bytes on stdout, stderr %q", code, len(stdout), stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("-o - wrote files: %v", ents)
	}

	// --json: the Result, as the library returns it.
	os.Remove(img)
	code, stdout, _ = runCaptured(t, "initrd", "build", "--dir", tree, "--compress", "gzip", "-o", img, "--json")
	want, _ := marshalJSON(res)
	if code != exitOK || stdout != string(want) {
		t.Errorf("--json: exit %d:\n%s\nwant\n%s", code, stdout, want)
	}
	var back initrd.Result
	if err := json.Unmarshal([]byte(stdout), &back); err != nil || back.SHA256 != m[3] || len(back.Entries) != 2 {
		t.Errorf("--json does not decode to the result: %v %+v", err, back)
	}
	// --json=FILE: the JSON in the file, the summary on stdout.
	os.Remove(img)
	jf := filepath.Join(dir, "initrd.json")
	code, stdout, _ = runCaptured(t, "initrd", "build", "--dir", tree, "--compress", "gzip", "-o", img, "--json="+jf)
	got, _ := os.ReadFile(jf)
	if code != exitOK || string(got) != string(want) || summaryLine.FindString(stdout) == "" {
		t.Errorf("--json=FILE: exit %d, stdout %q, file:\n%s", code, stdout, got)
	}
	// With -o -, --json=FILE is the only file.
	os.Remove(jf)
	code, stdout, _ = runCaptured(t, "initrd", "build", "--dir", tree, "--compress", "gzip", "-o", "-", "--json="+jf)
	if got, _ := os.ReadFile(jf); code != exitOK || stdout != string(b) || string(got) != string(want) {
		t.Errorf("-o - --json=FILE: exit %d, %d bytes on stdout, file %q", code, len(stdout), got)
	}
}

// TestInitrdList: text like cpio -tv, --json as a stream of entries with
// their segments, - for stdin, errors naming the file and the segment.
func TestInitrdList(t *testing.T) {
	dir := t.TempDir()
	tree := initrdTree(t, dir)
	img := filepath.Join(dir, "initrd.img")
	if code, _, stderr := runCaptured(t, "initrd", "build", "--dir", tree, "-o", img); code != exitOK {
		t.Fatal(stderr)
	}
	code, text, _ := runCaptured(t, "initrd", "list", img)
	if code != exitOK || text != "drwxr-xr-x   2 0        0               0 Jan  1  1970 etc\n-rw-r--r--   1 0        0               3 Jan  1  1970 etc/motd\n" {
		t.Errorf("list: exit %d:\n%s", code, text)
	}
	code, js, _ := runCaptured(t, "initrd", "list", "--json", img)
	var ents []map[string]any
	if err := json.Unmarshal([]byte(js), &ents); code != exitOK || err != nil || len(ents) != 2 ||
		ents[1]["name"] != "etc/motd" || ents[1]["compression"] != "zstd" || ents[1]["segment"] != 1.0 {
		t.Errorf("list --json: exit %d, %v:\n%s", code, err, js)
	}
	if !strings.HasPrefix(js, "[\n  {\n    \"name\": \"etc\",") || !strings.HasSuffix(js, "}\n]\n") {
		t.Errorf("list --json is not in the JSON form of every command:\n%s", js)
	}
	jf := filepath.Join(dir, "list.json")
	code, text2, _ := runCaptured(t, "initrd", "list", "--json="+jf, img)
	if got, _ := os.ReadFile(jf); code != exitOK || text2 != text || string(got) != js {
		t.Errorf("list --json=FILE: exit %d, stdout %q, file %q", code, text2, got)
	}
	// - reads stdin.
	f, _ := os.Open(img)
	old := os.Stdin
	os.Stdin = f
	code, text3, _ := runCaptured(t, "initrd", "list", "-")
	os.Stdin = old
	f.Close()
	if code != exitOK || text3 != text {
		t.Errorf("list -: exit %d: %q", code, text3)
	}
	// Errors.
	b, _ := os.ReadFile(img)
	bad := filepath.Join(dir, "bad.img")
	os.WriteFile(bad, append(b, "junk"...), 0o644)
	for _, c := range []struct{ file, want string }{
		{filepath.Join(dir, "nosuch"), "imagebuilder: initrd list: open " + filepath.Join(dir, "nosuch") + ": no such file or directory\n"},
		{bad, "imagebuilder: initrd list: " + bad + ": segment 2 (none, at file offset " + strconv.Itoa(len(b)) + "): unknown data (6a 75 6e 6b): not newc, gzip, zstd or xz\n"},
	} {
		code, _, stderr := runCaptured(t, "initrd", "list", c.file)
		if code != exitFailure || stderr != c.want {
			t.Errorf("exit %d, stderr %q; want %q", code, stderr, c.want)
		}
	}
}

// TestInitrdHelp: -o is marked required, --compress completes, and no
// example hard-codes a kernel version (the fixture's changes with Debian's
// updates: 6.1.0-56 in the old help no longer existed).
func TestInitrdHelp(t *testing.T) {
	code, help, _ := runCaptured(t, "initrd", "build", "--help")
	if code != exitOK || !regexp.MustCompile(`-o, --output string +output file, or - for stdout \(required\)`).MatchString(help) {
		t.Errorf("--help does not mark -o required:\n%s", help)
	}
	if v := regexp.MustCompile(`[0-9]+\.[0-9]+\.[0-9]+-[0-9]+`).FindString(help); v != "" {
		t.Errorf("--help names kernel version %s", v)
	}
	code, comp, _ := runCaptured(t, "__complete", "initrd", "build", "--compress", "")
	if code != exitOK || !strings.HasPrefix(comp, "none\ngzip\nzstd\n:4\n") {
		t.Errorf("completion of --compress: %q", comp)
	}
}

// bigTree writes files of noise that gzip -9 takes seconds to compress.
func bigTree(t *testing.T, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	buf := make([]byte, 16<<20)
	x := uint32(7)
	for i := 0; i < 3; i++ {
		for j := range buf {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			buf[j] = byte(x) & 0x3f // compressible enough to make deflate work
		}
		if err := os.WriteFile(filepath.Join(tree, "f"+strconv.Itoa(i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

// waitWriting waits until the child has its (unnamed) output in outDir
// open with data in it: the build is under way.
func waitWriting(t *testing.T, pid int, outDir string) {
	t.Helper()
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, outDir+"/") {
				continue
			}
			if st, err := os.Stat(filepath.Join(fdDir, fd.Name())); err == nil && st.Size() > 0 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the child never started writing its output")
}

// TestInitrdBuildInterrupted kills a real 'initrd build' while it writes
// its output: SIGKILL leaves no file (the output is unnamed until it is
// complete), and SIGINT stops the build through its context: the command
// returns by itself (not cut short by the one-second grace of run) with
// exit 130, and leaves no file either.
func TestInitrdBuildInterrupted(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc")
	}
	dir := t.TempDir()
	tree := bigTree(t, dir)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			outDir := filepath.Join(dir, "out-"+strconv.Itoa(int(sig)))
			os.MkdirAll(outDir, 0o755)
			cmd := cliCommand("initrd", "build", "--dir", tree, "--compress", "gzip", "--level", "9", "-o", filepath.Join(outDir, "initrd.img"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitWriting(t, cmd.Process.Pid, outDir)
			start := time.Now()
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("no exit 20 s after the signal")
			}
			t.Logf("%v: exited %v after the signal, exit %d", sig, time.Since(start).Round(time.Millisecond), cmd.ProcessState.ExitCode())
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("%v left %v", sig, ents)
			}
			if sig == syscall.SIGINT {
				if code := cmd.ProcessState.ExitCode(); code != 130 {
					t.Errorf("exit %d, want 130", code)
				}
				if got := stderr.String(); got != "imagebuilder: initrd build: interrupted by interrupt\n" {
					t.Errorf("stderr %q: the build did not stop by itself", got)
				}
			}
		})
	}
}
