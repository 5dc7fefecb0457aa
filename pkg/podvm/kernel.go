package podvm

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/imagebuilder/imagebuilder/pkg/deb"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// The kernel stage: the bzImage as booted (vmlinuz) and, when modules are
// asked for, modules.tar, the modules the initrd takes (the requested ones
// and everything they depend on, as pkg/initrd resolves them) with the
// index files that resolve them the same way again. From a Debian
// package both come out of its data.tar, which is what makes this stage
// slow (an xz stream of about 400 MiB and thousands of files): the stage
// cache keeps the result by the package's sha256.

// kernelResult is the kernel stage's result.
type kernelResult struct {
	Package      string          `json:"package,omitempty"`
	Version      string          `json:"version,omitempty"`
	Architecture string          `json:"architecture,omitempty"`
	Release      string          `json:"release,omitempty"`
	BootProtocol string          `json:"boot_protocol"`
	CmdlineSize  uint32          `json:"cmdline_size"`
	Modules      []initrd.Module `json:"modules,omitempty"`
}

// kernelStage is the kernel stage's outcome.
type kernelStage struct {
	res     kernelResult
	input   KernelInput
	vmlinuz *stageFile
	modules *stageFile // nil without modules
}

const (
	stageKernel  = "kernel"
	fileVmlinuz  = "vmlinuz"
	fileModules  = "modules.tar"
	modulesRoot  = "lib/modules"
	maxKernelLen = 256 << 20
)

func (b *builder) kernel(ctx context.Context) (*kernelStage, error) {
	k := b.cfg.Spec.Kernel
	ks := &kernelStage{}
	fail := func(field, input string, err error) (*kernelStage, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StageError{Stage: stageKernel, Field: field, Input: input, Err: err}
	}
	config := struct {
		Kind    string   `json:"kind"`
		Modules []string `json:"modules"`
	}{Modules: k.Modules}
	inputs := map[string]string{}
	files := []string{fileVmlinuz}
	if len(k.Modules) > 0 {
		files = append(files, fileModules)
	}
	var run func(ctx context.Context, out map[string]*os.File, t ProgressTask) error
	var total int64
	if k.Deb != nil {
		config.Kind = "deb"
		sum, size, err := fileDigest(ctx, k.Deb.Resolved)
		if err != nil {
			return fail("spec.kernel.deb", k.Deb.Written, err)
		}
		inputs["deb"] = "sha256:" + sum
		total = size
		ks.input.FileInput = FileInput{Field: "spec.kernel.deb", Path: k.Deb.Written, Kind: "file", SHA256: sum, Size: size}
		run = func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			return b.kernelFromDeb(ctx, k, out, t, &ks.res)
		}
	} else {
		config.Kind = "bzImage"
		sum, size, err := fileDigest(ctx, k.BzImage.Resolved)
		if err != nil {
			return fail("spec.kernel.bzImage", k.BzImage.Written, err)
		}
		inputs["bzImage"] = "sha256:" + sum
		total = size
		ks.input.FileInput = FileInput{Field: "spec.kernel.bzImage", Path: k.BzImage.Written, Kind: "file", SHA256: sum, Size: size}
		var ms *initrd.ModuleSet
		var mods []initrd.Module
		if len(k.Modules) > 0 {
			// The modules are resolved before the stage: their digest
			// (what the stage would take from the tree) is its input.
			if ms, err = initrd.OpenModules(ctx, k.ModulesDir.Resolved); err != nil {
				return fail("spec.kernel.modulesDir", k.ModulesDir.Written, trimPkg(err, "initrd: "))
			}
			if mods, err = ms.Resolve(ctx, k.Modules); err != nil {
				return fail("spec.kernel.modules", "", trimPkg(err, "initrd: "))
			}
			d, err := modulesDigest(ctx, ms, mods)
			if err != nil {
				return fail("spec.kernel.modulesDir", k.ModulesDir.Written, err)
			}
			inputs["modules"] = "sha256:" + d
			ks.input.ModulesDir = &FileInput{Field: "spec.kernel.modulesDir", Path: k.ModulesDir.Written, Kind: "tree", SHA256: d}
		}
		run = func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			data, err := readKernel(k.BzImage.Resolved)
			if err != nil {
				return &StageError{Stage: stageKernel, Field: "spec.kernel.bzImage", Input: k.BzImage.Written, Err: err}
			}
			if err := kernelInfo(data, &ks.res); err != nil {
				return &StageError{Stage: stageKernel, Field: "spec.kernel.bzImage", Input: k.BzImage.Written, Err: err}
			}
			if _, err := out[fileVmlinuz].Write(data); err != nil {
				return &StageError{Stage: stageKernel, Input: fileVmlinuz, Err: err}
			}
			t.Add(int64(len(data)))
			if ms != nil {
				ks.res.Release, ks.res.Modules = ms.Version, mods
				if err := writeModulesTar(ctx, out[fileModules], ms, mods); err != nil {
					return &StageError{Stage: stageKernel, Field: "spec.kernel.modulesDir", Input: k.ModulesDir.Written, Err: err}
				}
			}
			return nil
		}
	}
	out, err := b.runStage(ctx, stageRun{name: stageKernel, config: config, inputs: inputs, files: files,
		publish: map[string]string{fileVmlinuz: FileKernel}, result: &ks.res, total: total, run: run})
	if err != nil {
		return nil, err
	}
	ks.vmlinuz, ks.modules = out[fileVmlinuz], out[fileModules]
	if ks.res.Package != "" {
		ks.input.Package, ks.input.Version, ks.input.Architecture = ks.res.Package, ks.res.Version, ks.res.Architecture
	}
	return ks, nil
}

