package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// LoadOrderPath is where the module load order is written in the archive:
// one module per line, "/lib/modules/<version>/<path>.ko", optionally
// followed by " optional" for soft dependencies whose failure to load
// (for example a CPU-specific crc32c implementation) is not fatal. The
// guest init loads them in this order with finit_module.
const LoadOrderPath = "etc/initrd/modules.order"

// Module is one kernel module chosen for the archive.
type Module struct {
	// Name is the module name ("dm_verity": dashes become underscores).
	Name string `json:"name"`
	// Path is where the module is stored in the archive, uncompressed
	// ("lib/modules/VERSION/kernel/drivers/md/dm-verity.ko").
	Path string `json:"path"`
	// Rel is the module file relative to the modules directory, as found
	// (possibly .ko.xz, .ko.zst or .ko.gz).
	Rel string `json:"file"`
	// Optional is set for modules pulled in only as soft dependencies.
	Optional bool `json:"optional,omitempty"`
	// NeededBy names the module that pulled this one in ("" if requested).
	NeededBy string `json:"needed_by,omitempty"`
}

// ArchivePath is where the module is stored in the archive (uncompressed).
func (m Module) ArchivePath(version string) string {
	return path.Join("lib/modules", version, stripModExt(m.Rel)) + ".ko"
}

var modExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

func stripModExt(p string) string {
	for _, x := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(p, x) {
			return strings.TrimSuffix(p, x)
		}
	}
	return p
}

// ModuleName is the module name of a module file path, as depmod names
// it: the base name without its extension, dashes as underscores
// ("kernel/drivers/md/dm-verity.ko" is dm_verity).
func ModuleName(p string) string {
	return strings.ReplaceAll(path.Base(stripModExt(p)), "-", "_")
}

// ModuleSet resolves kernel modules in a modules tree
// (.../lib/modules/<version>).
type ModuleSet struct {
	// Dir is the directory OpenModules opened; "" for OpenModulesFS.
	Dir string
	// FS holds the tree's files: os.DirFS(Dir) for OpenModules. Module
	// paths (Module.Rel) and the index files (modules.dep, ...) are
	// names in it.
	FS      fs.FS
	Version string
	files   map[string]string   // name -> rel path
	deps    map[string][]string // name -> dependency names (modules.dep order), nil if unknown
	hasDep  bool
	builtin map[string]bool
	aliases map[string][]string // alias pattern -> module names
	info    map[string]modinfo
}

type modinfo struct {
	depends []string
	softpre []string
	aliases []string
}

// kernelRelease matches the base name of a lib/modules/VERSION tree: a
// kernel release as `uname -r` prints it ("6.1.0-57-amd64").
var kernelRelease = regexp.MustCompile(`^[0-9]+\.[0-9]+[0-9A-Za-z._+~-]*$`)

