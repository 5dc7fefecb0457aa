package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
)

// TestDiffDocs runs every console example of docs/diff.md against this CLI
// (the test binary run as imagebuilder), in a directory where testdata is
// the repository's.
func TestDiffDocs(t *testing.T) {
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Abs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(testdata, filepath.Join(dir, "testdata")); err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/diff.md", doctest.Options{Dir: dir, Path: []string{bin},
		Env: []string{"IMAGEBUILDER_CACHE=" + filepath.Join(dir, ".cache")}})
}