// kernelFromDeb takes vmlinuz and the modules out of a Debian kernel
// package. pkg/deb spools the package's kernel and modules tree into one
// temporary file (its checks on hostile packages included) instead of
// extracting it: the tree is about 4,900 files, of which this stage reads
// a handful, and creating them took 3 s of system time on a 2-core VM
// (docs/build.md).
func (b *builder) kernelFromDeb(ctx context.Context, k Kernel, out map[string]*os.File, t ProgressTask, res *kernelResult) error {
	fail := func(field, input string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &StageError{Stage: stageKernel, Field: field, Input: input, Err: err}
	}
	f, err := os.Open(k.Deb.Resolved)
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	p, err := deb.Open(ctx, &countingReaderAt{f, t}, st.Size())
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, trimPkg(err, "deb: "))
	}
	tmp, err := b.tempDir(stageKernel)
	if err != nil {
		return fail("", "temporary directory", err)
	}
	defer b.removeTemp(tmp)
	spool, err := os.OpenFile(filepath.Join(tmp, "kernel.spool"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail("", "temporary directory", err)
	}
	defer spool.Close()
	kern, kfs, err := deb.ExtractKernelFS(ctx, p, spool)
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, trimPkg(err, "deb: "))
	}
	res.Package, res.Version, res.Architecture, res.Release = kern.Package, kern.Version, kern.Architecture, kern.Release
	vf, err := kfs.Open(kern.Vmlinuz)
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	data, err := readKernelFrom(vf)
	vf.Close()
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	if err := kernelInfo(data, res); err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, fmt.Errorf("boot/vmlinuz-%s: %w", kern.Release, err))
	}
	if _, err := out[fileVmlinuz].Write(data); err != nil {
		return fail("", fileVmlinuz, err)
	}
	if len(k.Modules) == 0 {
		return nil
	}
	mfs, err := fs.Sub(kfs, kern.ModulesDir)
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	ms, err := initrd.OpenModulesFS(ctx, mfs, kern.Release)
	if err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, trimPkg(err, "initrd: "))
	}
	mods, err := ms.Resolve(ctx, k.Modules)
	if err != nil {
		// Name the tree in the package.
		var nf *initrd.ModuleNotFoundError
		if errors.As(err, &nf) {
			in := *nf
			in.Dir = fmt.Sprintf("lib/modules/%s of %s %s", kern.Release, kern.Package, kern.Version)
			err = &in
		}
		return fail("spec.kernel.modules", "", trimPkg(err, "initrd: "))
	}
	res.Modules = mods
	if err := writeModulesTar(ctx, out[fileModules], ms, mods); err != nil {
		return fail("spec.kernel.deb", k.Deb.Written, err)
	}
	return nil
}

// readKernel reads a kernel image, bounded.
func readKernel(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readKernelFrom(f)
}

// readKernelFrom reads a kernel image from r, bounded.
func readKernelFrom(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKernelLen+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKernelLen {
		return nil, fmt.Errorf("larger than %d MiB: not a kernel", maxKernelLen>>20)
	}
	return data, nil
}