// OpenModules indexes the modules tree dir, a lib/modules/VERSION
// directory (its base name is the kernel release; it holds the kernel/
// tree or depmod's and kbuild's modules.* files). modules.dep,
// modules.alias and modules.builtin are used when present; otherwise
// dependencies come from each module's .modinfo. A directory that is not
// such a tree is an error matching ErrNotModulesTree.
func OpenModules(ctx context.Context, dir string) (*ModuleSet, error) {
	ms, err := openModules(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return ms, nil
}

// OpenModulesFS indexes the modules tree of kernel release version held
// in fsys (whose root is the lib/modules/VERSION directory, for example
// an fs.Sub of a spooled kernel package, see pkg/deb.ExtractKernelFS), as
// OpenModules indexes a directory.
func OpenModulesFS(ctx context.Context, fsys fs.FS, version string) (*ModuleSet, error) {
	ms, err := openModulesFS(ctx, fsys, version, "")
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return ms, nil
}

func openModules(ctx context.Context, dir string) (*ModuleSet, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("modules directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("modules directory %s: %w (not a directory)", dir, ErrNotModulesTree)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("modules directory %s: %w", dir, err)
	}
	return openModulesFS(ctx, os.DirFS(dir), filepath.Base(abs), dir)
}

// openModulesFS indexes fsys; dir, when not "", is the directory it
// stands for, in messages and ModuleSet.Dir.
func openModulesFS(ctx context.Context, fsys fs.FS, version, dir string) (*ModuleSet, error) {
	where := "modules directory " + dir
	if dir == "" {
		where = "modules tree lib/modules/" + version
	}
	if !kernelRelease.MatchString(version) {
		if dir == "" {
			return nil, fmt.Errorf("modules tree: %w (%q is not a kernel release)", ErrNotModulesTree, version)
		}
		return nil, fmt.Errorf("%s: %w (its name %q is not a kernel release)", where, ErrNotModulesTree, version)
	}
	marker := false
	for _, m := range []string{"kernel", "modules.order", "modules.builtin", "modules.dep"} {
		if _, err := fs.Stat(fsys, m); err == nil {
			marker = true
			break
		}
	}
	if !marker {
		return nil, fmt.Errorf("%s: %w (no kernel/, modules.order, modules.builtin or modules.dep in it)", where, ErrNotModulesTree)
	}
	ms := &ModuleSet{Dir: dir, FS: fsys, Version: version, files: map[string]string{},
		deps: map[string][]string{}, builtin: map[string]bool{}, info: map[string]modinfo{}}
	n := 0
	err := fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if d.IsDir() || !isModFile(rel) {
			return nil
		}
		n := ModuleName(rel)
		// Several files of one name (updates/ over kernel/): keep the
		// first in path order, as depmod's search order would differ by
		// configuration; modules.dep, when present, decides below.
		if old, ok := ms.files[n]; !ok || rel < old {
			ms.files[n] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if f, err := fsys.Open("modules.dep"); err == nil {
		defer f.Close()
		ms.hasDep = true
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mod, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n := ModuleName(mod)
			ms.files[n] = mod
			var d []string
			for _, x := range strings.Fields(rest) {
				d = append(d, ModuleName(x))
			}
			ms.deps[n] = d
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", ms.name("modules.dep"), err)
		}
	}
	if b, err := fs.ReadFile(fsys, "modules.builtin"); err == nil {
		for _, l := range strings.Fields(string(b)) {
			ms.builtin[ModuleName(l)] = true
		}
	}
	if b, err := fs.ReadFile(fsys, "modules.alias"); err == nil {
		ms.aliases = map[string][]string{}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "alias" {
				ms.aliases[f[1]] = append(ms.aliases[f[1]], ModuleName(f[2]))
			}
		}
	}
	return ms, nil
}

// name is how messages name the file rel of the tree: a host path under
// Dir, else a path under lib/modules/VERSION.
func (ms *ModuleSet) name(rel string) string {
	if ms.Dir != "" {
		return filepath.Join(ms.Dir, filepath.FromSlash(rel))
	}
	return path.Join("lib/modules", ms.Version, rel)
}

// where names the tree in a ModuleNotFoundError.
func (ms *ModuleSet) where() string {
	if ms.Dir != "" {
		return ms.Dir
	}
	return path.Join("lib/modules", ms.Version)
}

func isModFile(p string) bool {
	for _, x := range modExts {
		if strings.HasSuffix(p, x) {
			return true
		}
	}
	return false
}

// modinfo reads (and caches) the .modinfo section of the module n.
func (ms *ModuleSet) modinfo(n string) (modinfo, error) {
	if mi, ok := ms.info[n]; ok {
		return mi, nil
	}
	mi, err := ms.readModinfo(n)
	if err != nil {
		return modinfo{}, err
	}
	ms.info[n] = mi
	return mi, nil
}

// readModinfo reads the .modinfo section of the module n. An uncompressed
// module the tree can read at offsets (a file, a spooled package) is read
// in place: the ELF header, the section headers and .modinfo, a few KiB
// instead of the whole module. Resolving an alias without modules.alias
// reads every module's .modinfo (Debian's package ships no index files),
// and reading each module whole made that the kernel stage's largest cost
// after decompression.
func (ms *ModuleSet) readModinfo(n string) (modinfo, error) {
	rel, ok := ms.files[n]
	if !ok {
		return modinfo{}, &ModuleNotFoundError{Name: n, Dir: ms.where()}
	}
	if strings.HasSuffix(rel, ".ko") {
		f, err := ms.FS.Open(rel)
		if err != nil {
			return modinfo{}, fmt.Errorf("module %s: %w", n, err)
		}
		defer f.Close()
		if ra, ok := f.(io.ReaderAt); ok {
			st, err := f.Stat()
			if err != nil {
				return modinfo{}, fmt.Errorf("module %s: %w", n, err)
			}
			if st.Size() > maxModule {
				return modinfo{}, fmt.Errorf("module %s: %d bytes, more than %d MiB", rel, st.Size(), maxModule>>20)
			}
			mi, err := parseModinfo(io.NewSectionReader(ra, 0, st.Size()), st.Size())
			if err != nil {
				return modinfo{}, fmt.Errorf("module %s (%s): %w", n, rel, err)
			}
			return mi, nil
		}
	}
	b, err := ms.readModule(n)
	if err != nil {
		return modinfo{}, err
	}
	mi, err := parseModinfo(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return modinfo{}, fmt.Errorf("module %s (%s): %w", n, rel, err)
	}
	return mi, nil
}

