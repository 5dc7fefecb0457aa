package initrd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// Config describes a whole initramfs. Build assembles it in this order:
// Sources (in order, later ones replacing earlier entries of the same
// path), then the kernel Modules and their load order, then Init at /init
// (with its skeleton); the result is written after the Early archive,
// compressed as asked.
type Config struct {
	// Sources are merged in order: Dir, SpecFile, File, Image or Entry
	// values.
	Sources []Source
	// Modules adds kernel modules with their dependencies; none when Dir
	// is "".
	Modules Modules
	// Init is the program at /init; none when both Path and Data are
	// empty.
	Init Init
	// Early is an uncompressed newc archive (CPU microcode) put first;
	// none when both Path and Data are empty.
	Early Early
	// Compression is None, Gzip or Zstd; "" means Zstd.
	Compression Compression
	// Level is the compression level; 0 is DefaultLevel. It must be 0
	// with None.
	Level int
	// KeepOwners stores the owners of host files (Dir, File) instead of
	// 0:0. Spec lines and images state their owners, which are always
	// kept.
	KeepOwners bool
	// SourceDateEpoch is every entry's mtime, in seconds since 1970
	// (0 .. 4294967295): the SOURCE_DATE_EPOCH of the build.
	SourceDateEpoch int64
	// Progress, when set, is told how the archive is written: see
	// WriteOptions.Progress. (Image sources report their pulls through
	// their own source.Options.Progress.)
	Progress func(step string, done, total int64)
}

// Source is one source of entries in Config.Sources: Dir, SpecFile, File,
// Image or Entry.
type Source interface {
	// AddTo adds the source's entries to a, replacing entries of the
	// same paths. Errors name the source's files.
	AddTo(ctx context.Context, a *Archive) error
	// String names the source in messages ("dir /srv/tree").
	String() string
}

// Dir is the tree under a host directory. Symlinks are stored as symlinks,
// never followed; files with several links inside the tree become hard
// links; device nodes, fifos and sockets are kept; timestamps are not.
type Dir struct {
	// Path is the host directory.
	Path string
	// Prefix places the tree under this archive path ("" for the root).
	Prefix string
}

// SpecFile is a spec in the format of the kernel's usr/gen_init_cpio (see
// Archive.AddSpec); relative file locations in it are relative to the
// spec file's directory.
type SpecFile struct {
	Path string
}

// File is one host file (symlinks followed) at Dst; Mode, when not nil,
// replaces its permission bits (07777), else the host file's are kept. It
// is source.File, the form pkg/rootfs takes too (source.ParseFile reads
// the command line's SRC:DST[:MODE]).
type File source.File

// Modules selects kernel modules from a modules tree.
type Modules struct {
	// Dir is a lib/modules/VERSION tree (VERSION is the kernel release,
	// the name the modules are stored under).
	Dir string
	// Names are module names or aliases; each comes with its
	// dependencies (see ModuleSet.Resolve).
	Names []string
}

// Init is the program the kernel starts as /init.
type Init struct {
	// Path is a host file; Data the program's bytes. Give one.
	Path string
	Data []byte
	// Skeleton adds /dev/console (c 5 1), /dev, /proc and /sys, which
	// the guest init (cmd/guest-init) needs before it mounts devtmpfs.
	Skeleton bool
}

// Early is an uncompressed newc archive (CPU microcode, ACPI table
// overrides) put before the main archive, as the kernel's early loaders
// expect.
type Early struct {
	// Path is a host file; Data the archive's bytes. Give one.
	Path string
	Data []byte
}

func (i Init) isSet() bool  { return i.Path != "" || i.Data != nil }
func (e Early) isSet() bool { return e.Path != "" || e.Data != nil }

// Result describes a written initramfs.
type Result struct {
	// Size and SHA256 are those of the bytes written.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Compression and Level are those used (Level 0 with none).
	Compression Compression `json:"compression"`
	Level       int         `json:"level"`
	// EarlySize is the length of the early archive with its padding.
	EarlySize int64 `json:"early_size,omitempty"`
	// KernelRelease is the modules tree's VERSION, when modules were
	// added.
	KernelRelease string `json:"kernel_release,omitempty"`
	// Modules are the modules added, in load order (the order of
	// LoadOrderPath).
	Modules []Module `json:"modules,omitempty"`
	// InitSHA256 is the sha256 of the program at /init, when Config.Init
	// put one there.
	InitSHA256 string `json:"init_sha256,omitempty"`
	// Images records what the sources of Image sources resolved to
	// (manifest, config and layer digests), in order.
	Images []source.Resolved `json:"images,omitempty"`
	// Entries lists the main archive's entries in archive order, as Walk
	// reads them back.
	Entries []Header `json:"entries"`
}

// Build assembles the initramfs that cfg describes and writes it to w. It
// returns the complete Result or an error, never both; after an error w
// may hold part of an archive (write to a file published only on success,
// such as internal/atomicfile's). Cancelling ctx stops the work within a
// second: it is checked between entries and while copying file contents.
func Build(ctx context.Context, cfg Config, w io.Writer) (*Result, error) {
	opts, err := cfg.writeOptions()
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	a, mods, initSum, err := cfg.assemble(ctx)
	if a != nil {
		defer a.Close()
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "initrd: ") {
			// A Source of the caller's that used Archive.Add.
			return nil, err
		}
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if cfg.Early.isSet() {
		b := cfg.Early.Data
		if cfg.Early.Path != "" {
			if b, err = readEarly(cfg.Early.Path); err != nil {
				return nil, fmt.Errorf("initrd: early cpio: %w", err)
			}
		}
		if err := CheckEarly(b); err != nil {
			if cfg.Early.Path != "" {
				return nil, fmt.Errorf("initrd: early cpio %s: %w", cfg.Early.Path, err)
			}
			return nil, fmt.Errorf("initrd: early cpio: %w", err)
		}
		opts.Early = b
	}
	res, err := a.Write(ctx, w, opts)
	if err != nil {
		return nil, err
	}
	if mods != nil {
		res.KernelRelease = mods.version
		res.Modules = mods.list
	}
	res.InitSHA256 = initSum
	res.Images = a.images
	return res, nil
}

