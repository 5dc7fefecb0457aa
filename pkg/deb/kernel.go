package deb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
)

// Kernel is what ExtractKernel took out of a linux-image package.
type Kernel struct {
	Package      string `json:"package"`      // "linux-image-6.1.0-57-amd64"
	Version      string `json:"version"`      // the package version, "6.1.192-3"
	Architecture string `json:"architecture"` // "amd64"
	// Release is the kernel release, the VERSION of boot/vmlinuz-VERSION
	// and lib/modules/VERSION ("6.1.0-57-amd64").
	Release string `json:"release"`
	// Vmlinuz is the extracted bzImage; ModulesDir the modules tree
	// (dir/lib/modules/RELEASE, or dir/usr/lib/modules/RELEASE where the
	// package ships it there).
	Vmlinuz       string `json:"vmlinuz"`
	VmlinuzSize   int64  `json:"vmlinuz_size"`
	VmlinuzSHA256 string `json:"vmlinuz_sha256"`
	ModulesDir    string `json:"modules_dir"`
	// Files counts the regular files written (vmlinuz and the modules
	// tree); Bytes their contents.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// modulesPrefixes are where kernel packages put the modules tree (Debian
// 12 and older; merged-/usr packages).
var modulesPrefixes = []string{"lib/modules/", "usr/lib/modules/"}

// kernelRelease returns VERSION for boot/vmlinuz-VERSION.
func kernelRelease(p string) (string, bool) {
	rel, ok := strings.CutPrefix(p, "boot/vmlinuz-")
	return rel, ok && rel != "" && !strings.Contains(rel, "/")
}

// modulesRelease returns VERSION for a path under a modules prefix.
func modulesRelease(p string) (rel, prefix string, ok bool) {
	for _, pre := range modulesPrefixes {
		if rest, ok := strings.CutPrefix(p, pre); ok && rest != "" {
			rel, _, _ = strings.Cut(rest, "/")
			return rel, pre, true
		}
	}
	return "", "", false
}

// ExtractKernel extracts boot/vmlinuz-VERSION and the lib/modules/VERSION
// tree of a Debian kernel package into dir (which must not exist or be
// empty), keeping the package's layout: dir/boot/vmlinuz-VERSION and
// dir/lib/modules/VERSION. Everything else (config, System.map, docs) is
// skipped. The package must hold exactly one vmlinuz, a bzImage, and
// modules for that release only; a package without a vmlinuz is
// ErrNoKernel. The Debian package ships no modules.dep (its postinst runs
// depmod): pkg/initrd resolves dependencies from each module's .modinfo
// then.
func ExtractKernel(ctx context.Context, p *Package, dir string) (*Kernel, error) {
	k := &Kernel{Package: p.Control.Package(), Version: p.Control.Version(), Architecture: p.Control.Architecture()}
	var releases []string
	var modPrefix string
	var ferr error
	h := sha256.New()
	filter := func(e *Entry) bool {
		if rel, ok := kernelRelease(e.Path); ok {
			if e.Type != TypeReg {
				ferr = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: fmt.Sprintf("the kernel image is a %s, not a file", e.Type)}
				return false
			}
			if k.Release != "" {
				ferr = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: "a second kernel image (boot/vmlinuz-" + k.Release + " came first)"}
				return false
			}
			k.Release, k.VmlinuzSize = rel, e.Size
			return true
		}
		if rel, pre, ok := modulesRelease(e.Path); ok {
			if modPrefix != "" && pre != modPrefix {
				ferr = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: "modules both in " + modPrefix + " and " + pre}
				return false
			}
			modPrefix = pre
			if len(releases) == 0 || releases[len(releases)-1] != rel {
				releases = append(releases, rel)
			}
			return true
		}
		return false
	}
	var head headWriter
	tee := func(e *Entry) io.Writer {
		if _, ok := kernelRelease(e.Path); ok {
			return io.MultiWriter(h, &head)
		}
		return nil
	}
	created, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	res, err := p.extract(ctx, dir, ExtractOptions{Filter: func(e *Entry) bool {
		if ferr != nil {
			return false
		}
		return filter(e)
	}}, tee)
	if err == nil {
		err = ferr
	}
	if err != nil {
		cleanup(dir, created)
		return nil, err
	}
	fail := func(err error) (*Kernel, error) {
		cleanup(dir, created)
		return nil, err
	}
	if k.Release == "" {
		return fail(fmt.Errorf("deb: %s %s: %w", k.Package, k.Version, ErrNoKernel))
	}
	for _, r := range releases {
		if r != k.Release {
			return fail(&FormatError{Member: p.DataMember.Name, Offset: -1, Msg: fmt.Sprintf("modules for release %s, but the kernel is %s", r, k.Release)})
		}
	}
	if len(releases) == 0 {
		return fail(&FormatError{Member: p.DataMember.Name, Offset: -1, Msg: "no lib/modules/" + k.Release + " tree"})
	}
	k.Vmlinuz = filepath.Join(dir, "boot", "vmlinuz-"+k.Release)
	k.ModulesDir = filepath.Join(dir, filepath.FromSlash(path.Join(modPrefix, k.Release)))
	if len(head.b) < 0x206 || string(head.b[0x202:0x206]) != "HdrS" {
		return fail(&FormatError{Member: p.DataMember.Name, Entry: "./boot/vmlinuz-" + k.Release, Offset: -1, Msg: "not a bzImage (no \"HdrS\" boot protocol header at 0x202)"})
	}
	k.VmlinuzSHA256 = hex.EncodeToString(h.Sum(nil))
	k.Files, k.Bytes = res.Files, res.Bytes
	return k, nil
}

// headWriter keeps the first bytes of what it is given: enough for the
// boot protocol magic.
type headWriter struct{ b []byte }

func (w *headWriter) Write(p []byte) (int, error) {
	if w.b == nil {
		w.b = make([]byte, 0, 0x206)
	}
	if n := cap(w.b) - len(w.b); n > 0 {
		w.b = append(w.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}