// maxModinfo bounds a .modinfo section (a few KiB in practice).
const maxModinfo = 1 << 20

// parseModinfo reads the .modinfo section of the ELF module r of size
// bytes.
func parseModinfo(r io.ReaderAt, size int64) (modinfo, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return modinfo{}, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, errors.New("no .modinfo section")
	}
	if sec.Type == elf.SHT_NOBITS || sec.Size > maxModinfo || sec.Offset > uint64(size) || sec.FileSize > uint64(size)-sec.Offset {
		return modinfo{}, fmt.Errorf(".modinfo section of %d bytes at offset %d: beyond the file or over %d KiB", sec.Size, sec.Offset, maxModinfo>>10)
	}
	data, err := sec.Data()
	if err != nil {
		return modinfo{}, err
	}
	var mi modinfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, ModuleName(d))
				}
			}
		case "softdep":
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						mi.softpre = append(mi.softpre, w)
					}
				}
			}
		case "alias":
			mi.aliases = append(mi.aliases, v)
		}
	}
	return mi, nil
}

// maxModule bounds a module's uncompressed size (the largest in a Debian
// kernel, amdgpu, is about 20 MiB).
const maxModule = 256 << 20

// ReadModule returns the uncompressed ELF bytes of the module named n.
func (ms *ModuleSet) ReadModule(n string) ([]byte, error) {
	b, err := ms.readModule(n)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return b, nil
}

func (ms *ModuleSet) readModule(n string) ([]byte, error) {
	rel, ok := ms.files[n]
	if !ok {
		return nil, &ModuleNotFoundError{Name: n, Dir: ms.where()}
	}
	f, err := ms.FS.Open(rel)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", n, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(rel, ".xz"):
		br := bufio.NewReader(f)
		xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(newXZStream(br))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", rel, err)
		}
		r = xr
	case strings.HasSuffix(rel, ".zst"):
		zr, err := zstd.NewReader(newZstdFrames(bufio.NewReader(f)), zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(MaxWindow))
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", rel, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(rel, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", rel, err)
		}
		r = gr
	}
	b, err := io.ReadAll(io.LimitReader(r, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", rel, err)
	}
	if len(b) > maxModule {
		return nil, fmt.Errorf("module %s: larger than %d MiB uncompressed", rel, maxModule>>20)
	}
	return b, nil
}

// lookup finds the modules a name or alias stands for. found is false when
// nothing matches; builtin is set when it is built into the kernel.
func (ms *ModuleSet) lookup(ctx context.Context, name string) (mods []string, builtin bool, err error) {
	n := ModuleName(name)
	if _, ok := ms.files[n]; ok {
		return []string{n}, false, nil
	}
	if ms.builtin[n] {
		return nil, true, nil
	}
	if ms.aliases == nil {
		// No modules.alias: read the aliases of every module once.
		ms.aliases = map[string][]string{}
		for _, m := range sortedKeys(ms.files) {
			if err := ctx.Err(); err != nil {
				ms.aliases = nil
				return nil, false, err
			}
			mi, err := ms.modinfo(m)
			if err != nil {
				ms.aliases = nil
				return nil, false, err
			}
			for _, a := range mi.aliases {
				ms.aliases[a] = append(ms.aliases[a], m)
			}
		}
	}
	seen := map[string]bool{}
	for _, pat := range sortedKeys(ms.aliases) {
		if ok, _ := path.Match(pat, name); ok || pat == name {
			for _, m := range ms.aliases[pat] {
				if _, ok := ms.files[m]; ok && !seen[m] {
					seen[m] = true
					mods = append(mods, m)
				} else if ms.builtin[m] {
					builtin = true
				}
			}
		}
	}
	sort.Strings(mods)
	return mods, builtin, nil
}

