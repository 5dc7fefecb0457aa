package deb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
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
	// package ships it there). From ExtractKernelFS both are paths in its
	// FS ("boot/vmlinuz-RELEASE", "lib/modules/RELEASE").
	Vmlinuz       string `json:"vmlinuz"`
	VmlinuzSize   int64  `json:"vmlinuz_size"`
	VmlinuzSHA256 string `json:"vmlinuz_sha256"`
	ModulesDir    string `json:"modules_dir"`
	// Files counts the regular files taken (vmlinuz and the modules
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
	kp := newKernelPicker(p)
	created, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	res, err := p.extract(ctx, dir, ExtractOptions{Filter: kp.filter}, kp.tee)
	var k *Kernel
	if err == nil {
		k, err = kp.finish(res)
	}
	if err != nil {
		cleanup(dir, created)
		return nil, err
	}
	k.Vmlinuz = filepath.Join(dir, filepath.FromSlash(k.Vmlinuz))
	k.ModulesDir = filepath.Join(dir, filepath.FromSlash(k.ModulesDir))
	return k, nil
}

// ExtractKernelFS takes the same files out of a kernel package as
// ExtractKernel, with the same checks, but keeps them in spool (see
// SpoolFS) instead of writing one file each: the Debian package's modules
// tree is about 4,900 files, of which a build reads a handful. The
// Kernel's Vmlinuz and ModulesDir are slash-separated paths in the
// returned FS ("boot/vmlinuz-VERSION", "lib/modules/VERSION"); fs.Sub
// gives the modules tree as an fs.FS of its own.
func ExtractKernelFS(ctx context.Context, p *Package, spool SpoolFile) (*Kernel, *SpoolFS, error) {
	kp := newKernelPicker(p)
	sfs, res, err := p.spool(ctx, spool, ExtractOptions{Filter: kp.filter}, kp.tee)
	if err != nil {
		return nil, nil, err
	}
	k, err := kp.finish(res)
	if err != nil {
		return nil, nil, err
	}
	return k, sfs, nil
}

// kernelPicker chooses the entries of a kernel package that ExtractKernel
// and ExtractKernelFS take, and checks them.
type kernelPicker struct {
	p         *Package
	k         *Kernel
	releases  []string
	modPrefix string
	err       error // the first entry refused; the walk takes nothing more
	h         hash.Hash
	head      headWriter
}

func newKernelPicker(p *Package) *kernelPicker {
	return &kernelPicker{p: p, h: sha256.New(),
		k: &Kernel{Package: p.Control.Package(), Version: p.Control.Version(), Architecture: p.Control.Architecture()}}
}

// filter is the ExtractOptions.Filter.
func (kp *kernelPicker) filter(e *Entry) bool {
	if kp.err != nil {
		return false
	}
	k, p := kp.k, kp.p
	if rel, ok := kernelRelease(e.Path); ok {
		if e.Type != TypeReg {
			kp.err = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: fmt.Sprintf("the kernel image is a %s, not a file", e.Type)}
			return false
		}
		if k.Release != "" {
			kp.err = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: "a second kernel image (boot/vmlinuz-" + k.Release + " came first)"}
			return false
		}
		k.Release, k.VmlinuzSize = rel, e.Size
		return true
	}
	if rel, pre, ok := modulesRelease(e.Path); ok {
		if kp.modPrefix != "" && pre != kp.modPrefix {
			kp.err = &FormatError{Member: p.DataMember.Name, Entry: e.Name, Offset: -1, Msg: "modules both in " + kp.modPrefix + " and " + pre}
			return false
		}
		kp.modPrefix = pre
		if len(kp.releases) == 0 || kp.releases[len(kp.releases)-1] != rel {
			kp.releases = append(kp.releases, rel)
		}
		return true
	}
	return false
}

// tee hashes the kernel image and keeps its first bytes.
func (kp *kernelPicker) tee(e *Entry) io.Writer {
	if _, ok := kernelRelease(e.Path); ok {
		return io.MultiWriter(kp.h, &kp.head)
	}
	return nil
}

// finish checks what the walk chose and returns the Kernel, its Vmlinuz
// and ModulesDir slash-separated paths in the package.
func (kp *kernelPicker) finish(res *ExtractResult) (*Kernel, error) {
	k, p := kp.k, kp.p
	if kp.err != nil {
		return nil, kp.err
	}
	if k.Release == "" {
		return nil, fmt.Errorf("deb: %s %s: %w", k.Package, k.Version, ErrNoKernel)
	}
	for _, r := range kp.releases {
		if r != k.Release {
			return nil, &FormatError{Member: p.DataMember.Name, Offset: -1, Msg: fmt.Sprintf("modules for release %s, but the kernel is %s", r, k.Release)}
		}
	}
	if len(kp.releases) == 0 {
		return nil, &FormatError{Member: p.DataMember.Name, Offset: -1, Msg: "no lib/modules/" + k.Release + " tree"}
	}
	k.Vmlinuz = "boot/vmlinuz-" + k.Release
	k.ModulesDir = path.Join(kp.modPrefix, k.Release)
	if len(kp.head.b) < 0x206 || string(kp.head.b[0x202:0x206]) != "HdrS" {
		return nil, &FormatError{Member: p.DataMember.Name, Entry: "./boot/vmlinuz-" + k.Release, Offset: -1, Msg: "not a bzImage (no \"HdrS\" boot protocol header at 0x202)"}
	}
	k.VmlinuzSHA256 = hex.EncodeToString(kp.h.Sum(nil))
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
