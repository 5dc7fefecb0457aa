package initrd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestReproHelper is not a test: it is the child process of
// TestReproducible, building one archive as told by its environment.
func TestReproHelper(t *testing.T) {
	src, out := os.Getenv("INITRD_HELPER_SRC"), os.Getenv("INITRD_HELPER_OUT")
	if src == "" {
		t.Skip("helper process only")
	}
	var b bytes.Buffer
	if _, err := Build(context.Background(), Config{Sources: []Source{Dir{Path: src}},
		Compression: Compression(os.Getenv("INITRD_HELPER_COMP")), SourceDateEpoch: 1700000000}, &b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReproducible builds the same tree, copied to two places with
// different mtimes, from different working directories (relative source
// paths), time zones, umasks and GOMAXPROCS, in separate processes: the
// archives must be byte-identical.
func TestReproducible(t *testing.T) {
	base := t.TempDir()
	variants := []struct {
		tree, cwd, tz, umask, procs string
		mtime                       time.Time
	}{
		{"a/tree", "a", "UTC", "022", "1", time.Unix(1, 0)},
		{"b/deeper/other-tree", "b/deeper", "Asia/Kolkata", "077", "2", time.Unix(2000000000, 0)},
	}
	for _, comp := range []Compression{None, Gzip, Zstd} {
		var sums []string
		for i, v := range variants {
			tree := filepath.Join(base, string(comp), v.tree)
			if _, err := os.Stat(tree); err != nil {
				makeTree(t, tree, v.mtime)
			}
			cwd := filepath.Join(base, string(comp), v.cwd)
			rel, _ := filepath.Rel(cwd, tree)
			out := filepath.Join(base, string(comp), "out"+string(rune('0'+i)))
			cmd := exec.Command("sh", "-c", "umask "+v.umask+" && exec \"$0\" -test.run '^TestReproHelper$'", os.Args[0])
			cmd.Dir = cwd
			cmd.Env = append(os.Environ(), "TZ="+v.tz, "GOMAXPROCS="+v.procs,
				"INITRD_HELPER_SRC="+rel, "INITRD_HELPER_OUT="+out, "INITRD_HELPER_COMP="+string(comp))
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v\n%s", err, b)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			s := sha256.Sum256(b)
			sums = append(sums, hex.EncodeToString(s[:]))
		}
		if sums[0] != sums[1] {
			t.Errorf("%s: builds differ: %s vs %s", comp, sums[0], sums[1])
		} else {
			t.Logf("%s: both builds %s", comp, sums[0])
		}
	}
}
