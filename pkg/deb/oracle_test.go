package deb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// listing describes a tree for comparison: path, type and mode, size,
// sha256 of regular files, symlink targets.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %s", fi.Size(), hex.EncodeToString(h.Sum(nil)))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOracleDpkgDeb extracts the cached Debian kernel package and compares
// the tree with what dpkg-deb -x makes of it.
func TestOracleDpkgDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("extracts 400 MB twice")
	}
	k := fixtures.DebianKernelDeb(t)
	dpkg, err := exec.LookPath("dpkg-deb")
	if err != nil {
		fixtures.Missing(t, "dpkg-deb: %v", err)
	}
	tmp := t.TempDir()
	ref := filepath.Join(tmp, "dpkg")
	if out, err := exec.Command(dpkg, "-x", k.Deb, ref).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	p, f, err := OpenFile(context.Background(), k.Deb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ours := filepath.Join(tmp, "ours")
	res, err := p.Extract(context.Background(), ours, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, got := listing(t, ref), listing(t, ours)
	os.RemoveAll(ref)
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("missing %s (%s)", name, w)
		} else if g != w {
			t.Errorf("%s: %s, dpkg-deb: %s", name, g, w)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("extra %s (%s)", name, g)
		}
	}
	t.Logf("%s: %d entries identical to dpkg-deb -x (%d files, %d dirs, %d symlinks, %d bytes)", filepath.Base(k.Deb), len(want), res.Files, res.Dirs, res.Symlinks, res.Bytes)
}

// TestKernelPackage takes the kernel out of the real package: the
// vmlinuz is the fixture's, and pkg/initrd resolves the guest's modules in
// the extracted tree, which has no modules.dep.
func TestKernelPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("extracts 400 MB")
	}
	fix := fixtures.DebianKernelDeb(t)
	p, f, err := OpenFile(context.Background(), fix.Deb)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := filepath.Join(t.TempDir(), "k")
	k, err := ExtractKernel(context.Background(), p, dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != fix.Version || !strings.HasPrefix(k.Package, "linux-image-") {
		t.Errorf("kernel %+v, fixture release %s", k, fix.Version)
	}
	want, err := os.ReadFile(fix.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(want); hex.EncodeToString(sum[:]) != k.VmlinuzSHA256 {
		t.Errorf("vmlinuz sha256 %s differs from the fixture's", k.VmlinuzSHA256)
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err == nil {
		t.Errorf("the package now ships modules.dep: the note in ExtractKernel is out of date")
	}
	ms, err := initrd.OpenModules(context.Background(), k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ms.Resolve(context.Background(), []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"})
	if err != nil {
		t.Fatal(err)
	}
	// The same modules as from the fixture's depmod'ed tree.
	ref, err := initrd.OpenModules(context.Background(), fix.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	refMods, err := ref.Resolve(context.Background(), []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"})
	if err != nil {
		t.Fatal(err)
	}
	var names, refNames []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	for _, m := range refMods {
		refNames = append(refNames, m.Name)
	}
	// The same set; the order may differ (both put dependencies first:
	// .modinfo lists a module's depends= in its own order, modules.dep in
	// depmod's), so an initrd made from the .deb differs from one made
	// from a depmod'ed tree in its load order only.
	sorted := func(s []string) string { s = slices.Clone(s); slices.Sort(s); return strings.Join(s, " ") }
	if sorted(names) != sorted(refNames) {
		t.Errorf("modules from .modinfo: %v\nfrom modules.dep: %v", names, refNames)
	}
	t.Logf("%s %s: release %s, vmlinuz %s, %d files; modules in load order: %s", k.Package, k.Version, k.Release, k.VmlinuzSHA256[:16], k.Files, strings.Join(names, " "))
}
