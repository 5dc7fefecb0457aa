package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/buildenv"
	"github.com/imagebuilder/imagebuilder/internal/progress"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

func init() { register(newBuildCmd) }

type buildFlags struct {
	file      string
	out       string
	noCache   bool
	cache     string
	guestInit string
	json      jsonFlag
	quiet     bool
	logFormat string
}

func newBuildCmd() *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build -f PODVM.yaml -o DIR",
		Short: "Build a whole pod-VM image from a PodVMImage file",
		Long: `Build the pod-VM image a PodVMImage file describes (docs/config.md) into the
output directory DIR: rootfs.img, initrd.img, vmlinuz, cmdline.txt,
podvm.igvm, reference-values.json, reference-values.contrast.json, an
id-block-TARGET.json per target with an ID block, with spec.runtime the
node payload of its target (runtimeclass.yaml, containerd-runtime.toml,
configuration-TARGET.toml, install-plan.json and a QEMU target's
ovmf-TARGET.fd: docs/node-payload.md), and manifest.json
(docs/manifest.md). docs/build.md describes the pipeline and the cache.

DIR appears complete or not at all; an existing DIR is replaced only when it
is empty or holds an earlier build's manifest.json. Each stage is reused
from the stage cache (under --cache) when its inputs are unchanged;
--no-cache builds every stage.

On a terminal a progress bar shows each running stage and step (registry
pull, flatten, erofs, verity, initrd compression); elsewhere one log line
per finished step and stage goes to stderr (--log-format text or json).
The command ends with a table of the artifacts, launch digests and
stages, and one summary line. --json prints the manifest instead; -q
prints nothing but errors.

The guest init (the initrd's /init when spec.initrd.init is not given) is
the guest-init program next to this executable ('make build' puts both in
bin/), or --guest-init.

Exit status: 0 built; 1 a stage failed (a missing or bad input file, an
image that does not resolve, an unwritable output); 2 a bad command line or
config file.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuild(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the PodVMImage file (required)")
	cmd.MarkFlagRequired("file")
	addOutputFlag(cmd, &f.out, "the output directory (required)", true)
	fl.BoolVar(&f.noCache, "no-cache", false, "build every stage: neither read nor write the stage cache")
	fl.StringVar(&f.cache, "cache", "", "the imagebuilder cache directory: stage cache in DIR/stages, registry blobs in DIR/blobs (default $IMAGEBUILDER_CACHE or ~/.cache/imagebuilder)")
	fl.StringVar(&f.guestInit, "guest-init", "", "the default guest init (default: guest-init next to this executable)")
	addJSONFlag(cmd, &f.json)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but errors")
	fl.StringVar(&f.logFormat, "log-format", "text", "format of the log lines when stderr is not a terminal: text or json")
	completeValues(cmd, "log-format", "text", "json")
	return cmd
}

// configError is a config file that cannot be used: exit 2, like a usage
// error, but without the pointer to --help.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// defaultCacheDir is $IMAGEBUILDER_CACHE, else ~/.cache/imagebuilder.
func defaultCacheDir() string {
	if d := os.Getenv("IMAGEBUILDER_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "imagebuilder")
	}
	return filepath.Join(os.TempDir(), "imagebuilder-cache")
}

func runBuild(cmd *cobra.Command, f *buildFlags) error {
	name := commandName(cmd)
	if f.logFormat != "text" && f.logFormat != "json" {
		return usagef("%s: --log-format %q: want text or json", name, f.logFormat)
	}
	if f.quiet && f.json.toStdout() {
		return usagef("%s: -q and --json both decide what goes to stdout; give --json=FILE", name)
	}
	if err := checkPipelineFlags(cmd, f.cache, f.out); err != nil {
		return err
	}
	if f.noCache && flagChanged(cmd, "cache") {
		return usagef("%s: --cache has no effect with --no-cache", name)
	}
	var opts podvm.LoadOptions
	opts.CacheDir = defaultCacheDir()
	if v, set, err := buildenv.SourceDateEpoch(); err != nil {
		return usageError{err}
	} else if set {
		opts.SourceDateEpoch = &v
	}
	cfg, err := podvm.Load(f.file, opts)
	if err != nil {
		return configError{fmt.Errorf("%s: %w", name, err)}
	}

	guestInit, err := guestInitPath(name, f.guestInit)
	if err != nil {
		return err
	}
	prog, logger, err := newBuildProgress(f.quiet, f.logFormat)
	if err != nil {
		return usagef("%s: %v", name, err)
	}
	bopts := podvm.BuildOptions{
		Output:   f.out,
		NoCache:  f.noCache,
		Tool:     toolInfo(),
		Progress: prog,
		Logger:   logger,
	}
	bopts.CacheDir = f.cache
	if bopts.CacheDir == "" {
		bopts.CacheDir = opts.CacheDir
	}
	bopts.GuestInit.Path = guestInit
	if exe, err := os.Executable(); err == nil {
		// A binary built from changed sources under the same revision
		// string never reuses another's cache entries.
		if sum, err := sha256OfFile(exe); err == nil {
			bopts.CacheSalt = sum
		}
	}
	start := time.Now()
	m, err := podvm.Build(cmd.Context(), cfg, bopts)
	if err != nil {
		return pipelineError(name, err)
	}
	if f.json.toStdout() {
		return printJSON(os.Stdout, m)
	}
	if err := writeResultJSON(&f.json, m); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if f.quiet {
		return nil
	}
	printBuildTable(os.Stdout, m, prog.statuses(), time.Since(start))
	mf := filepath.Join(f.out, podvm.FileManifest)
	if st, err := os.Stat(mf); err == nil {
		sum, _ := sha256OfFile(mf)
		cached := 0
		for _, s := range prog.statuses() {
			if s.Cached {
				cached++
			}
		}
		printSummary(os.Stdout, mf, st.Size(), sum, fmt.Sprintf("%d outputs", len(m.Outputs)+1),
			fmt.Sprintf("%d of %d stages cached", cached, len(prog.statuses())))
	}
	return nil
}

// checkPipelineFlags checks the flags build and reproduce share: --cache
// names a directory, -o a directory (never stdout).
func checkPipelineFlags(cmd *cobra.Command, cache, out string) error {
	name := commandName(cmd)
	if flagChanged(cmd, "cache") && cache == "" {
		return usagef("%s: --cache: empty directory name", name)
	}
	if out == "-" {
		return usagef("%s: -o -: the output is a directory; give its name", name)
	}
	return nil
}

// guestInitPath is the default guest init: --guest-init when given (it
// must exist), else the guest-init program next to this executable when
// there is one ('make build' puts both in bin/), else "".
func guestInitPath(name, flag string) (string, error) {
	if flag != "" {
		if !fileExists(flag) {
			return "", usagef("%s: --guest-init %s: no such file", name, flag)
		}
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "guest-init"); fileExists(p) {
			return p, nil
		}
	}
	return "", nil
}

// pipelineError wraps an error of podvm.Build or audit.Reproduce: a bad
// config (a *podvm.Error outside any stage) exits 2 like a usage error, a
// stage that failed exits 1.
func pipelineError(name string, err error) error {
	var se *podvm.StageError
	var ce *podvm.Error
	if !errors.As(err, &se) && errors.As(err, &ce) {
		return configError{fmt.Errorf("%s: %w", name, err)}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// newBuildProgress shows a pipeline's stages on stderr (a bar on a
// terminal, log lines in logFormat elsewhere); quiet shows and logs
// nothing.
func newBuildProgress(quiet bool, logFormat string) (*buildProgress, *slog.Logger, error) {
	mode := progress.Auto
	if quiet {
		mode = progress.Quiet
	}
	rep, err := progress.New(os.Stderr, mode, logFormat)
	if err != nil {
		return nil, nil, err
	}
	logger := rep.Logger()
	if quiet {
		logger = slog.New(slog.DiscardHandler)
	}
	return &buildProgress{r: rep}, logger, nil
}

// buildProgress shows the stages with internal/progress and keeps their
// status for the final table.
type buildProgress struct {
	r  *progress.Reporter
	mu sync.Mutex
	st []podvm.StageStatus
}

func (p *buildProgress) Start(stage string, total int64) podvm.ProgressTask {
	return &buildTask{p: p, t: p.r.Start(stage, total)}
}

func (p *buildProgress) statuses() []podvm.StageStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]podvm.StageStatus(nil), p.st...)
	sort.SliceStable(out, func(i, j int) bool { return stageIndex(out[i].Stage) < stageIndex(out[j].Stage) })
	return out
}

func stageIndex(s string) int {
	for i, n := range podvm.Stages {
		if n == s {
			return i
		}
	}
	return len(podvm.Stages)
}

type buildTask struct {
	p *buildProgress
	t *progress.Task
}

func (t *buildTask) Add(n int64) { t.t.Add(n) }

func (t *buildTask) Step(name string, total int64) podvm.ProgressTask {
	return buildStep{t.t.Step(name, total)}
}

// buildStep is a step of a stage: drawn, not in the final table.
type buildStep struct{ t *progress.Task }

func (s buildStep) Add(n int64) { s.t.Add(n) }
func (s buildStep) Step(name string, total int64) podvm.ProgressTask {
	return buildStep{s.t.Step(name, total)}
}
func (s buildStep) Done(podvm.StageStatus) { s.t.Done() }

func (t *buildTask) Done(s podvm.StageStatus) {
	t.p.mu.Lock()
	t.p.st = append(t.p.st, s)
	t.p.mu.Unlock()
	attrs := []any{"cached", s.Cached}
	if s.Rebuilt != "" {
		attrs = append(attrs, "rebuilt", s.Rebuilt)
	}
	t.t.Done(attrs...)
}

// printBuildTable prints the artifacts, the launch digests and the stages.
func printBuildTable(w io.Writer, m *podvm.Manifest, stages []podvm.StageStatus, took time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ARTIFACT\tSIZE\tSHA256")
	for _, o := range m.Outputs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Name, humanSize(o.Size), o.SHA256[:16])
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "TARGET\tPLATFORM\tCPU\tVCPUS\tLAUNCH DIGEST")
	for _, t := range m.Targets {
		for _, d := range t.Digests {
			cpu, vcpus := "-", "-"
			if d.CPU != "" {
				cpu = d.CPU
			}
			if d.VCPUs != 0 {
				vcpus = fmt.Sprint(d.VCPUs)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Platform, cpu, vcpus, d.Digest)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	if r := m.Runtime; r != nil {
		fmt.Fprintln(tw, "RUNTIME HANDLER\tTARGET\tINSTALL PREFIX")
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Handler, r.Target, r.InstallPrefix)
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(tw, "STAGE\tRESULT\tTIME")
	for _, s := range stages {
		res := "built"
		if s.Cached {
			res = "cached"
		} else if s.Rebuilt != "" {
			res = "rebuilt (cache entry corrupt)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2fs\n", s.Stage, res, s.Elapsed.Seconds())
	}
	fmt.Fprintf(tw, "total\t\t%.2fs\n", took.Seconds())
	tw.Flush()
}

// humanSize is a size in B, KiB, MiB or GiB.
func humanSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

func sha256OfFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// toolInfo names this binary for the manifest.
func toolInfo() podvm.Tool {
	v, rev := buildVersion()
	return podvm.Tool{Name: "imagebuilder", Version: v, Revision: rev}
}
