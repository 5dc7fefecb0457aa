package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
)

// TestRootfsDocs runs every console example of docs/rootfs.md against this
// CLI (the test binary run as imagebuilder).
func TestRootfsDocs(t *testing.T) {
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	dir := t.TempDir()
	doctest.Run(t, "../../docs/rootfs.md", doctest.Options{Dir: dir, Path: []string{bin},
		Env: []string{"IMAGEBUILDER_CACHE=" + filepath.Join(dir, ".cache")}})
}
