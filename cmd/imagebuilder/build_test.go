package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReproducibleMakeBuild copies the source tree into two different
// directories and runs `make build` in each, with different TZ and umask;
// every binary it makes (imagebuilder, guest-init) must be identical.
func TestReproducibleMakeBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped with -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	binaries := []string{"imagebuilder", "guest-init"}
	var sums [2][]string
	for i, env := range [][]string{{"TZ=UTC", "UMASK=022"}, {"TZ=Asia/Kolkata", "UMASK=077"}} {
		dir := filepath.Join(t.TempDir(), strings.Repeat("deeper/", i+1), "src")
		copyTree(t, root, dir)
		umask := strings.TrimPrefix(env[1], "UMASK=")
		cmd := exec.Command("sh", "-c", "umask "+umask+" && make build REVISION=test BIN=out")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env[0])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make build in %s: %v\n%s", dir, err, out)
		}
		for _, bin := range binaries {
			sums[i] = append(sums[i], fileSHA256(t, filepath.Join(dir, "out", bin)))
		}
	}
	for j, bin := range binaries {
		if sums[0][j] != sums[1][j] {
			t.Errorf("make build is not reproducible: %s %s != %s", bin, sums[0][j], sums[1][j])
		} else {
			t.Logf("%s sha256 %s in both builds", bin, sums[0][j])
		}
	}
}

// copyTree copies the Go sources and build files of the module (not bin/,
// not .git) from src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "testdata") && rel != "." {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		info, _ := d.Info()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
