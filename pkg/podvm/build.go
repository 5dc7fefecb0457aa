package podvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/errgroup"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/stagecache"
)

// BuildOptions say where and how Build works; the config says what.
type BuildOptions struct {
	// Output is the output directory, published whole when the build is
	// complete (see Build). Required.
	Output string
	// CacheDir is the imagebuilder cache directory: the stage cache is in
	// CacheDir/stages, registry blobs in CacheDir/blobs and a build's
	// temporary trees in CacheDir/tmp. "" builds without a stage cache,
	// registry blobs uncached, temporaries in os.TempDir().
	CacheDir string
	// NoCache builds every stage, neither reading nor writing the stage
	// cache (registry blobs are still cached).
	NoCache bool
	// GuestInit is the /init of the initrd when spec.initrd.init is not
	// given: the guest init this project builds (cmd/guest-init; the CLI
	// passes the guest-init next to its executable). Its sha256 is
	// recorded in the manifest.
	GuestInit GuestInit
	// Tool names the program, recorded in the manifest; its Revision is
	// part of every stage cache key.
	Tool Tool
	// CacheSalt is more stage cache key material: the CLI passes the
	// sha256 of its own executable, so that a binary built from changed
	// sources never reuses what another one cached under the same
	// revision string.
	CacheSalt string
	// Keychain resolves registry credentials; nil means
	// authn.DefaultKeychain.
	Keychain authn.Keychain
	// Progress receives the stages as they run; nil for none.
	Progress Progress
	// Logger receives warnings (a corrupt cache entry being rebuilt);
	// nil discards them.
	Logger *slog.Logger
}

// GuestInit is a static program to run as /init: a host file, or bytes.
type GuestInit struct {
	Path string
	Data []byte
}

// builder is one build.
type builder struct {
	cfg      *Config // defaulted
	loaded   *Config // as loaded
	opts     BuildOptions
	revision string
	cache    *stagecache.Cache
	out      *atomicfile.Dir
	outMu    sync.Mutex
	progress Progress
	log      *slog.Logger
	blobs    string
	tmpRoot  string

	tmpMu   sync.Mutex
	tmpDirs []string

	statusMu sync.Mutex
	status   []StageStatus

	scratchMu sync.Mutex
	scratch   []*atomicfile.File
	open      []*os.File

	pre          *preflight
	manifestFile *atomicfile.File
}

// Build builds the pod-VM image cfg describes (a Config from Load or
// Parse) and publishes it in opts.Output: rootfs.img, initrd.img,
// vmlinuz, cmdline.txt, podvm.igvm, reference-values.json,
// reference-values.contrast.json, an id-block-TARGET.json per target with
// an ID block, and manifest.json, which it also returns.
//
// The stages run as typed calls, the kernel and the initrd beside the
// root file system: kernel (a bzImage, or vmlinuz and the modules of a
// Debian package); sources → rootfs → root fragment → command line;
// kernel, modules and guest init → initrd; command line, initrd and
// kernel → IGVM → launch digests per target → ID blocks → manifest. Each
// stage is looked up in the stage cache first (see BuildOptions.CacheDir)
// and reused when its key (stage, schema, tool revision, its part of the
// config, the digests of its inputs) is unchanged.
//
// The output directory appears complete or not at all: files are written
// unnamed beside it and named together at the end; an existing directory
// is replaced only when it is empty or holds a manifest.json of this tool.
// On error, or when ctx is cancelled, nothing is published and the
// previous output stays as it was.
//
// A config problem found before anything is built (a target the IGVM
// layout cannot satisfy) is an *Error; a stage that fails is a
// *StageError naming the stage and the field or input.
func Build(ctx context.Context, cfg *Config, opts BuildOptions) (*Manifest, error) {
	if cfg == nil {
		return nil, errors.New("podvm: no config")
	}
	if opts.Output == "" {
		return nil, &StageError{Stage: "output", Err: errors.New("no output directory (BuildOptions.Output)")}
	}
	b := &builder{cfg: cfg.Defaulted(), loaded: cfg, opts: opts, progress: opts.Progress, log: opts.Logger}
	if b.progress == nil {
		b.progress = noProgress{}
	}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if b.opts.Tool.Name == "" {
		b.opts.Tool.Name = "imagebuilder"
	}
	b.revision = b.opts.Tool.Revision + "/" + b.opts.CacheSalt
	b.tmpRoot = os.TempDir()
	if opts.CacheDir != "" {
		b.blobs = filepath.Join(opts.CacheDir, "blobs")
		b.tmpRoot = filepath.Join(opts.CacheDir, "tmp")
		if !opts.NoCache {
			b.cache = stagecache.Open(opts.CacheDir)
		}
	}
	defer b.close()
	unreg := atomicfile.RegisterCleanup(b.removeTempDirs)
	defer unreg()
	return b.build(ctx)
}

