package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
	Name string
	// Rel is the module file relative to the modules directory, as found
	// (possibly .ko.xz, .ko.zst or .ko.gz).
	Rel string
	// Optional is set for modules pulled in only as soft dependencies.
	Optional bool
	// NeededBy names the module that pulled this one in ("" if requested).
	NeededBy string
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

func modName(p string) string {
	return strings.ReplaceAll(path.Base(stripModExt(p)), "-", "_")
}

// ModuleSet resolves kernel modules in a modules directory
// (.../lib/modules/<version>).
type ModuleSet struct {
	Dir     string
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

// OpenModules indexes the modules directory dir, whose base name is the
// kernel version. modules.dep, modules.alias and modules.builtin are used
// when present; otherwise dependencies come from each module's .modinfo.
func OpenModules(dir string) (*ModuleSet, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("initrd: modules: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("initrd: modules: %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("initrd: modules: %w", err)
	}
	ms := &ModuleSet{Dir: dir, Version: filepath.Base(abs), files: map[string]string{},
		deps: map[string][]string{}, builtin: map[string]bool{}, info: map[string]modinfo{}}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModFile(p) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		n := modName(rel)
		// Several files of one name (updates/ over kernel/): keep the
		// first in path order, as depmod's search order would differ by
		// configuration; modules.dep, when present, decides below.
		if old, ok := ms.files[n]; !ok || rel < old {
			ms.files[n] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("initrd: modules: %w", err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		defer f.Close()
		ms.hasDep = true
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mod, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n := modName(mod)
			ms.files[n] = mod
			var d []string
			for _, x := range strings.Fields(rest) {
				d = append(d, modName(x))
			}
			ms.deps[n] = d
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("initrd: modules.dep: %w", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			ms.builtin[modName(l)] = true
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.alias")); err == nil {
		ms.aliases = map[string][]string{}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "alias" {
				ms.aliases[f[1]] = append(ms.aliases[f[1]], modName(f[2]))
			}
		}
	}
	return ms, nil
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
	b, err := ms.ReadModule(n)
	if err != nil {
		return modinfo{}, err
	}
	mi, err := parseModinfo(b)
	if err != nil {
		return modinfo{}, fmt.Errorf("initrd: module %s (%s): %w", n, ms.files[n], err)
	}
	ms.info[n] = mi
	return mi, nil
}

func parseModinfo(b []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return modinfo{}, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, errors.New("no .modinfo section")
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
					mi.depends = append(mi.depends, modName(d))
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

// ReadModule returns the uncompressed ELF bytes of the module named n.
func (ms *ModuleSet) ReadModule(n string) ([]byte, error) {
	rel, ok := ms.files[n]
	if !ok {
		return nil, fmt.Errorf("initrd: module %s not found in %s", n, ms.Dir)
	}
	name := filepath.Join(ms.Dir, filepath.FromSlash(rel))
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("initrd: module %s: %w", n, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(rel, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initrd: module %s: %w", rel, err)
		}
		r = xr
	case strings.HasSuffix(rel, ".zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("initrd: module %s: %w", rel, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(rel, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initrd: module %s: %w", rel, err)
		}
		r = gr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("initrd: module %s: %w", rel, err)
	}
	return b, nil
}

// lookup finds the modules a name or alias stands for. found is false when
// nothing matches; builtin is set when it is built into the kernel.
func (ms *ModuleSet) lookup(name string) (mods []string, builtin bool, err error) {
	n := modName(name)
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
			mi, err := ms.modinfo(m)
			if err != nil {
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
// cannot be found is an error naming it and the module that needed it.
func (ms *ModuleSet) Resolve(names []string) ([]Module, error) {
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
			return fmt.Errorf("initrd: module dependency cycle: %s", strings.Join(append(chain, n), " -> "))
		}
		state[n] = 1
		mi, err := ms.modinfo(n)
		if err != nil {
			if by != "" {
				return fmt.Errorf("%w (needed by %s)", err, by)
			}
			return err
		}
		for _, s := range mi.softpre {
			mods, _, err := ms.lookup(s)
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
			mods, builtin, err := ms.lookup(d)
			if err != nil {
				return err
			}
			if len(mods) == 0 && !builtin {
				if optional {
					state[n] = 2
					return nil
				}
				return fmt.Errorf("initrd: module %s, needed by %s, not found in %s", d, n, ms.Dir)
			}
			for _, m := range mods {
				if err := visit(m, n, optional, append(chain, n)); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		index[n] = len(out)
		out = append(out, Module{Name: n, Rel: ms.files[n], Optional: optional, NeededBy: by})
		return nil
	}
	for _, name := range names {
		mods, builtin, err := ms.lookup(name)
		if err != nil {
			return nil, err
		}
		if len(mods) == 0 {
			if builtin {
				continue
			}
			return nil, fmt.Errorf("initrd: module %s (requested) not found in %s", name, ms.Dir)
		}
		for _, m := range mods {
			if err := visit(m, "", false, nil); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// AddModules adds the modules (uncompressed) and the load order file to the
// archive.
func (a *Archive) AddModules(ms *ModuleSet, mods []Module) error {
	var order bytes.Buffer
	order.WriteString("# kernel modules to load, in order (imagebuilder initrd)\n")
	for _, m := range mods {
		b, err := ms.ReadModule(m.Name)
		if err != nil {
			return err
		}
		p := m.ArchivePath(ms.Version)
		if err := a.Add(Entry{Path: p, Mode: TypeReg | 0o644, Size: int64(len(b)), Data: b,
			Source: filepath.Join(ms.Dir, m.Rel)}); err != nil {
			return err
		}
		order.WriteString("/" + p)
		if m.Optional {
			order.WriteString(" optional")
		}
		order.WriteByte('\n')
	}
	return a.Add(Entry{Path: LoadOrderPath, Mode: TypeReg | 0o644, Size: int64(order.Len()), Data: order.Bytes()})
}
