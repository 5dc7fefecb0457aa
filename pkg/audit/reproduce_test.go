package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/diff"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// published builds a private copy of the repro tree once and returns the
// tree's config path and its output directory.
func published(t *testing.T) (cfg, out string) {
	t.Helper()
	root := t.TempDir()
	cfg = reproTree(t, root)
	out = filepath.Join(root, "published")
	buildRepro(t, cfg, out)
	return cfg, out
}

func reproduce(t *testing.T, cfgPath, against string) *Reproduction {
	t.Helper()
	cfg, err := podvm.Load(cfgPath, podvm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Reproduce(context.Background(), cfg, against, ReproduceOptions{TempDir: t.TempDir(), Tool: testTool})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReproduceIdentical(t *testing.T) {
	cfg, out := published(t)
	r := reproduce(t, cfg, out)
	if !r.Identical || r.First != nil || len(r.Inputs) != 0 {
		t.Fatalf("not identical: %+v", r.First)
	}
	if len(r.Artifacts) != 15 {
		t.Errorf("%d artifacts: %+v", len(r.Artifacts), r.Artifacts)
	}
	var stages []string
	for _, a := range r.Artifacts {
		if !a.Identical || a.Published != a.Rebuilt || len(a.Published) != 64 {
			t.Errorf("%+v", a)
		}
		if len(stages) == 0 || stages[len(stages)-1] != a.Stage {
			stages = append(stages, a.Stage)
		}
	}
	if got := strings.Join(stages, " "); got != "kernel rootfs initrd igvm measure idblock payload manifest" {
		t.Errorf("stage order %s", got)
	}
	pinned := map[string]podvm.Pin{}
	for _, p := range r.Pins {
		pinned[p.Field] = p
	}
	if p := pinned["spec.rootfs.sources[0]"]; p.Note != "" || !strings.HasPrefix(p.To, "oci-layout:oci@sha256:") {
		t.Errorf("source pin %+v", p)
	}
	if p := pinned["spec.sourceDateEpoch"]; p.To != "1700000000" {
		t.Errorf("SOURCE_DATE_EPOCH pin %+v", p)
	}
	if p := pinned["spec.rootfs.seed"]; p.To != "repro" {
		t.Errorf("seed pin %+v", p)
	}
}

// explanation returns the primary differences of the first difference,
// or all of them.
func explanation(t *testing.T, r *Reproduction, all bool) []diff.Difference {
	t.Helper()
	if r.Identical || r.First == nil || r.First.Explanation == nil {
		t.Fatalf("no explanation: %+v", r.First)
	}
	var out []diff.Difference
	for _, d := range r.First.Explanation.Differences {
		if all || !d.Derived {
			out = append(out, d)
		}
	}
	return out
}

func TestReproduceChangedInputs(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(t *testing.T, dir string)
		stage string
		check func(t *testing.T, ds []diff.Difference)
	}{
		{"file in an added directory", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "overlay", "etc", "motd"), []byte("another day\n"), 0o644)
		}, "rootfs", func(t *testing.T, ds []diff.Difference) {
			if len(ds) != 1 || ds[0].Section != diff.SectionFiles || ds[0].Path != "/etc/motd" || ds[0].Field != "content" {
				t.Errorf("%+v", ds)
			}
		}},
		{"file added to an added directory", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "overlay", "etc", "added.conf"), []byte("x=1\n"), 0o644)
		}, "rootfs", func(t *testing.T, ds []diff.Difference) {
			if len(ds) != 1 || ds[0].Path != "/etc/added.conf" || ds[0].Kind != diff.Added {
				t.Errorf("%+v", ds)
			}
		}},
		{"another agent", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "agent"), []byte("#!/bin/sh\necho another agent\n"), 0o755)
		}, "rootfs", func(t *testing.T, ds []diff.Difference) {
			if len(ds) != 1 || ds[0].Path != "/usr/bin/kata-agent" || ds[0].Field != "content" {
				t.Errorf("%+v", ds)
			}
		}},
		{"another command-line parameter", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "podvm.yaml")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), "panic=-1, quiet]", "panic=-1, loglevel=3]", 1)), 0o644)
		}, "igvm", func(t *testing.T, ds []diff.Difference) {
			// Both lines, and the page they are on.
			var line, page bool
			for _, d := range ds {
				line = line || d.Section == diff.SectionCmdline && strings.Contains(d.A, "panic=-1 quiet ibroot.hash=") &&
					strings.Contains(d.B, "panic=-1 loglevel=3 ibroot.hash=")
				page = page || d.Section == diff.SectionPages && strings.HasPrefix(d.Path, "0x") && strings.Contains(d.Detail, "1 page, kernel command line")
			}
			if !line || !page {
				t.Errorf("%+v", ds)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, out := published(t)
			c.edit(t, filepath.Dir(cfg))
			r := reproduce(t, cfg, out)
			if r.Identical || r.First.Stage != c.stage {
				t.Fatalf("first difference %+v, want stage %s", r.First, c.stage)
			}
			c.check(t, explanation(t, r, c.stage == "igvm"))
			// What changed since the published build: an input's digest,
			// or a config field.
			if c.stage == "igvm" {
				if len(r.Config) != 1 || r.Config[0].Path != ".spec.cmdline.parameters[2]" || len(r.Inputs) != 0 {
					t.Errorf("config %+v, inputs %+v", r.Config, r.Inputs)
				}
			} else if len(r.Inputs) == 0 || len(r.Config) != 0 {
				t.Errorf("config %+v, inputs %+v", r.Config, r.Inputs)
			}
		})
	}
}

