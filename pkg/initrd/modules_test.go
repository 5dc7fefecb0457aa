package initrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// fakeModules writes a modules tree of minimal ELF modules, without
// modules.dep or modules.alias unless asked, some compressed.
func fakeModules(t *testing.T, withDep bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.99.0-test")
	mods := []struct {
		rel string
		kv  []string
	}{
		{"kernel/drivers/md/dm-verity.ko.xz", []string{"name=dm_verity", "depends=dm-bufio,dm-mod,reed_solomon"}},
		{"kernel/drivers/md/dm-bufio.ko.zst", []string{"name=dm_bufio", "depends=dm-mod"}},
		{"kernel/drivers/md/dm-mod.ko", []string{"name=dm_mod", "depends="}},
		{"kernel/lib/reed_solomon/reed_solomon.ko", []string{"name=reed_solomon", "depends="}},
		{"kernel/fs/erofs/erofs.ko.xz", []string{"name=erofs", "depends=libcrc32c"}},
		{"kernel/lib/libcrc32c.ko", []string{"name=libcrc32c", "depends=", "softdep=pre: crc32c"}},
		{"kernel/crypto/crc32c_generic.ko", []string{"name=crc32c_generic", "alias=crypto-crc32c", "alias=crc32c"}},
		{"kernel/fs/needs-missing.ko", []string{"name=needs_missing", "depends=no_such_mod"}},
		{"kernel/a.ko", []string{"name=a", "depends=b"}},
		{"kernel/b.ko", []string{"name=b", "depends=a"}},
	}
	for _, m := range mods {
		p := filepath.Join(dir, m.rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := makeKO(m.kv...)
		var out bytes.Buffer
		switch {
		case strings.HasSuffix(p, ".xz"):
			w, _ := xz.NewWriter(&out)
			w.Write(b)
			w.Close()
		case strings.HasSuffix(p, ".zst"):
			w, _ := zstd.NewWriter(&out)
			w.Write(b)
			w.Close()
		default:
			out.Write(b)
		}
		if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\n"), 0o644)
	if withDep {
		dep := "kernel/drivers/md/dm-verity.ko.xz: kernel/drivers/md/dm-bufio.ko.zst kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon/reed_solomon.ko\n" +
			"kernel/drivers/md/dm-bufio.ko.zst: kernel/drivers/md/dm-mod.ko\n" +
			"kernel/drivers/md/dm-mod.ko:\nkernel/lib/reed_solomon/reed_solomon.ko:\n" +
			"kernel/fs/erofs/erofs.ko.xz: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\n"
		os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
		os.WriteFile(filepath.Join(dir, "modules.alias"), []byte("alias crc32c crc32c_generic\nalias crypto-crc32c crc32c_generic\n"), 0o644)
	}
	return dir
}

func names(mods []Module) string {
	var s []string
	for _, m := range mods {
		n := m.Name
		if m.Optional {
			n += "?"
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

func TestResolveModules(t *testing.T) {
	ctx := context.Background()
	for _, withDep := range []bool{false, true} {
		ms, err := OpenModules(ctx, fakeModules(t, withDep))
		if err != nil {
			t.Fatal(err)
		}
		mods, err := ms.Resolve(ctx, []string{"virtio", "dm-verity", "erofs"})
		if err != nil {
			t.Fatal(err)
		}
		// .modinfo depends= order (dm-bufio first) without modules.dep.
		want := "dm_mod dm_bufio reed_solomon dm_verity crc32c_generic? libcrc32c erofs"
		if withDep {
			// modules.dep's order, loaded from its end.
			want = "reed_solomon dm_mod dm_bufio dm_verity crc32c_generic? libcrc32c erofs"
		}
		if got := names(mods); got != want {
			t.Errorf("modules.dep=%v: order %q, want %q", withDep, got, want)
		}
		// needs-missing is not in modules.dep (a stale one): its own
		// .modinfo still counts.
		_, err = ms.Resolve(ctx, []string{"needs-missing"})
		if err == nil || !strings.Contains(err.Error(), "module no_such_mod, needed by needs_missing, not found in") {
			t.Errorf("modules.dep=%v: missing dependency: %v", withDep, err)
		}
		if withDep {
			// modules.dep names a file that is not in the tree.
			os.Remove(filepath.Join(ms.Dir, "kernel/lib/reed_solomon/reed_solomon.ko"))
			ms, err := OpenModules(ctx, ms.Dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ms.Resolve(ctx, []string{"dm-verity"})
			if err == nil || !strings.Contains(err.Error(), "reed_solomon.ko: no such file or directory (needed by dm_verity)") {
				t.Errorf("modules.dep names a missing file: %v", err)
			}
			continue
		}
		if _, err := ms.Resolve(ctx, []string{"nonesuch"}); err == nil || !strings.Contains(err.Error(), "module nonesuch (requested) not found") {
			t.Errorf("missing module: %v", err)
		}
		if _, err := ms.Resolve(ctx, []string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle: a -> b -> a") {
			t.Errorf("cycle: %v", err)
		}
		// The archive holds the modules uncompressed and the load order.
		a := New()
		if err := a.AddModules(ctx, ms, mods); err != nil {
			t.Fatal(err)
		}
		var order string
		var verity []byte
		for _, e := range a.Entries() {
			if e.Path == LoadOrderPath {
				order = string(e.Data)
			}
			if e.Path == "lib/modules/6.99.0-test/kernel/drivers/md/dm-verity.ko" {
				verity = e.Data
			}
		}
		if !bytes.HasPrefix(verity, []byte("\x7fELF")) {
			t.Errorf("dm-verity.ko.xz not stored uncompressed as dm-verity.ko")
		}
		if !strings.Contains(order, "/lib/modules/6.99.0-test/kernel/crypto/crc32c_generic.ko optional\n/lib/modules/6.99.0-test/kernel/lib/libcrc32c.ko\n") {
			t.Errorf("load order:\n%s", order)
		}
	}
}

// TestDebianModules resolves the modules the guest init needs in the real
// Debian kernel tree (scripts/fixtures/debian-kernel.sh); the order is the
// one that boots (docs: rootfs.md).
func TestDebianModules(t *testing.T) {
	ctx := context.Background()
	ms, err := OpenModules(ctx, fixtures.DebianKernel(t).ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ms.Resolve(ctx, []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"})
	if err != nil {
		t.Fatal(err)
	}
	want := "virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk reed_solomon dm_mod dm_bufio dm_verity crc32c_generic? crc32c_intel? libcrc32c erofs"
	if got := names(mods); got != want {
		t.Errorf("order %q\nwant  %q", got, want)
	}

	// The same modules compressed (.ko.xz and .ko.zst, alternating), with
	// no modules.dep or modules.alias: .modinfo alone must give a valid
	// order with the same soft dependencies, and the archive must hold the
	// same uncompressed bytes.
	zdir := filepath.Join(t.TempDir(), ms.Version)
	for i, m := range mods {
		b, err := ms.ReadModule(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		rel := stripModExt(m.Rel) + ".ko.xz"
		if i%2 == 0 {
			w, _ := xz.NewWriter(&out)
			w.Write(b)
			w.Close()
		} else {
			rel = stripModExt(m.Rel) + ".ko.zst"
			w, _ := zstd.NewWriter(&out)
			w.Write(b)
			w.Close()
		}
		p := filepath.Join(zdir, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	zms, err := OpenModules(ctx, zdir)
	if err != nil {
		t.Fatal(err)
	}
	zmods, err := zms.Resolve(ctx, []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range zmods {
		pos[m.Name] = i
	}
	if len(zmods) != len(mods) {
		t.Fatalf(".modinfo only: %q, want the modules of %q", names(zmods), want)
	}
	for _, m := range zmods {
		mi, err := zms.modinfo(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range mi.depends {
			if pos[d] >= pos[m.Name] {
				t.Errorf(".modinfo only: %s loads before its dependency %s: %q", m.Name, d, names(zmods))
			}
		}
		a, b := zms.mustRead(t, m.Name), ms.mustRead(t, m.Name)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: decompressed %s differs from the .ko", m.Name, m.Rel)
		}
	}
	if got := names(zmods); !strings.Contains(got, "crc32c_generic? crc32c_intel? libcrc32c") {
		t.Errorf(".modinfo only: soft dependencies lost: %q", got)
	}
}

func (ms *ModuleSet) mustRead(t *testing.T, n string) []byte {
	t.Helper()
	b, err := ms.ReadModule(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mapFS copies the tree dir into an fstest.MapFS.
func mapFS(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[filepath.ToSlash(rel)] = &fstest.MapFile{Data: b, Mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOpenModulesFS: a modules tree read through an fs.FS resolves and
// reads the same modules as the directory it was copied from.
func TestOpenModulesFS(t *testing.T) {
	ctx := context.Background()
	for _, withDep := range []bool{false, true} {
		dir := fakeModules(t, withDep)
		want, err := OpenModules(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := OpenModulesFS(ctx, mapFS(t, dir), "6.99.0-test")
		if err != nil {
			t.Fatal(err)
		}
		if ms.Dir != "" || ms.Version != "6.99.0-test" {
			t.Errorf("Dir %q Version %q", ms.Dir, ms.Version)
		}
		names := []string{"virtio", "dm-verity", "erofs"}
		wmods, err := want.Resolve(ctx, names)
		if err != nil {
			t.Fatal(err)
		}
		mods, err := ms.Resolve(ctx, names)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(mods) != fmt.Sprint(wmods) {
			t.Errorf("modules.dep=%v: over the FS %+v, over the directory %+v", withDep, mods, wmods)
		}
		for _, m := range mods {
			if !bytes.Equal(ms.mustRead(t, m.Name), want.mustRead(t, m.Name)) {
				t.Errorf("modules.dep=%v: %s reads differently", withDep, m.Name)
			}
		}
		_, err = ms.Resolve(ctx, []string{"nonesuch"})
		var nf *ModuleNotFoundError
		if !errors.As(err, &nf) || nf.Dir != "lib/modules/6.99.0-test" {
			t.Errorf("missing module: %v", err)
		}
	}
	for _, c := range []struct {
		fsys    fs.FS
		version string
	}{
		{fstest.MapFS{"kernel/a.ko": {Data: makeKO("name=a")}}, "not-a-release"},
		{fstest.MapFS{"README": {Data: []byte("x")}}, "6.99.0-test"},
	} {
		if _, err := OpenModulesFS(ctx, c.fsys, c.version); !errors.Is(err, ErrNotModulesTree) {
			t.Errorf("%s: %v, want ErrNotModulesTree", c.version, err)
		}
	}
}