// Validate checks the parts of cfg that need no file: the compression and
// level, the timestamp, Init, Early and Modules given consistently. Build
// calls it first; a caller may call it before opening an output.
func (cfg *Config) Validate() error {
	_, err := cfg.writeOptions()
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}

func (cfg *Config) writeOptions() (WriteOptions, error) {
	opts := WriteOptions{Compression: cfg.Compression, Level: cfg.Level,
		KeepOwners: cfg.KeepOwners, SourceDateEpoch: cfg.SourceDateEpoch, Progress: cfg.Progress}
	if err := opts.check(); err != nil {
		return WriteOptions{}, err
	}
	if cfg.Init.Path != "" && cfg.Init.Data != nil {
		return WriteOptions{}, errors.New("Config.Init: give Path or Data, not both")
	}
	if !cfg.Init.isSet() && cfg.Init.Skeleton {
		return WriteOptions{}, errors.New("Config.Init: Skeleton without an init program")
	}
	if cfg.Early.Path != "" && cfg.Early.Data != nil {
		return WriteOptions{}, errors.New("Config.Early: give Path or Data, not both")
	}
	if cfg.Modules.Dir == "" && len(cfg.Modules.Names) > 0 {
		return WriteOptions{}, errors.New("Config.Modules: Names without Dir")
	}
	if cfg.Modules.Dir != "" && len(cfg.Modules.Names) == 0 {
		return WriteOptions{}, errors.New("Config.Modules: Dir without Names")
	}
	seen := map[string]bool{}
	for _, n := range cfg.Modules.Names {
		if n == "" {
			return WriteOptions{}, errors.New("Config.Modules: empty module name")
		}
		if seen[n] {
			return WriteOptions{}, fmt.Errorf("Config.Modules: %s named twice", n)
		}
		seen[n] = true
	}
	for i, s := range cfg.Sources {
		if s == nil {
			return WriteOptions{}, fmt.Errorf("Config.Sources[%d] is nil", i)
		}
	}
	return opts, nil
}

type resolvedModules struct {
	version string
	list    []Module
}

// assemble fills an archive in the order Config describes.
// On error it returns the archive too, for Close.
func (cfg *Config) assemble(ctx context.Context) (*Archive, *resolvedModules, string, error) {
	a := New()
	// The modules tree is checked before any source is read, so that a
	// wrong directory is reported before minutes of image pulls.
	var ms *ModuleSet
	if cfg.Modules.Dir != "" {
		var err error
		if ms, err = openModules(ctx, cfg.Modules.Dir); err != nil {
			return a, nil, "", err
		}
	}
	for _, src := range cfg.Sources {
		if err := ctx.Err(); err != nil {
			return a, nil, "", err
		}
		if err := src.AddTo(ctx, a); err != nil {
			return a, nil, "", err
		}
	}
	var mods *resolvedModules
	if ms != nil {
		list, err := ms.resolve(ctx, cfg.Modules.Names)
		if err != nil {
			return a, nil, "", err
		}
		if err := a.addModules(ctx, ms, list); err != nil {
			return a, nil, "", err
		}
		mods = &resolvedModules{version: ms.Version, list: list}
	}
	var initSum string
	if cfg.Init.isSet() {
		e := Entry{Path: "init", Mode: TypeReg | 0o755, Data: cfg.Init.Data, Source: "init program"}
		if cfg.Init.Path != "" {
			var err error
			if e, err = hostFileEntry(cfg.Init.Path, "init", source.Perm(0o755)); err != nil {
				return a, nil, "", fmt.Errorf("init program: %w", err)
			}
			e.Source = cfg.Init.Path
		}
		sum, err := entrySHA256(&e)
		if err != nil {
			return a, nil, "", fmt.Errorf("init program: %w", err)
		}
		initSum = sum
		if err := a.add(e); err != nil {
			return a, nil, "", fmt.Errorf("init program: %w", err)
		}
		if cfg.Init.Skeleton {
			if err := addInitSkeleton(a); err != nil {
				return a, nil, "", err
			}
		}
	}
	return a, mods, initSum, nil
}

// entrySHA256 hashes a regular file entry's content. The content is read
// again when the archive is written, and checked to have the same size
// then; the init program is small, so reading it twice costs little.
func entrySHA256(e *Entry) (string, error) {
	h := sha256.New()
	if e.Open == nil {
		h.Write(e.Data)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	r, err := e.Open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	n, err := io.Copy(h, io.LimitReader(r, e.Size+1))
	if err != nil {
		return "", err
	}
	if n != e.Size {
		return "", fmt.Errorf("%s changed size while building (%d, now %d)", e.Source, e.Size, n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// maxEarly bounds the early archive read into memory: microcode bundles
// are a few MiB.
const maxEarly = 64 << 20

func readEarly(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEarly+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxEarly {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxEarly>>20)
	}
	return b, nil
}