// TestReproducePinned: the tag the config names moved to another image;
// the rebuild reads the image the published build resolved.
func TestReproducePinned(t *testing.T) {
	cfg, out := published(t)
	layout := filepath.Join(filepath.Dir(cfg), "oci")
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	old := strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")
	mb, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", old))
	if err != nil {
		t.Fatal(err)
	}
	// Another image under the same tag: the manifest with one layer less
	// (and the config's diff_ids cut to match).
	var m map[string]any
	json.Unmarshal(mb, &m)
	layers := m["layers"].([]any)
	m["layers"] = layers[:1]
	cfgDesc := m["config"].(map[string]any)
	cb, _ := os.ReadFile(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(cfgDesc["digest"].(string), "sha256:")))
	var c map[string]any
	json.Unmarshal(cb, &c)
	rfs := c["rootfs"].(map[string]any)
	rfs["diff_ids"] = rfs["diff_ids"].([]any)[:1]
	put := func(v any) (string, int) {
		b, _ := json.Marshal(v)
		d := fmt.Sprintf("%x", sha256.Sum256(b))
		os.WriteFile(filepath.Join(layout, "blobs", "sha256", d), b, 0o644)
		return "sha256:" + d, len(b)
	}
	cfgDesc["digest"], cfgDesc["size"] = put(c)
	nd, ns := put(m)
	nb := strings.Replace(string(b), idx.Manifests[0].Digest, nd, 1)
	nb = strings.Replace(nb, fmt.Sprintf(`"size":%d`, len(mb)), fmt.Sprintf(`"size":%d`, ns), 1)
	os.WriteFile(filepath.Join(layout, "index.json"), []byte(nb), 0o644)

	r := reproduce(t, cfg, out)
	if !r.Identical {
		t.Errorf("pinned rebuild differs: %+v", r.First)
	}
	// Unpinned, the tag gives another root file system.
	other := filepath.Join(t.TempDir(), "other")
	buildRepro(t, cfg, other)
	if a, b := readSum(t, filepath.Join(out, podvm.FileRootfs)), readSum(t, filepath.Join(other, podvm.FileRootfs)); a == b {
		t.Error("the moved tag builds the same root disk: the test shows nothing")
	}
}

func readSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestReproduceErrors: another kernel file is refused before the build;
// the published directory must hold a manifest.
func TestReproduceErrors(t *testing.T) {
	cfgPath, out := published(t)
	cfg, err := podvm.Load(cfgPath, podvm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reproduce(context.Background(), cfg, t.TempDir(), ReproduceOptions{TempDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("no manifest: %v", err)
	}
	k := filepath.Join(filepath.Dir(cfgPath), "..", "..", "..", "..", "testdata", "igvm", "inputs", "synthetic-bzImage")
	b, _ := os.ReadFile(k)
	b[len(b)-1] ^= 1
	os.WriteFile(k, b, 0o644)
	_, err = Reproduce(context.Background(), cfg, out, ReproduceOptions{TempDir: t.TempDir()})
	var pe *podvm.PinError
	if !errors.As(err, &pe) || pe.Field != "spec.kernel.bzImage" || pe.Want == pe.Got {
		t.Errorf("another kernel: %v", err)
	}
	// A published file that is not the rebuilt one, the tool aside.
	os.WriteFile(filepath.Join(out, podvm.FileCmdline), []byte("console=ttyS0\n"), 0o644)
	b[len(b)-1] ^= 1
	os.WriteFile(k, b, 0o644)
	tmp := t.TempDir()
	r, err := Reproduce(context.Background(), cfg, out, ReproduceOptions{TempDir: tmp, Tool: podvm.Tool{Name: "imagebuilder", Version: "v9", Revision: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Identical || r.First.Artifact != podvm.FileCmdline || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "rebuilt by imagebuilder v9 other") {
		t.Errorf("%+v %v", r.First, r.Notes)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in the temporary directory: %v", ents)
	}
}
