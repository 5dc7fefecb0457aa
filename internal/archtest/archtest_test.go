// Package archtest checks the import graph against the project's data
// flow: sources -> rootfs -> root hash -> command line; kernel + modules +
// guest init -> initrd; both -> IGVM -> measurements -> ID block ->
// artifacts. The library never imports the CLI.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/imagebuilder/imagebuilder/"

type pkg struct {
	ImportPath string
	Deps       []string
}

// listPackages runs go list over the module (build dependencies, not test
// ones).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps", "../../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func TestImportGraph(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	rules := []struct {
		pkg, why  string
		forbidden func(dep string) bool
	}{
		{"pkg/verity", "pkg/verity imports none of ours", func(d string) bool { return strings.HasPrefix(d, module) }},
		{"pkg/igvm", "the IGVM format comes before measurements", func(d string) bool { return d == module+"pkg/measure" }},
		{"pkg/initrd", "the initrd does not depend on the root file system", func(d string) bool { return d == module+"pkg/rootfs" }},
		{"pkg/source", "sources come first", func(d string) bool {
			return strings.HasPrefix(d, module+"pkg/") && d != module+"pkg/hexnum"
		}},
	}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"cmd/") {
				t.Errorf("%s imports %s: nothing imports cmd/", rel, d)
			}
			if strings.HasPrefix(rel, "pkg/") && (d == "github.com/spf13/cobra" || d == module+"internal/progress") {
				t.Errorf("%s imports %s: the library does not parse flags or draw progress", rel, d)
			}
		}
		for _, r := range rules {
			if rel != r.pkg && !strings.HasPrefix(rel, r.pkg+"/") {
				continue
			}
			for _, d := range p.Deps {
				if r.forbidden(d) {
					t.Errorf("%s imports %s: %s", rel, d, r.why)
				}
			}
		}
	}
}
