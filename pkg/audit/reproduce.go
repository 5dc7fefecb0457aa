package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/imagebuilder/imagebuilder/pkg/diff"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// ReproduceOptions say how Reproduce rebuilds; the config says what.
type ReproduceOptions struct {
	// CacheDir is the imagebuilder cache: registry blobs are read from
	// and kept in CacheDir/blobs (they are checked against their
	// digests); the stage cache is never read or written. "" fetches
	// every blob.
	CacheDir string
	// TempDir is where the fresh temporary directory of the rebuild is
	// made ("" for os.TempDir()); it is removed at the end.
	TempDir string
	// Output, when set, is where the rebuilt output directory is
	// published and kept (as podvm.Build publishes one); otherwise the
	// rebuild is removed with its temporary directory.
	Output string
	// GuestInit, Tool, Keychain, Progress and Logger are passed to
	// podvm.Build.
	GuestInit podvm.GuestInit
	Tool      podvm.Tool
	Keychain  authn.Keychain
	Progress  podvm.Progress
	Logger    *slog.Logger
	// MaxDifferences bounds the explanation of the first differing
	// artifact (0: 50).
	MaxDifferences int
}

// Reproduction is the outcome of Reproduce.
type Reproduction struct {
	// Against is the published output directory.
	Against string `json:"against"`
	// Output is where the rebuild was kept (ReproduceOptions.Output).
	Output string `json:"output,omitempty"`
	// Pins are what the rebuild was fixed to (podvm.Config.PinTo).
	Pins []podvm.Pin `json:"pins"`
	// Identical says every artifact was rebuilt byte for byte.
	Identical bool `json:"identical"`
	// Artifacts are every file of either output directory, in pipeline
	// order.
	Artifacts []ArtifactResult `json:"artifacts"`
	// First is the first stage whose output differs, explained; nil when
	// identical.
	First *StageDifference `json:"first_difference,omitempty"`
	// Inputs are the manifest's inputs whose digests differ between the
	// published build and the rebuild (an input that changed since).
	Inputs []diff.Difference `json:"inputs,omitempty"`
	// Config are the fields of the defaulted config (the manifest's
	// config.defaulted) that differ between the published build and the
	// rebuild: the config changed since.
	Config []diff.Difference `json:"config,omitempty"`
	// Notes are differences that do not count: the manifest's record of
	// the tool that built.
	Notes []string `json:"notes,omitempty"`
}

// ArtifactResult is one artifact of the comparison.
type ArtifactResult struct {
	Name string `json:"name"`
	// Stage is the pipeline stage that makes it.
	Stage     string `json:"stage"`
	Identical bool   `json:"identical"`
	// Published and Rebuilt are the sha256 of each side ("" when the
	// side has no such file).
	Published string `json:"published_sha256"`
	Rebuilt   string `json:"rebuilt_sha256"`
}

// StageDifference is the first stage whose output differs.
type StageDifference struct {
	Stage    string `json:"stage"`
	Artifact string `json:"artifact"`
	// Explanation is pkg/diff's comparison of the published artifact
	// (A) with the rebuilt one (B); nil when one side has no such file.
	Explanation *diff.Result `json:"explanation,omitempty"`
	// Missing says which side has no such file ("published", "rebuilt").
	Missing string `json:"missing,omitempty"`
}

// Stages of the artifacts, in pipeline order (the command line is made
// with the IGVM file, and explained by it: its page names both lines).
var reproduceStages = []string{"kernel", "rootfs", "initrd", "igvm", "measure", "idblock", "payload", "manifest"}

// stageOf is the stage that makes an output, and its place in the stage.
func stageOf(name string) (stage string, order int) {
	switch {
	case name == podvm.FileKernel:
		return "kernel", 0
	case name == podvm.FileRootfs:
		return "rootfs", 0
	case name == podvm.FileInitrd:
		return "initrd", 0
	case name == podvm.FileIGVM:
		return "igvm", 0
	case name == podvm.FileCmdline:
		return "igvm", 1
	case name == podvm.FileReferenceValues:
		return "measure", 0
	case name == podvm.FileContrastReferences:
		return "measure", 1
	case strings.HasPrefix(name, "id-block-"):
		return "idblock", 0
	case name == podvm.FileManifest:
		return "manifest", 0
	}
	return "payload", 0
}

func stageIndex(s string) int {
	for i, n := range reproduceStages {
		if n == s {
			return i
		}
	}
	return len(reproduceStages)
}

