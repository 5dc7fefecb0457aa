package diff

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Two output directories: files paired by name, each compared as its
// kind, the names on one side only listed.
func TestDirectories(t *testing.T) {
	diskA := buildDisk(t, baseTree())
	diskB := buildDisk(t, changed(func(e *tent) bool {
		if e.Name == "etc/motd" {
			e.Mode = 0o600
		}
		return true
	}))
	a, b := t.TempDir(), t.TempDir()
	writeFiles(t, a, map[string][]byte{
		"rootfs.img": diskA, "cmdline.txt": []byte("console=ttyS0\n"), "manifest.json": []byte(`{"seed": "a"}`),
		"same.bin": {1, 2, 3}, "only-a": []byte("x"), "sub/x.txt": []byte("x\n"),
	})
	writeFiles(t, b, map[string][]byte{
		"rootfs.img": diskB, "cmdline.txt": []byte("console=ttyS0\n"), "manifest.json": []byte(`{"seed": "b"}`),
		"same.bin": {1, 2, 3}, "only-b": []byte("y"), "sub/x.txt": []byte("y\n"),
	})
	if err := os.Symlink("rootfs.img", filepath.Join(a, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("other.img", filepath.Join(b, "link")); err != nil {
		t.Fatal(err)
	}
	res, err := ComparePaths(context.Background(), a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindDirectory || res.Identical {
		t.Fatalf("kind %s identical %v", res.Kind, res.Identical)
	}
	got := text(t, res)
	got = strings.ReplaceAll(strings.ReplaceAll(got, a, "A"), b, "B")
	// The root hash lines vary with nothing here but are long: keep the
	// first line of the derived part only.
	want := `A and B: directories differ: 3 files differ, 3 entries on one side only or of another type, 2 identical
manifest.json: JSON documents differ: 1 difference
  .seed: "a" -> "b"
rootfs.img: root disks differ: 1 difference, `
	if !strings.HasPrefix(got, want) {
		t.Errorf("got\n%s\nwant prefix\n%s", got, want)
	}
	for _, w := range []string{
		"  /etc/motd mode: 0644 -> 0600 (-rw-r--r-- -> -rw-------)\n",
		"sub/x.txt: text files differ: 1 difference\n  lines line 1: \"x\" -> \"y\" (first difference at byte 0; 2 bytes and 2 bytes in all)\n",
		"link link: \"rootfs.img\" -> \"other.img\"\nonly-a: removed: file, 1 byte\nonly-b: added: file, 1 byte\nidentical: cmdline.txt, same.bin\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in\n%s", w, got)
		}
	}
	if len(res.Files) != 5 || res.Files[0].Name != "cmdline.txt" || !res.Files[0].Identical || res.Files[1].Kind != KindJSON {
		t.Errorf("files %+v", res.Files)
	}
	// At most one difference.
	res, err = ComparePaths(context.Background(), a, b, Options{MaxDifferences: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := res.Counts(); p != 1 || !res.Truncated {
		t.Errorf("MaxDifferences 1: %d, truncated %v\n%s", p, res.Truncated, lines(res))
	}
	// Identical directories.
	res, err = ComparePaths(context.Background(), a, a, Options{})
	if err != nil || !res.Identical {
		t.Fatalf("same directory: %v %s", err, lines(res))
	}
	// A malformed manifest is trouble, not text.
	os.WriteFile(filepath.Join(b, "manifest.json"), []byte(`{"seed": `), 0o644)
	_, err = ComparePaths(context.Background(), a, b, Options{})
	if !errors.As(err, new(*InputError)) || !strings.Contains(err.Error(), "manifest.json: not JSON") {
		t.Errorf("malformed manifest: %v", err)
	}
	// A missing side.
	_, err = ComparePaths(context.Background(), a, filepath.Join(b, "nothing"), Options{})
	var ie *InputError
	if !errors.As(err, &ie) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
