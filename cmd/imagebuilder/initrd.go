package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/source"
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
	json                    jsonFlag
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
		Use:   "build -o FILE [flags]",
		Short: "Build an initramfs from directories, spec files, single files, images and kernel modules",
		Long: `Build a newc cpio initramfs, byte for byte reproducible: entries sorted by
path (parents first), inode numbers in that order, every mtime from
SOURCE_DATE_EPOCH (default 0), owners 0:0 (unless --keep-owners, or a spec
line or an image states them), compressed with none, gzip or zstd.

Sources merge in command-line order, later ones replacing earlier entries of
the same path: --dir DIR, --spec FILE (gen_init_cpio format; relative file
locations are relative to the spec file), --file SRC:DST[:MODE] and --source
IMAGE, in any mix; then the kernel modules, then --init / --verity-init.

--source takes the sources of 'rootfs build':
  ` + source.Kinds + `
flattened by the same code with the same rules (whiteouts, hostile-layer
checks, digests); consecutive --source flags layer together as in 'rootfs
build'. Owners come from the image and are kept; extended attributes are
dropped (newc cannot store them).

--modules-dir .../lib/modules/VERSION with --module NAME (repeatable or
comma-separated) adds the modules with their dependencies (modules.dep or
each module's .modinfo, soft pre-dependencies included), uncompressed, under
/lib/modules/VERSION, and the load order in /etc/initrd/modules.order.

--verity-init PATH puts the guest init (bin/guest-init from 'make build';
"auto" finds guest-init next to this executable) at /init with the
skeleton it needs (/dev/console, /dev, /proc, /sys); it opens the dm-verity
root described by the ibroot.* kernel parameters.

-o - writes the initrd to stdout (the summary line then goes to stderr).
docs/initrd.md has the details and examples.`,
		Example: `  K=~/.cache/imagebuilder/debian-kernel
  imagebuilder initrd build --verity-init bin/guest-init \
    --modules-dir $K/lib/modules/$(cat $K/version) \
    --module virtio_pci,virtio_blk,dm-verity,erofs -o initrd.img`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runInitrdBuild(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.Var(orderedFlag{"dir", &f.sources}, "dir", "add the tree under this directory (repeatable)")
	fl.Var(orderedFlag{"spec", &f.sources}, "spec", "add the entries of a gen_init_cpio spec file (repeatable)")
	fl.Var(orderedFlag{"file", &f.sources}, "file", "add host file SRC at DST, with octal MODE if given (SRC:DST[:MODE], repeatable)")
	fl.Var(orderedFlag{"source", &f.sources}, "source", "add an image or tree, as in 'rootfs build --source' (repeatable)")
	fl.StringVar(&f.platform, "platform", "linux/amd64", "platform of the image to pick from a multi-platform index")
	fl.StringVar(&f.cache, "cache", "", "registry blob cache directory (default "+source.DefaultCacheDir()+")")
	fl.StringVar(&f.modulesDir, "modules-dir", "", "kernel modules tree .../lib/modules/VERSION (with --module)")
	fl.StringSliceVar(&f.modules, "module", nil, "kernel module or alias to add with its dependencies (repeatable, comma-separated; with --modules-dir)")
	fl.StringVar(&f.init, "init", "", "host program to place at /init")
	fl.StringVar(&f.verityInit, "verity-init", "", `guest init to place at /init with /dev/console, /dev, /proc, /sys ("auto": guest-init next to this executable)`)
	fl.StringVar(&f.early, "early-cpio", "", "uncompressed newc archive to put first (CPU microcode)")
	fl.StringVar(&f.compress, "compress", string(initrd.Zstd), "compression: "+strings.Join(initrd.Compressions, ", "))
	fl.IntVar(&f.level, "level", 0, "compression level (default: gzip 6, zstd 3, as the gzip and zstd tools; not with --compress none)")
	fl.BoolVar(&f.keepOwners, "keep-owners", false, "store the owners of host files instead of 0:0")
	addOutputFlag(cmd, &f.out, "output file, or - for stdout (required)", true)
	addJSONFlag(cmd, &f.json)
	completeValues(cmd, "compress", initrd.Compressions...)
	return cmd
}

