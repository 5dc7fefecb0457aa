package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
)

func init() { register(newInitrdCmd) }

func newInitrdCmd() *cobra.Command {
	return newGroupCmd("initrd", "Build and list reproducible initramfs archives (newc cpio)", "",
		newInitrdBuildCmd(), newInitrdListCmd())
}

type initrdBuildFlags struct {
	sources                 []initrdSource // --dir, --spec, --file, --source in command-line order
	modules                 []string
	modulesDir              string
	init, verityInit, early string
	compress, out           string
	platform, cache         string
	level                   int
	keepOwners              bool
}

// initrdSource is one --dir, --spec, --file or --source flag.
type initrdSource struct{ kind, arg string }

// orderedFlag is a repeatable string flag that appends to a list shared by
// several flags, so that the sources keep their command-line order (pflag
// calls Set in that order).
type orderedFlag struct {
	kind string
	list *[]initrdSource
}

func (o orderedFlag) Set(s string) error {
	*o.list = append(*o.list, initrdSource{o.kind, s})
	return nil
}
func (o orderedFlag) String() string { return "" }
func (o orderedFlag) Type() string   { return "stringArray" }

func newInitrdBuildCmd() *cobra.Command {
	var f initrdBuildFlags
	cmd := &cobra.Command{
		Use:   "build -o initrd.img [flags]",
		Short: "Build an initramfs from directories, spec files, single files and kernel modules",
		Long: `Build a newc cpio initramfs, byte for byte reproducible: entries sorted by
path (parents first), inode numbers in that order, every mtime from
SOURCE_DATE_EPOCH (default 0), owners 0:0 (unless --keep-owners, or a spec
line states them), compressed with none, gzip or zstd.

Sources merge in command-line order, later ones replacing earlier entries of
the same path: --dir DIR, --spec FILE (gen_init_cpio format; relative file
locations are relative to the spec file), --file SRC:DST[:MODE] and --source
IMAGE, in any mix; then the kernel modules, then --init / --verity-init.

--source takes the sources of 'rootfs build':
  ` + rootfs.SourceKinds + `
flattened by the same code with the same rules (whiteouts, hostile-layer
checks, digests); consecutive --source flags layer together as in 'rootfs
build'. Owners come from the image and are kept; extended attributes are
dropped (newc cannot store them).

--modules-dir DIR/lib/modules/VERSION with --module NAME (repeatable or
comma-separated) adds the modules with their dependencies (modules.dep or
each module's .modinfo, soft pre-dependencies included), uncompressed, under
/lib/modules/VERSION, and the load order in /etc/initrd/modules.order.

--verity-init PATH puts the guest init (bin/guest-init from 'make build';
"auto" finds guest-init next to this executable) at /init with the
skeleton it needs (/dev/console, /dev, /proc, /sys); it opens the dm-verity
root described by the ibroot.* kernel parameters.`,
		Example: `  imagebuilder initrd build --verity-init bin/guest-init \
    --modules-dir ~/.cache/imagebuilder/debian-kernel/lib/modules/6.1.0-56-amd64 \
    --module virtio_pci,virtio_blk,dm-verity,erofs --compress zstd -o initrd.img`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runInitrdBuild(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.Var(orderedFlag{"dir", &f.sources}, "dir", "add the tree under this directory (repeatable)")
	fl.Var(orderedFlag{"spec", &f.sources}, "spec", "add the entries of a gen_init_cpio spec file (repeatable)")
	fl.Var(orderedFlag{"file", &f.sources}, "file", "add host file SRC at DST, with octal MODE if given (SRC:DST[:MODE], repeatable)")
	fl.Var(orderedFlag{"source", &f.sources}, "source", "add an image or tree, as in 'rootfs build --source' (repeatable)")
	fl.StringVar(&f.platform, "platform", "linux/amd64", "platform of the image to pick from a multi-platform index")
	fl.StringVar(&f.cache, "cache", "", "registry blob cache directory (default "+rootfs.DefaultCacheDir()+")")
	fl.StringVar(&f.modulesDir, "modules-dir", "", "kernel modules directory (.../lib/modules/VERSION)")
	fl.StringSliceVar(&f.modules, "module", nil, "kernel module or alias to add with its dependencies (repeatable, comma-separated)")
	fl.StringVar(&f.init, "init", "", "host program to place at /init")
	fl.StringVar(&f.verityInit, "verity-init", "", `guest init to place at /init with /dev/console, /dev, /proc, /sys ("auto": guest-init next to this executable)`)
	fl.StringVar(&f.early, "early-cpio", "", "uncompressed newc archive to put first (CPU microcode)")
	fl.StringVar(&f.compress, "compress", "zstd", "compression: none, gzip or zstd")
	fl.IntVar(&f.level, "level", 0, "compression level (0: gzip 6, zstd 3, as the gzip and zstd tools)")
	fl.BoolVar(&f.keepOwners, "keep-owners", false, "store the owners of host files instead of 0:0")
	fl.StringVarP(&f.out, "output", "o", "", "output file (required)")
	return cmd
}

// initrdSourceDateEpoch reads SOURCE_DATE_EPOCH (default 0).
func initrdSourceDateEpoch() (int64, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > 1<<32-1 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970 (0 .. 4294967295)", s)
	}
	return v, nil
}

func runInitrdBuild(cmd *cobra.Command, f *initrdBuildFlags) error {
	if f.out == "" {
		return usagef("initrd build: -o/--output is required")
	}
	comp, err := initrd.ParseCompression(f.compress)
	if err != nil {
		return usagef("initrd build: --compress %q: want none, gzip or zstd", f.compress)
	}
	if len(f.modules) > 0 && f.modulesDir == "" {
		return usagef("initrd build: --module needs --modules-dir")
	}
	if f.init != "" && f.verityInit != "" {
		return usagef("initrd build: --init and --verity-init both place /init; give one")
	}
	mtime, err := initrdSourceDateEpoch()
	if err != nil {
		return err
	}
	a := initrd.New()
	// --file syntax errors are usage errors, found before any work.
	for _, src := range f.sources {
		if src.kind == "file" {
			if _, _, _, err := initrd.ParseFileArg(src.arg); err != nil {
				return usagef("initrd build: %v", err)
			}
		}
	}
	cache := f.cache
	if cache == "" {
		cache = rootfs.DefaultCacheDir()
	}
	for i := 0; i < len(f.sources); i++ {
		src := f.sources[i]
		var err error
		switch src.kind {
		case "dir":
			err = a.AddDir(src.arg, "")
		case "spec":
			err = initrdAddSpec(a, src.arg)
		case "file":
			s, d, mode, _ := initrd.ParseFileArg(src.arg)
			err = a.AddFile(s, d, mode)
		case "source":
			images := []string{src.arg}
			for i+1 < len(f.sources) && f.sources[i+1].kind == "source" {
				i++
				images = append(images, f.sources[i].arg)
			}
			err = a.AddImage(images, rootfs.SourceOptions{Platform: f.platform, CacheDir: cache})
		}
		if err != nil {
			return err
		}
	}
	if f.modulesDir != "" {
		ms, err := initrd.OpenModules(f.modulesDir)
		if err != nil {
			return err
		}
		var names []string
		for _, m := range f.modules {
			if m = strings.TrimSpace(m); m != "" {
				names = append(names, m)
			}
		}
		mods, err := ms.Resolve(names)
		if err != nil {
			return err
		}
		if err := a.AddModules(ms, mods); err != nil {
			return err
		}
	}
	switch {
	case f.init != "":
		if err := a.AddFile(f.init, "init", 0o755); err != nil {
			return err
		}
	case f.verityInit != "":
		p := f.verityInit
		if p == "auto" {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("initrd build: --verity-init auto: %w", err)
			}
			p = filepath.Join(filepath.Dir(exe), "guest-init")
		}
		if err := a.AddFile(p, "init", 0o755); err != nil {
			return err
		}
		if err := initrd.AddInitSkeleton(a); err != nil {
			return err
		}
	}
	opts := initrd.BuildOptions{Compression: comp, Level: f.level,
		WriteOptions: initrd.WriteOptions{MTime: mtime, KeepOwners: f.keepOwners}}
	if f.early != "" {
		b, err := os.ReadFile(f.early)
		if err != nil {
			return err
		}
		opts.Early = b
	}
	out, err := atomicfile.Create(f.out, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	if err := initrd.Build(out, a, opts); err != nil {
		return err
	}
	return out.Commit()
}

func initrdAddSpec(a *initrd.Archive, name string) error {
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	return a.AddSpec(fh, name, filepath.Dir(name))
}

func newInitrdListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list initrd.img",
		Short: "List the entries of an initramfs like cpio -tv (uncompressed, gzip, zstd or xz, concatenated)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fh, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			w := cmd.OutOrStdout()
			type jsonEntry struct {
				*initrd.Header
				Compression string `json:"compression"`
			}
			var all []jsonEntry
			err = initrd.Walk(fh, func(h *initrd.Header, comp string, _ io.Reader) error {
				if asJSON {
					all = append(all, jsonEntry{h, comp})
					return nil
				}
				_, err := fmt.Fprintln(w, initrd.FormatEntry(h))
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the entries as JSON")
	return cmd
}
