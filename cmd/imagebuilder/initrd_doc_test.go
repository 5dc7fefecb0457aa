package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// TestInitrdDocExamples runs the console examples of docs/initrd.md with
// imagebuilder being this test binary and ~/.cache/imagebuilder the
// fixture cache (the modules example reads the Debian kernel from it).
// bin/guest-init is a stand-in: no output the page shows depends on its
// bytes.
func TestInitrdDocExamples(t *testing.T) {
	for _, tool := range []string{"cpio", "zstd", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			fixtures.Missing(t, "%s not installed", tool)
		}
	}
	fixtures.DebianKernel(t)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".cache"), 0o755)
	if err := os.Symlink(fixtures.CacheDir(), filepath.Join(home, ".cache", "imagebuilder")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "bin", "guest-init"), []byte("stand-in for bin/guest-init\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/initrd.md", doctest.Options{Dir: dir, Path: []string{bin},
		Env: []string{"HOME=" + home, "IMAGEBUILDER_CACHE=", "SOURCE_DATE_EPOCH="}})
}
