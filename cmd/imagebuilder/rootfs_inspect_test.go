package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRootfsInspectDoc runs the console example of docs/rootfs-inspect.md
// with the imagebuilder binary built from this tree, in a shell, and
// compares every output line.
func TestRootfsInspectDoc(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	for _, tool := range []string{"tar", "dd", "sh", "grep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing", tool)
		}
	}
	b, err := os.ReadFile("../../docs/rootfs-inspect.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```console\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("no console block")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "imagebuilder"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	var cmd string
	var want []string
	flush := func() {
		if cmd == "" {
			return
		}
		c := exec.Command("sh", "-c", cmd)
		c.Dir = work
		c.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "SOURCE_DATE_EPOCH=")
		out, _ := c.CombinedOutput()
		got := strings.TrimRight(string(out), "\n")
		if w := strings.Join(want, "\n"); got != w {
			t.Errorf("$ %s\ngot:\n%s\nwant:\n%s", cmd, got, w)
		}
	}
	for _, line := range strings.Split(strings.TrimRight(string(m[1]), "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, "$ "); ok {
			flush()
			cmd, want = c, nil
			continue
		}
		want = append(want, line)
	}
	flush()
}