// initrdConfig maps the flags onto an initrd.Config; every mistake in the
// flags is a usage error naming the flag.
func initrdConfig(cmd *cobra.Command, f *initrdBuildFlags) (initrd.Config, error) {
	path := cmd.CommandPath()
	var cfg initrd.Config
	comp, err := initrd.ParseCompression(f.compress)
	if err != nil {
		return cfg, usagef("%s: --compress %q: want none, gzip or zstd", path, f.compress)
	}
	if flagChanged(cmd, "level") {
		if comp == initrd.None {
			return cfg, usagef("%s: --level %d: has no effect with --compress none", path, f.level)
		}
		if f.level == 0 {
			return cfg, usagef("%s: --level 0: give a level, or leave --level out for the default", path)
		}
		if err := initrd.CheckLevel(comp, f.level); err != nil {
			return cfg, usagef("%s: --level: %v", path, err)
		}
	}
	if len(f.modules) > 0 && f.modulesDir == "" {
		return cfg, usagef("%s: --module needs --modules-dir", path)
	}
	if f.modulesDir != "" && len(f.modules) == 0 {
		return cfg, usagef("%s: --modules-dir %s: give the modules to add with --module", path, f.modulesDir)
	}
	for _, m := range f.modules {
		if strings.TrimSpace(m) == "" {
			return cfg, usagef("%s: --module: empty module name", path)
		}
	}
	if err := checkDuplicates(cmd, "module", f.modules); err != nil {
		return cfg, err
	}
	if f.init != "" && f.verityInit != "" {
		return cfg, usagef("%s: --init and --verity-init both place /init; give one", path)
	}
	byKind := map[string][]string{}
	for _, s := range f.sources {
		byKind[s.kind] = append(byKind[s.kind], s.arg)
	}
	for _, kind := range []string{"dir", "spec", "file", "source"} {
		if err := checkDuplicates(cmd, kind, byKind[kind]); err != nil {
			return cfg, err
		}
	}
	if _, err := source.ParsePlatform(f.platform); err != nil {
		return cfg, usagef("%s: --platform: %v", path, err)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return cfg, usagef("%s: %v", path, err)
	}
	cache := f.cache
	if cache == "" {
		cache = source.DefaultCacheDir()
	}
	for i := 0; i < len(f.sources); i++ {
		s := f.sources[i]
		switch s.kind {
		case "dir":
			cfg.Sources = append(cfg.Sources, initrd.Dir{Path: s.arg})
		case "spec":
			cfg.Sources = append(cfg.Sources, initrd.SpecFile{Path: s.arg})
		case "file":
			file, err := source.ParseFile(s.arg)
			if err != nil {
				return cfg, usagef("%s: --file: %v", path, err)
			}
			cfg.Sources = append(cfg.Sources, initrd.File(file))
		case "source":
			// Consecutive --source flags layer together.
			im := initrd.Image{Options: source.Options{Platform: f.platform, CacheDir: cache}}
			for {
				src, err := source.Parse(f.sources[i].arg)
				if err != nil {
					return cfg, usagef("%s: --source: %v", path, err)
				}
				im.Sources = append(im.Sources, src)
				if i+1 == len(f.sources) || f.sources[i+1].kind != "source" {
					break
				}
				i++
			}
			cfg.Sources = append(cfg.Sources, im)
		}
	}
	if f.modulesDir != "" {
		cfg.Modules = initrd.Modules{Dir: f.modulesDir, Names: f.modules}
	}
	switch {
	case f.init != "":
		cfg.Init = initrd.Init{Path: f.init}
	case f.verityInit == "auto":
		exe, err := os.Executable()
		if err != nil {
			return cfg, fmt.Errorf("%s: --verity-init auto: %w", path, err)
		}
		p := filepath.Join(filepath.Dir(exe), "guest-init")
		if _, err := os.Stat(p); err != nil {
			return cfg, fmt.Errorf("%s: --verity-init auto: no guest-init next to %s ('make build' puts both in bin/; or give its path)", path, exe)
		}
		cfg.Init = initrd.Init{Path: p, Skeleton: true}
	case f.verityInit != "":
		cfg.Init = initrd.Init{Path: f.verityInit, Skeleton: true}
	}
	if f.early != "" {
		cfg.Early = initrd.Early{Path: f.early}
	}
	cfg.Compression, cfg.Level = comp, f.level
	cfg.KeepOwners, cfg.SourceDateEpoch = f.keepOwners, epoch
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%s: %v", path, trimPkg(err))
	}
	return cfg, nil
}