// Resolve returns the modules to load for the requested names (module
// names or aliases), dependencies first: hard dependencies (modules.dep, or
// .modinfo depends=) and soft pre-dependencies (.modinfo softdep= pre:,
// marked Optional). Modules built into the kernel are skipped. The order
// depends only on the request order and the modules tree. A module that
// cannot be found is a *ModuleNotFoundError naming it and the module that
// needed it.
func (ms *ModuleSet) Resolve(ctx context.Context, names []string) ([]Module, error) {
	mods, err := ms.resolve(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return mods, nil
}

func (ms *ModuleSet) resolve(ctx context.Context, names []string) ([]Module, error) {
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	index := map[string]int{}
	var visit func(n, by string, optional bool, chain []string) error
	visit = func(n, by string, optional bool, chain []string) error {
		switch state[n] {
		case 2:
			// Met first as a soft dependency, now needed for real.
			if i, ok := index[n]; ok && !optional {
				out[i].Optional = false
			}
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, n), " -> "))
		}
		state[n] = 1
		if err := ctx.Err(); err != nil {
			return err
		}
		mi, err := ms.modinfo(n)
		if err != nil {
			if by != "" {
				return fmt.Errorf("%w (needed by %s)", err, by)
			}
			return err
		}
		for _, s := range mi.softpre {
			mods, _, err := ms.lookup(ctx, s)
			if err != nil {
				return err
			}
			for _, m := range mods {
				if err := visit(m, n, true, append(chain, n)); err != nil {
					return err
				}
			}
		}
		deps := mi.depends
		if d, listed := ms.deps[n]; ms.hasDep && listed {
			// modules.dep lists the closure; loading from its end works.
			// A module it does not list (a stale modules.dep) keeps the
			// dependencies of its own .modinfo.
			deps = nil
			for i := len(d) - 1; i >= 0; i-- {
				deps = append(deps, d[i])
			}
		}
		for _, d := range deps {
			mods, builtin, err := ms.lookup(ctx, d)
			if err != nil {
				return err
			}
			if len(mods) == 0 && !builtin {
				if optional {
					state[n] = 2
					return nil
				}
				return &ModuleNotFoundError{Name: d, NeededBy: n, Dir: ms.where()}
			}
			for _, m := range mods {
				if err := visit(m, n, optional, append(chain, n)); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		index[n] = len(out)
		m := Module{Name: n, Rel: ms.files[n], Optional: optional, NeededBy: by}
		m.Path = m.ArchivePath(ms.Version)
		out = append(out, m)
		return nil
	}
	for _, name := range names {
		mods, builtin, err := ms.lookup(ctx, name)
		if err != nil {
			return nil, err
		}
		if len(mods) == 0 {
			if builtin {
				continue
			}
			return nil, &ModuleNotFoundError{Name: name, Dir: ms.where()}
		}
		for _, m := range mods {
			if err := visit(m, "", false, nil); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// AddModules adds the modules (uncompressed) and the load order file
// (LoadOrderPath) to the archive.
func (a *Archive) AddModules(ctx context.Context, ms *ModuleSet, mods []Module) error {
	if err := a.addModules(ctx, ms, mods); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}

func (a *Archive) addModules(ctx context.Context, ms *ModuleSet, mods []Module) error {
	var order bytes.Buffer
	order.WriteString("# kernel modules to load, in order (imagebuilder initrd)\n")
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := ms.readModule(m.Name)
		if err != nil {
			return err
		}
		p := m.ArchivePath(ms.Version)
		if err := a.add(Entry{Path: p, Mode: TypeReg | 0o644, Size: int64(len(b)), Data: b,
			Source: ms.name(m.Rel)}); err != nil {
			return err
		}
		order.WriteString("/" + p)
		if m.Optional {
			order.WriteString(" optional")
		}
		order.WriteByte('\n')
	}
	return a.add(Entry{Path: LoadOrderPath, Mode: TypeReg | 0o644, Size: int64(order.Len()), Data: order.Bytes()})
}
