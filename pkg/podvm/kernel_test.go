package podvm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/deb"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// TestKernelFromDebSpool: the kernel stage from Debian's kernel package,
// which spools the package (deb.ExtractKernelFS) and resolves the modules
// over that FS, gives the same vmlinuz, modules and modules.tar as the
// package extracted to a directory (deb.ExtractKernel) and its tree
// opened with initrd.OpenModules, as the stage did before.
func TestKernelFromDebSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the 400 MiB kernel package twice (about 10 s); run without -short")
	}
	ctx := context.Background()
	kdeb := fixtures.DebianKernelDeb(t).Deb
	dir := t.TempDir()

	// Before: the tree as files.
	p, f, err := deb.OpenFile(ctx, kdeb)
	if err != nil {
		t.Fatal(err)
	}
	kern, err := deb.ExtractKernel(ctx, p, filepath.Join(dir, "x"))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := initrd.OpenModules(ctx, kern.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	wantMods, err := ms.Resolve(ctx, DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	var wantTar bytes.Buffer
	if err := writeModulesTar(ctx, &wantTar, ms, wantMods); err != nil {
		t.Fatal(err)
	}
	wantKernel, err := os.ReadFile(kern.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}

	// Now: the stage.
	b := &builder{tmpRoot: filepath.Join(dir, "tmp")}
	out := map[string]*os.File{}
	for _, n := range []string{fileVmlinuz, fileModules} {
		if out[n], err = os.Create(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
		defer out[n].Close()
	}
	var res kernelResult
	k := Kernel{Deb: &Path{Written: kdeb, Resolved: kdeb}, Modules: DefaultModules}
	if err := b.kernelFromDeb(ctx, k, out, noTask{}, &res); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, fileVmlinuz)); !bytes.Equal(got, wantKernel) {
		t.Errorf("vmlinuz differs (%d bytes, want %d)", len(got), len(wantKernel))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, fileModules)); !bytes.Equal(got, wantTar.Bytes()) {
		t.Errorf("modules.tar differs (%d bytes, want %d)", len(got), wantTar.Len())
	}
	if fmt.Sprint(res.Modules) != fmt.Sprint(wantMods) || res.Release != kern.Release {
		t.Errorf("modules %+v (release %s), want %+v (%s)", res.Modules, res.Release, wantMods, kern.Release)
	}
	if ents, _ := os.ReadDir(b.tmpRoot); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}
