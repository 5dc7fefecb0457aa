package atomicfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestNoNameWhileWriting: on Linux an output has no name at all until
// Commit (O_TMPFILE), not even a temporary one.
func TestNoNameWhileWriting(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("O_TMPFILE is Linux only")
	}
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "out.img"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	f.WriteString("partial")
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("names in the directory while writing: %v", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"out.img"}) {
		t.Fatalf("after Commit: %v", got)
	}
}

func TestCreateRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{dir, dir + "/", filepath.Join(dir, "missing", "x")} {
		if _, err := Create(p, 0o644); err == nil {
			t.Errorf("Create(%q) succeeded", p)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("Create(%q): error %q does not name the path", p, err)
		}
	}
	if _, err := Create(dir, 0o644); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Create(dir): %v, want 'is a directory'", err)
	}
}

func TestReplaceExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	os.WriteFile(path, []byte("old"), 0o644)
	if err := WriteFile(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"out"}) {
		t.Fatalf("leftovers: %v", got)
	}
}

// TestSetAllOrNothing: when naming one output of a set fails, none of the
// set's outputs is left under its name and older files stay as they were.
func TestSetAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("old a"), 0o644)
	var s Set
	fa, err := s.Create(a, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := s.Create(b, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fa.WriteString("new a")
	fb.WriteString("new b")
	// b becomes a non-empty directory after Create: naming b must fail.
	os.MkdirAll(filepath.Join(b, "x"), 0o755)
	if err := s.Commit(); err == nil {
		t.Fatal("Commit succeeded over a directory")
	}
	if got, _ := os.ReadFile(a); string(got) != "old a" {
		t.Errorf("a = %q after a failed commit, want the old content", got)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("leftovers: %v", got)
	}
	if _, err := s.Create(filepath.Join(dir, "c"), 0o644); err == nil {
		t.Error("Create after a failed Commit succeeded")
	}
}

func TestSetCommit(t *testing.T) {
	dir := t.TempDir()
	var s Set
	for _, n := range []string{"x", "y"} {
		f, err := s.Create(filepath.Join(dir, n), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(n)
		if err := f.Commit(); err == nil {
			t.Error("a file of a set committed on its own")
		}
	}
	if _, err := s.Create(filepath.Join(dir, "x"), 0o644); err == nil {
		t.Error("the same output twice in a set")
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"x", "y"} {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); string(b) != n {
			t.Errorf("%s = %q", n, b)
		}
	}
}

func TestDirReplace(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	write := func(content string, canReplace func(string) error) error {
		d, err := NewDir(out)
		if err != nil {
			return err
		}
		d.CanReplace = canReplace
		defer d.Abort()
		for _, n := range []string{"one", "two"} {
			f, err := d.Create(n, 0o644)
			if err != nil {
				return err
			}
			f.WriteString(content + n)
		}
		return d.Commit()
	}
	if err := write("v1", nil); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory is replaced only when CanReplace allows it.
	if err := write("v2", nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("replaced a non-empty directory without CanReplace: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "one")); string(b) != "v1one" {
		t.Fatalf("old output changed: %q", b)
	}
	if err := write("v2", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "two")); string(b) != "v2two" {
		t.Fatalf("new output: %q", b)
	}
	if got := names(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Fatalf("leftovers beside the output: %v", got)
	}
	if _, err := NewDir(filepath.Join(out, "one")); err == nil {
		t.Error("NewDir over a file succeeded")
	}
}

// TestKilledLeavesNothing runs a child that starts outputs (a file, a
// set, a directory), writes to them and is killed with SIGKILL before it
// commits: no name of any kind is left.
func TestKilledLeavesNothing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("O_TMPFILE is Linux only")
	}
	if os.Getenv("ATOMICFILE_CHILD") != "" {
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledChild$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_CHILD="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready" {
		t.Fatalf("child said %q, %v", buf, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("SIGKILL left %v", got)
	}
}

func TestKilledChild(t *testing.T) {
	dir := os.Getenv("ATOMICFILE_CHILD")
	if dir == "" {
		t.Skip("run by TestKilledLeavesNothing")
	}
	f, err := Create(filepath.Join(dir, "single"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var s Set
	g, err := s.Create(filepath.Join(dir, "member"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDir(filepath.Join(dir, "outdir"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.Create("file", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 4; i++ {
		f.Write(chunk)
		g.Write(chunk)
		h.Write(chunk)
	}
	fmt.Print("ready")
	time.Sleep(time.Minute)
}

func TestDirAddLink(t *testing.T) {
	parent := t.TempDir()
	src := filepath.Join(t.TempDir(), "cached.img")
	os.WriteFile(src, []byte("cached"), 0o644)
	d, err := NewDir(filepath.Join(parent, "out"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := d.Create("new.txt", 0o644)
	f.WriteString("new")
	if err := d.AddLink("cached.img", src); err != nil {
		t.Fatal(err)
	}
	if err := d.AddLink("new.txt", src); err == nil {
		t.Error("a name given twice was accepted")
	}
	if err := d.AddLink("x", filepath.Join(parent, "missing")); err == nil {
		t.Error("a missing source was accepted")
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"new.txt": "new", "cached.img": "cached"} {
		if b, _ := os.ReadFile(filepath.Join(parent, "out", name)); string(b) != want {
			t.Errorf("%s = %q", name, b)
		}
	}
}
