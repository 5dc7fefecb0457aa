package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/audit"
	"github.com/imagebuilder/imagebuilder/pkg/diff"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

func init() { register(newReproduceCmd) }

type reproduceFlags struct {
	file      string
	against   string
	out       string
	cache     string
	guestInit string
	json      jsonFlag
	quiet     bool
}

func newReproduceCmd() *cobra.Command {
	f := &reproduceFlags{}
	cmd := &cobra.Command{
		Use:   "reproduce -f PODVM.yaml --against DIR",
		Short: "Rebuild a published pod-VM image and compare it artifact by artifact",
		Long: `Rebuilds the PodVMImage file as the build that published DIR did, in a fresh
temporary directory and without the stage cache, and compares every artifact
with DIR's (docs/verify.md).

The rebuild is pinned to DIR/manifest.json: its SOURCE_DATE_EPOCH (the
environment's is ignored) and seed, each image source at the digest that
build resolved (an OCI manifest digest instead of a tag), and the same
kernel file (a kernel whose sha256 differs is refused before the build).

Prints 'reproduced: N artifacts identical', or the first stage whose
output differs with pkg/diff's explanation (the file in the root disk,
the page and both command lines, ...), the other artifacts that differ,
and the inputs and config fields that changed since the published build.
-o DIR keeps the rebuild. --json prints the comparison as JSON instead.
The rebuild's progress goes to stderr (a bar on a terminal, one log line
per stage elsewhere); -q leaves it out.

Exit status: 0 identical; 1 different, or the rebuild failed; 2 a bad
command line or config file.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runReproduce(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the PodVMImage file (required)")
	cmd.MarkFlagRequired("file")
	fl.StringVar(&f.against, "against", "", "the published output directory (required)")
	cmd.MarkFlagRequired("against")
	addOutputFlag(cmd, &f.out, "keep the rebuilt output directory here (default: a temporary directory, removed)", false)
	fl.StringVar(&f.cache, "cache", "", "the imagebuilder cache directory, for registry blobs only: the stage cache is not used (default $IMAGEBUILDER_CACHE or ~/.cache/imagebuilder)")
	fl.StringVar(&f.guestInit, "guest-init", "", "the default guest init (default: guest-init next to this executable)")
	addJSONFlag(cmd, &f.json)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress or log lines: only the result and errors")
	return cmd
}

func runReproduce(cmd *cobra.Command, f *reproduceFlags) error {
	name := commandName(cmd)
	if err := checkPipelineFlags(cmd, f.cache, f.out); err != nil {
		return err
	}
	if st, err := os.Stat(f.against); err != nil || !st.IsDir() {
		return usagef("%s: --against %s: not a directory", name, f.against)
	}
	if f.out != "" {
		if a, err1 := filepath.Abs(f.out); err1 == nil {
			if b, err2 := filepath.Abs(f.against); err2 == nil && a == b {
				return usagef("%s: -o %s: that is the published directory", name, f.out)
			}
		}
	}
	// As build: ${IMAGEBUILDER_CACHE} in the config is the environment's
	// cache; --cache only moves where blobs are kept.
	cacheDir := f.cache
	if cacheDir == "" {
		cacheDir = defaultCacheDir()
	}
	cfg, err := podvm.Load(f.file, podvm.LoadOptions{CacheDir: defaultCacheDir()})
	if err != nil {
		return configError{fmt.Errorf("%s: %w", name, err)}
	}
	opts := audit.ReproduceOptions{CacheDir: cacheDir, Output: f.out, Tool: toolInfo()}
	if opts.GuestInit.Path, err = guestInitPath(name, f.guestInit); err != nil {
		return err
	}
	prog, logger, err := newBuildProgress(f.quiet, "text")
	if err != nil {
		return usagef("%s: %v", name, err)
	}
	opts.Progress, opts.Logger = prog, logger
	r, err := audit.Reproduce(cmd.Context(), cfg, f.against, opts)
	if err != nil {
		return pipelineError(name, err)
	}
	if f.json.toStdout() {
		if err := printJSON(cmd.OutOrStdout(), r); err != nil {
			return err
		}
	} else if err := writeResultJSON(&f.json, r); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !f.json.toStdout() {
		if err := printReproduction(cmd.OutOrStdout(), r); err != nil {
			return err
		}
	}
	if !r.Identical {
		return fmt.Errorf("%s: %s: not reproduced: stage %s differs first (%s)", name, f.against, r.First.Stage, r.First.Artifact)
	}
	return nil
}

// printReproduction prints what was pinned, then either the count of
// identical artifacts or the first difference explained.
func printReproduction(w io.Writer, r *audit.Reproduction) error {
	var pins []string
	for _, p := range r.Pins {
		s := p.Field + " " + p.To
		if p.Note != "" {
			s = p.Field + " " + p.Note
		}
		pins = append(pins, s)
	}
	fmt.Fprintf(w, "pinned to %s: %s\n", filepath.Join(r.Against, podvm.FileManifest), strings.Join(pins, "; "))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.Identical {
		fmt.Fprintf(w, "reproduced: %d artifacts identical\n", len(r.Artifacts))
		return nil
	}
	d := r.First
	var pub, reb string
	var others []string
	for _, a := range r.Artifacts {
		if a.Name == d.Artifact {
			pub, reb = a.Published, a.Rebuilt
		} else if !a.Identical {
			others = append(others, a.Name)
		}
	}
	switch d.Missing {
	case "published":
		fmt.Fprintf(w, "stage %s: %s: the rebuild makes it, the published directory has none\n", d.Stage, d.Artifact)
	case "rebuilt":
		fmt.Fprintf(w, "stage %s: %s: in the published directory, the rebuild makes none\n", d.Stage, d.Artifact)
	default:
		fmt.Fprintf(w, "stage %s: %s differs: published sha256 %s, rebuilt %s\n", d.Stage, d.Artifact, pub, reb)
		if err := d.Explanation.WriteText(w); err != nil {
			return err
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "also differ: %s\n", strings.Join(others, ", "))
	}
	for _, x := range []struct {
		what string
		ds   []diff.Difference
	}{{"input", r.Inputs}, {"config field", r.Config}} {
		for _, dd := range x.ds {
			fmt.Fprintf(w, "changed since the published build: %s %s\n", x.what, dd.Line())
		}
	}
	return nil
}