// kernelInfo checks that data is a bzImage the IGVM layout can boot and
// records its boot protocol and command line limit.
func kernelInfo(data []byte, res *kernelResult) error {
	bz, err := linuxboot.ParseBzImage(data)
	if err != nil {
		return trimPkg(err, "linuxboot: ")
	}
	res.BootProtocol, res.CmdlineSize = bz.Header.Protocol(), bz.Header.CmdlineSize
	return nil
}

// modulesIndexFiles are the depmod and kbuild index files that decide how
// modules resolve; modules.tar keeps their lines for the modules it holds.
var modulesIndexFiles = []string{"modules.alias", "modules.builtin", "modules.dep", "modules.order"}

// writeModulesTar writes the modules mods of the tree ms as a tar of
// lib/modules/RELEASE/...: each module file as found, and the index files
// of the tree restricted to those modules (modules.builtin whole), so
// that pkg/initrd resolves the same modules from it. Entries are sorted,
// owned by 0:0, mode 0644, time 0.
func writeModulesTar(ctx context.Context, w io.Writer, ms *initrd.ModuleSet, mods []initrd.Module) error {
	keep := map[string]bool{}
	var rels []string
	for _, m := range mods {
		if !keep[m.Rel] {
			keep[m.Rel] = true
			rels = append(rels, m.Rel)
		}
	}
	type member struct {
		name string
		data []byte
		path string // in ms.FS, "" for data
	}
	var members []member
	for _, rel := range rels {
		members = append(members, member{name: rel, path: rel})
	}
	for _, idx := range modulesIndexFiles {
		b, err := fs.ReadFile(ms.FS, idx)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if idx != "modules.builtin" {
			b = filterIndex(idx, b, keep)
		}
		members = append(members, member{name: idx, data: b})
	}
	sort.Slice(members, func(i, j int) bool { return members[i].name < members[j].name })
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: path.Join(modulesRoot, ms.Version, m.name), Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if m.path == "" {
			h.Size = int64(len(m.data))
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(m.data); err != nil {
				return err
			}
			continue
		}
		f, err := ms.FS.Open(m.path)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			h.Size = st.Size()
			err = tw.WriteHeader(h)
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// filterIndex keeps the lines of a modules index file that name a module
// of keep: modules.dep and modules.order by their first field (a module
// path), modules.alias by its last (a module name, matched by file name).
func filterIndex(name string, b []byte, keep map[string]bool) []byte {
	names := map[string]bool{}
	for rel := range keep {
		names[initrd.ModuleName(rel)] = true
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ok := false
		switch name {
		case "modules.dep":
			ok = keep[strings.TrimSuffix(f[0], ":")]
		case "modules.order":
			ok = names[initrd.ModuleName(f[0])]
		case "modules.alias":
			ok = len(f) == 3 && f[0] == "alias" && names[strings.ReplaceAll(f[2], "-", "_")]
		}
		if ok {
			out.WriteString(line)
		}
	}
	return []byte(out.String())
}

// modulesDigest is the digest of what the kernel stage takes from a
// modules tree: the resolved modules (path and content), the index files
// it copies, and the release.
func modulesDigest(ctx context.Context, ms *initrd.ModuleSet, mods []initrd.Module) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "release %q\n", ms.Version)
	for _, m := range mods {
		sum, size, err := fsDigest(ctx, ms.FS, m.Rel)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "module %q %q %t %d %s\n", m.Name, m.Rel, m.Optional, size, sum)
	}
	for _, idx := range modulesIndexFiles {
		sum, size, err := fsDigest(ctx, ms.FS, idx)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "index %s %d %s\n", idx, size, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// extractModules unpacks modules.tar into dir and returns the
// lib/modules/RELEASE directory in it.
func extractModules(ctx context.Context, r io.Reader, dir, release string) (string, error) {
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(h.Name) {
			return "", fmt.Errorf("modules.tar: unexpected entry %q", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	mdir := filepath.Join(dir, modulesRoot, release)
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return "", err
	}
	return mdir, nil
}

// countingReaderAt counts the bytes read as progress.
type countingReaderAt struct {
	r io.ReaderAt
	t ProgressTask
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.t.Add(int64(n))
	return n, err
}

// trimPkg drops a library's "pkg: " prefix from an error message, keeping
// the error for errors.As.
func trimPkg(err error, prefix string) error {
	if msg := err.Error(); strings.HasPrefix(msg, prefix) {
		return &trimmedError{msg: strings.TrimPrefix(msg, prefix), err: err}
	}
	return err
}

type trimmedError struct {
	msg string
	err error
}

func (e *trimmedError) Error() string { return e.msg }
func (e *trimmedError) Unwrap() error { return e.err }