// Reproduce rebuilds cfg as the build that published the output
// directory against did, and compares the two artifact by artifact.
//
// The config is pinned to against's manifest.json (podvm.Config.PinTo:
// its SOURCE_DATE_EPOCH and seed, each image source at the digest that
// build resolved, the same kernel file, or a *podvm.PinError) and built
// with podvm.Build into a fresh temporary directory, without the stage
// cache. Every file of either directory is then compared by sha256 (the
// published files are hashed, not taken from their manifest), in
// pipeline order; the first that differs is explained by pkg/diff. The
// manifests are compared last: their record of the tool that built
// (name, version, revision) may differ without counting (Notes says
// so).
//
// A rebuild that fails is the build's error (*podvm.StageError, ...).
func Reproduce(ctx context.Context, cfg *podvm.Config, against string, opts ReproduceOptions) (*Reproduction, error) {
	mb, err := readBounded(filepath.Join(against, podvm.FileManifest), MaxDocument)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(against, podvm.FileManifest), err)
	}
	published, err := parseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(against, podvm.FileManifest), err)
	}
	pinned, pins, err := cfg.PinTo(ctx, published)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "imagebuilder-reproduce-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := opts.Output
	if out == "" {
		out = filepath.Join(tmp, "out")
	}
	rebuilt, err := podvm.Build(ctx, pinned, podvm.BuildOptions{Output: out, CacheDir: opts.CacheDir, NoCache: true,
		GuestInit: opts.GuestInit, Tool: opts.Tool, Keychain: opts.Keychain, Progress: opts.Progress, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	r := &Reproduction{Against: against, Output: opts.Output, Pins: pins, Identical: true}
	if err := r.compare(ctx, against, out, published, rebuilt, opts); err != nil {
		return nil, err
	}
	return r, nil
}

// compare fills in the artifacts, the first difference and the inputs.
func (r *Reproduction) compare(ctx context.Context, against, out string, published, rebuilt *podvm.Manifest, opts ReproduceOptions) error {
	names := map[string]bool{}
	ents, err := os.ReadDir(against)
	if err != nil {
		return err
	}
	for _, e := range ents {
		names[e.Name()] = true
	}
	rebuiltSums := map[string]string{}
	for _, o := range rebuilt.Outputs {
		names[o.Name], rebuiltSums[o.Name] = true, o.SHA256
	}
	names[podvm.FileManifest] = true
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Slice(list, func(i, j int) bool {
		si, oi := stageOf(list[i])
		sj, oj := stageOf(list[j])
		if a, b := stageIndex(si), stageIndex(sj); a != b {
			return a < b
		}
		if oi != oj {
			return oi < oj
		}
		return list[i] < list[j]
	})
	for _, n := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		stage, _ := stageOf(n)
		a := ArtifactResult{Name: n, Stage: stage, Rebuilt: rebuiltSums[n]}
		if n == podvm.FileManifest {
			a.Rebuilt = ""
		}
		keep := int64(0)
		if n == podvm.FileManifest {
			keep = MaxDocument
		}
		pa := readArtifact(ctx, n, filepath.Join(against, n), keep)
		if pa.err == nil {
			a.Published = pa.sum
		} else if !errors.Is(pa.err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", filepath.Join(against, n), pa.err)
		}
		if n == podvm.FileManifest {
			ra := readArtifact(ctx, n, filepath.Join(out, n), MaxDocument)
			if ra.err != nil {
				return ra.err
			}
			a.Rebuilt = ra.sum
			a.Identical = a.Published == a.Rebuilt
			if !a.Identical && pa.data != nil && sameButTool(pa.data, ra.data) {
				a.Identical = true
				r.Notes = append(r.Notes, fmt.Sprintf("manifest.json differs only in the tool that built: %s, rebuilt by %s", toolText(published.Tool), toolText(rebuilt.Tool)))
			}
		} else {
			a.Identical = a.Published != "" && a.Published == a.Rebuilt
		}
		r.Artifacts = append(r.Artifacts, a)
		if a.Identical {
			continue
		}
		r.Identical = false
		if r.First != nil {
			continue
		}
		r.First = &StageDifference{Stage: stage, Artifact: n}
		switch {
		case a.Published == "":
			r.First.Missing = "published"
		case a.Rebuilt == "":
			r.First.Missing = "rebuilt"
		default:
			res, err := explain(ctx, filepath.Join(against, n), filepath.Join(out, n), n, opts.MaxDifferences)
			if err != nil {
				return err
			}
			r.First.Explanation = res
		}
	}
	if !r.Identical {
		ja, err1 := json.Marshal(published.Inputs)
		jb, err2 := json.Marshal(rebuilt.Inputs)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if r.Inputs, err = jsonDifferences(ctx, "inputs", ja, jb); err != nil {
			return err
		}
		// The published one was read from an indented document.
		var ca, cb bytes.Buffer
		if err := errors.Join(json.Compact(&ca, published.Config.Defaulted), json.Compact(&cb, rebuilt.Config.Defaulted)); err != nil {
			return fmt.Errorf("config.defaulted: %w", err)
		}
		if r.Config, err = jsonDifferences(ctx, "config", ca.Bytes(), cb.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// explain compares a published artifact with its rebuild.
func explain(ctx context.Context, a, b, name string, max int) (*diff.Result, error) {
	if max == 0 {
		max = 50
	}
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return nil, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return nil, err
	}
	return diff.Compare(ctx, diff.Artifact{Name: "published " + name, R: fa, Size: sa.Size()},
		diff.Artifact{Name: "rebuilt " + name, R: fb, Size: sb.Size()}, diff.Options{MaxDifferences: max})
}

// jsonDifferences are the differences of two JSON documents that do not
// follow from others.
func jsonDifferences(ctx context.Context, what string, a, b []byte) ([]diff.Difference, error) {
	if bytes.Equal(a, b) {
		return nil, nil
	}
	res, err := diff.Compare(ctx, diff.Artifact{Name: "published " + what, R: bytes.NewReader(a), Size: int64(len(a))},
		diff.Artifact{Name: "rebuilt " + what, R: bytes.NewReader(b), Size: int64(len(b))}, diff.Options{Kind: diff.KindJSON, MaxDifferences: 20})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var out []diff.Difference
	for _, d := range res.Differences {
		if !d.Derived {
			out = append(out, d)
		}
	}
	return out, nil
}

// sameButTool says two manifest.json documents are the same but for
// their "tool" member (compared as they are written, so that a member
// this version does not know counts too).
func sameButTool(a, b []byte) bool {
	var x, y map[string]json.RawMessage
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	delete(x, "tool")
	delete(y, "tool")
	ja, err1 := json.Marshal(x)
	jb, err2 := json.Marshal(y)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func toolText(t podvm.Tool) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", t.Name, t.Version, t.Revision))
}

// readBounded reads a whole file of at most max bytes.
func readBounded(p string, max int64) ([]byte, error) {
	f, size, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, fmt.Errorf("%d bytes: larger than %d", size, max)
	}
	return io.ReadAll(io.LimitReader(f, max+1))
}
