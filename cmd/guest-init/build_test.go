package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReproducibleBuild builds guest-init with the Makefile's own command
// line from two copies of its sources at different paths, with different
// time zones and umasks: the binaries must be identical, static and under
// 3 MiB.
func TestReproducibleBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guest-init twice; skipped with -short")
	}
	repo, _ := filepath.Abs("../..")
	mk, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(mk), "\n") {
		if strings.Contains(l, "./cmd/guest-init") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatal("no guest-init build line in the Makefile")
	}
	line = strings.NewReplacer("$(GO)", "go", "$(BIN)", "out").Replace(line)
	var sums []string
	for i, env := range [][2]string{{"UTC", "022"}, {"Pacific/Chatham", "077"}} {
		dir := filepath.Join(t.TempDir(), strings.Repeat("x/", i+1), "src")
		for _, f := range []string{"go.mod", "go.sum"} {
			copyFile(t, filepath.Join(repo, f), filepath.Join(dir, f))
		}
		for _, pkg := range ownPackages(t, repo) {
			srcs, _ := filepath.Glob(filepath.Join(repo, pkg, "*.go"))
			for _, s := range srcs {
				if !strings.HasSuffix(s, "_test.go") {
					copyFile(t, s, filepath.Join(dir, pkg, filepath.Base(s)))
				}
			}
		}
		cmd := exec.Command("sh", "-c", "umask "+env[1]+" && "+line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TZ="+env[0])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "out", "guest-init"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= 3<<20 {
			t.Errorf("guest-init is %d bytes, want < 3 MiB", len(b))
		}
		if out, _ := exec.Command("file", filepath.Join(dir, "out", "guest-init")).Output(); len(out) > 0 && !strings.Contains(string(out), "statically linked") {
			t.Errorf("not static: %s", out)
		}
		s := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(s[:]))
	}
	if sums[0] != sums[1] {
		t.Fatalf("guest-init builds differ: %s vs %s", sums[0], sums[1])
	}
	t.Logf("guest-init sha256 %s", sums[0])
}

// ownPackages lists the directories (relative to the repository) of
// guest-init and the packages of this module it imports.
func ownPackages(t *testing.T, repo string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/guest-init")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var dirs []string
	for _, d := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(repo, d); err == nil && !strings.HasPrefix(rel, "..") {
			dirs = append(dirs, rel)
		}
	}
	return dirs
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