func (b *builder) build(ctx context.Context) (*Manifest, error) {
	if err := checkTargets(b.loaded); err != nil {
		return nil, err
	}
	if err := b.openOutput(); err != nil {
		return nil, err
	}
	sweepTemp(b.tmpRoot)
	pre, err := b.preflight(ctx)
	if err != nil {
		return nil, err
	}
	b.pre = pre

	var (
		kern  *kernelStage
		root  *rootfsStage
		rd    *initrdStage
		srcs  []resolvedSource
		isrcs []resolvedSource
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		if kern, err = b.kernel(gctx); err != nil {
			return err
		}
		if isrcs, err = b.resolveSources(gctx, "spec.initrd.sources", b.cfg.Spec.Initrd.Sources); err != nil {
			return err
		}
		rd, err = b.initrd(gctx, kern, isrcs)
		return err
	})
	g.Go(func() error {
		var err error
		if srcs, err = b.resolveSources(gctx, "spec.rootfs.sources", b.cfg.Spec.Rootfs.Sources); err != nil {
			return err
		}
		root, err = b.rootfs(gctx, srcs)
		return err
	})
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	line, err := b.cmdline(root, kern)
	if err != nil {
		return nil, err
	}
	ig, err := b.igvm(ctx, kern, rd, line)
	if err != nil {
		return nil, err
	}
	ms, err := b.measure(ctx, kern, rd, ig, line)
	if err != nil {
		return nil, err
	}
	ids, err := b.idBlocks(ctx, ig, ms)
	if err != nil {
		return nil, err
	}
	return b.publish(ctx, &buildState{kern: kern, root: root, rd: rd, srcs: srcs, isrcs: isrcs, line: line, ig: ig, ms: ms, ids: ids})
}

// buildState is what the stages made, for the manifest and the outputs.
type buildState struct {
	kern  *kernelStage
	root  *rootfsStage
	rd    *initrdStage
	srcs  []resolvedSource
	isrcs []resolvedSource
	line  *CmdlineInfo
	ig    *igvmStage
	ms    *measureStage
	ids   *idBlockStage
	// payload is the node payload's manifest section, nil without
	// spec.runtime.
	payload *RuntimeInfo
}

// openOutput starts the output directory and checks, before any work,
// that it can be written and replaced.
func (b *builder) openOutput() error {
	fail := func(err error) error {
		return &StageError{Stage: "output", Input: b.opts.Output, Err: err}
	}
	d, err := atomicfile.NewDir(b.opts.Output)
	if err != nil {
		return fail(trimOutputPrefix(err))
	}
	d.CanReplace = replaceableOutput
	if st, err := os.Lstat(d.Path()); err == nil {
		if !st.IsDir() {
			return fail(errors.New("exists and is not a directory"))
		}
		if err := replaceableOutput(d.Path()); err != nil {
			return fail(err)
		}
	}
	// The manifest is created now: a directory that cannot take a new
	// file fails here, before the build.
	probe, err := d.Create(FileManifest, 0o644)
	if err != nil {
		return fail(fmt.Errorf("cannot create files in %s: %w", filepath.Dir(d.Path()), trimOutputPrefix(err)))
	}
	b.out = d
	b.manifestFile = probe
	return nil
}

// trimOutputPrefix drops atomicfile's "output PATH: " before an error the
// StageError already names the output of.
func trimOutputPrefix(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// replaceableOutput allows replacing an empty directory, or one that
// holds a manifest.json of this tool (a previous output).
func replaceableOutput(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	b, err := readSmallFile(filepath.Join(dir, FileManifest), 64<<20) // audit.MaxDocument
	if err != nil {
		return fmt.Errorf("exists, is not empty and holds no %s of a previous build (refusing to replace it)", FileManifest)
	}
	var m struct {
		Schema string `json:"schema"`
	}
	if json.Unmarshal(b, &m) != nil || !strings.HasPrefix(m.Schema, strings.TrimSuffix(ManifestSchema, "v1")) {
		return fmt.Errorf("exists and its %s is not one of imagebuilder's (refusing to replace it)", FileManifest)
	}
	return nil
}

// tempDir makes a temporary directory for a stage (the kernel package's
// tree, the modules of an initrd), removed at the end of the build, on an
// interrupt (atomicfile.Cleanup), or, after a kill, by the next build
// (sweepTemp).
func (b *builder) tempDir(stage string) (string, error) {
	if err := os.MkdirAll(b.tmpRoot, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(b.tmpRoot, fmt.Sprintf("imagebuilder-%d-%s-", os.Getpid(), stage))
	if err != nil {
		return "", err
	}
	b.tmpMu.Lock()
	b.tmpDirs = append(b.tmpDirs, dir)
	b.tmpMu.Unlock()
	return dir, nil
}

// removeTemp removes a directory of tempDir early.
func (b *builder) removeTemp(dir string) {
	os.RemoveAll(dir)
	b.tmpMu.Lock()
	defer b.tmpMu.Unlock()
	for i, d := range b.tmpDirs {
		if d == dir {
			b.tmpDirs = append(b.tmpDirs[:i], b.tmpDirs[i+1:]...)
			break
		}
	}
}

// sweepTemp removes the temporary directories of builds that were killed:
// "imagebuilder-PID-..." whose process no longer exists.
func sweepTemp(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "imagebuilder-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// close releases what the build holds: open files, unpublished outputs,
// temporary directories.
func (b *builder) close() {
	if b.out != nil {
		b.out.Abort()
	}
	b.scratchMu.Lock()
	for _, f := range b.scratch {
		f.Abort()
	}
	for _, f := range b.open {
		f.Close()
	}
	b.scratchMu.Unlock()
	b.removeTempDirs()
}

func (b *builder) removeTempDirs() {
	b.tmpMu.Lock()
	defer b.tmpMu.Unlock()
	for _, d := range b.tmpDirs {
		os.RemoveAll(d)
	}
	b.tmpDirs = nil
}

// Stages lists the stages that report a StageStatus, in pipeline order
// (the kernel and initrd run beside the rootfs, so they end in any
// order).
var Stages = []string{"kernel", "rootfs", "initrd", "igvm", "measure", "idblock"}