func runInitrdBuild(cmd *cobra.Command, f *initrdBuildFlags) error {
	if err := checkOutputPath(cmd, f.out, true); err != nil {
		return err
	}
	if f.out == "-" && f.json.toStdout() {
		return usagef("%s: -o - and --json both write to stdout; give --json=FILE", cmd.CommandPath())
	}
	cfg, err := initrdConfig(cmd, f)
	if err != nil {
		return err
	}
	var set atomicfile.Set
	defer set.Abort()
	var w io.Writer = os.Stdout
	if f.out != "-" {
		out, err := set.Create(f.out, 0o644)
		if err != nil {
			return cmdError(cmd, err)
		}
		w = out
	}
	writeJSON, err := f.json.stage(&set)
	if err != nil {
		return cmdError(cmd, err)
	}
	res, err := initrd.Build(cmd.Context(), cfg, w)
	if err != nil {
		return cmdError(cmd, err)
	}
	if err := writeJSON(res); err != nil {
		return cmdError(cmd, err)
	}
	if err := set.Commit(); err != nil {
		return cmdError(cmd, err)
	}
	if f.json.toStdout() {
		return printJSON(os.Stdout, res)
	}
	summary, name := io.Writer(os.Stdout), f.out
	if f.out == "-" {
		summary, name = os.Stderr, "(stdout)"
	}
	printSummary(summary, name, res.Size, res.SHA256, fmt.Sprintf("%d entries", len(res.Entries)), string(res.Compression))
	return nil
}

// cmdError puts the command's name before a library error, without the
// package prefix the library adds ("initrd: ").
func cmdError(cmd *cobra.Command, err error) error {
	return prefixedError{msg: cmd.CommandPath() + ": " + trimPkg(err).Error(), err: err}
}

type prefixedError struct {
	msg string
	err error
}

func (e prefixedError) Error() string { return e.msg }
func (e prefixedError) Unwrap() error { return e.err }

// trimPkg drops the "initrd: " a library error starts with.
func trimPkg(err error) error {
	msg := err.Error()
	if t := strings.TrimPrefix(msg, "initrd: "); t != msg {
		return prefixedError{msg: t, err: err}
	}
	return err
}

// initrdListEntry is one entry of 'initrd list --json'.
type initrdListEntry struct {
	*initrd.Header
	initrd.Segment
}

func newInitrdListCmd() *cobra.Command {
	var jf jsonFlag
	cmd := &cobra.Command{
		Use:   "list FILE",
		Short: "List the entries of an initramfs like cpio -tv (uncompressed, gzip, zstd or xz, concatenated)",
		Long: `List the entries of an initramfs like 'cpio -tv': numeric owners, dates in
UTC, one line an entry. Reads what the kernel reads: uncompressed newc
archives and gzip, zstd or xz streams, concatenated (an early cpio first).
FILE - reads stdin. Control characters in names are escaped.

--json prints a JSON array of the entries, each with its segment (1-based),
the segment's compression and its file offset.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runInitrdList(cmd, args[0], &jf) },
	}
	addJSONFlag(cmd, &jf)
	return cmd
}

func runInitrdList(cmd *cobra.Command, name string, jf *jsonFlag) error {
	var in io.Reader = os.Stdin
	if name != "-" {
		fh, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
		}
		defer fh.Close()
		in = fh
	}
	var set atomicfile.Set
	defer set.Abort()
	var text io.Writer = os.Stdout
	var js *jsonArray
	switch {
	case jf.toStdout():
		text, js = nil, &jsonArray{w: os.Stdout}
	case jf.toFile():
		out, err := set.Create(jf.path, 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
		}
		js = &jsonArray{w: out}
	}
	err := initrd.Walk(cmd.Context(), in, func(h *initrd.Header, seg initrd.Segment, _ io.Reader) error {
		if text != nil {
			if _, err := fmt.Fprintln(text, initrd.FormatEntry(h)); err != nil {
				return err
			}
		}
		if js != nil {
			return js.add(initrdListEntry{h, seg})
		}
		return nil
	})
	if err == nil && js != nil {
		err = js.close()
	}
	if err != nil {
		return prefixedError{msg: cmd.CommandPath() + ": " + name + ": " + trimPkg(err).Error(), err: err}
	}
	return set.Commit()
}

// jsonArray streams a JSON array in the form of printJSON (two-space
// indent, trailing newline), so that a listing of any length needs no
// more memory than one entry.
type jsonArray struct {
	w io.Writer
	n int
}

func (j *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if j.n == 0 {
		sep = "[\n  "
	}
	j.n++
	_, err = j.w.Write(append([]byte(sep), b...))
	return err
}

func (j *jsonArray) close() error {
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}
