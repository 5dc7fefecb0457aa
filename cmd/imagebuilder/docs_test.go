package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// igvmDocsChildEnv marks the test binary, re-executed by the docs tests,
// as the imagebuilder CLI.
const igvmDocsChildEnv = "IMAGEBUILDER_TEST_IGVM_DOCS_CHILD"

// TestIgvmDocsChild is the imagebuilder CLI when the docs tests run the
// test binary as imagebuilder; in a normal test run it returns at once.
func TestIgvmDocsChild(t *testing.T) {
	if os.Getenv(igvmDocsChildEnv) != "1" {
		return
	}
	os.Exit(run(flag.Args()))
}

// runDocs runs the console examples of a document in a directory where
// testdata is the repository's testdata, with this CLI as imagebuilder.
func runDocs(t *testing.T, doc string) {
	if _, err := exec.LookPath("openssl"); err != nil {
		fixtures.Missing(t, "openssl is not installed (an example makes a key with it)")
	}
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
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestIgvmDocsChild$", "--"}, []string{igvmDocsChildEnv + "=1"})
	doctest.Run(t, doc, doctest.Options{Dir: dir, Path: []string{bin}})
}

// TestIgvmDocs runs every console example of docs/igvm.md.
func TestIgvmDocs(t *testing.T) { runDocs(t, "../../docs/igvm.md") }

// TestMeasureDocs runs every console example of docs/measure.md.
func TestMeasureDocs(t *testing.T) { runDocs(t, "../../docs/measure.md") }

// Every flag of the igvm and measure commands is in their document.
func TestIgvmMeasureDocsFlags(t *testing.T) {
	for doc, cmds := range map[string][]*cobra.Command{
		"igvm.md":    newIgvmCmd().Commands(),
		"measure.md": newMeasureCmd().Commands(),
	} {
		b, err := os.ReadFile("../../docs/" + doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, newSub := range subcommands[strings.TrimSuffix(doc, ".md")] {
			cmds = append(cmds, newSub())
		}
		for _, sub := range cmds {
			sub.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Hidden {
					return
				}
				if !strings.Contains(string(b), "`--"+f.Name) && !strings.Contains(string(b), "--"+f.Name+" ") && !strings.Contains(string(b), "--"+f.Name+"[") && !strings.Contains(string(b), "--"+f.Name+"`") {
					t.Errorf("%s --%s is not in docs/%s", sub.Name(), f.Name, doc)
				}
			})
		}
	}
}
