package payload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocumentTooLarge: a manifest.json, install-plan.json or index.json
// over MaxDocumentSize is refused by name, never read whole into memory.
func TestDocumentTooLarge(t *testing.T) {
	ctx := context.Background()
	huge := func(t *testing.T, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(1 << 40); err != nil { // sparse: 1 TiB of zeros
			t.Fatal(err)
		}
	}
	for _, name := range []string{ManifestFile, InstallPlanFile} {
		t.Run("CheckOutputSet "+name, func(t *testing.T) {
			dir := t.TempDir()
			huge(t, filepath.Join(dir, name))
			err := CheckOutputSet(ctx, dir, []PulledFile{{Name: name, Size: 1 << 40}})
			var pe *PullError
			if !errors.As(err, &pe) || pe.File != name || !errors.Is(err, errTooLarge) {
				t.Errorf("err %v", err)
			}
		})
	}
	t.Run("Install", func(t *testing.T) {
		dir := t.TempDir()
		huge(t, filepath.Join(dir, InstallPlanFile))
		_, err := Install(ctx, dir, InstallOptions{Root: t.TempDir()})
		var ie *InstallError
		if !errors.As(err, &ie) || !errors.Is(err, errTooLarge) {
			t.Errorf("err %v", err)
		}
	})
	t.Run("PullLayout", func(t *testing.T) {
		lay := t.TempDir()
		huge(t, filepath.Join(lay, "index.json"))
		_, err := PullLayout(ctx, lay, "", filepath.Join(t.TempDir(), "out"), PullOptions{})
		if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "index.json: larger than") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("WriteLayout", func(t *testing.T) {
		lay := t.TempDir()
		huge(t, filepath.Join(lay, "index.json"))
		_, err := WriteLayout(ctx, testOutputDir(t), lay)
		if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "index.json: larger than") {
			t.Errorf("err %v", err)
		}
	})
}
