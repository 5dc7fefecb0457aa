package deb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBzImage has the boot protocol magic where a bzImage has it.
func fakeBzImage() string {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	return string(b)
}

func kernelTree(rel, modPrefix string) []tarEnt {
	return []tarEnt{
		dir("./", 0o755),
		dir("./boot/", 0o755),
		file("./boot/System.map-"+rel, "map", 0o644),
		file("./boot/vmlinuz-"+rel, fakeBzImage(), 0o644),
		dir("./"+modPrefix, 0o755),
		dir("./"+modPrefix+rel+"/", 0o755),
		file("./"+modPrefix+rel+"/modules.builtin", "kernel/fs/ext4/ext4.ko\n", 0o644),
		file("./"+modPrefix+rel+"/kernel/drivers/virtio_blk.ko", "elf", 0o644),
		dir("./usr/share/doc/", 0o755),
		file("./usr/share/doc/copyright", "GPL", 0o644),
	}
}

func TestExtractKernel(t *testing.T) {
	for _, pre := range modulesPrefixes {
		p, err := openBytes(t, makeDeb(t, XZ, kernelTree("6.1.0-1-amd64", pre)))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "k")
		k, err := ExtractKernel(context.Background(), p, dir)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(fakeBzImage()))
		want := Kernel{Package: "hello", Version: "1.0-1", Architecture: "amd64", Release: "6.1.0-1-amd64",
			Vmlinuz: filepath.Join(dir, "boot/vmlinuz-6.1.0-1-amd64"), VmlinuzSize: 0x400, VmlinuzSHA256: hex.EncodeToString(sum[:]),
			ModulesDir: filepath.Join(dir, pre, "6.1.0-1-amd64"), Files: 3, Bytes: 0x400 + int64(len("kernel/fs/ext4/ext4.ko\nelf"))}
		if *k != want {
			t.Errorf("%s: got %+v\nwant %+v", pre, *k, want)
		}
		got := tree(t, dir)
		if strings.Contains(strings.Join(got, "\n"), "System.map") || strings.Contains(strings.Join(got, "\n"), "doc") {
			t.Errorf("extracted more than the kernel and its modules: %v", got)
		}
	}
}

func TestExtractKernelBad(t *testing.T) {
	rel := "6.1.0-1-amd64"
	cases := []struct {
		name string
		ents []tarEnt
		msg  string
	}{
		{"no kernel", []tarEnt{file("./usr/share/doc/linux-image-amd64/copyright", "GPL", 0o644)}, "no kernel image"},
		{"two kernels", append(kernelTree(rel, "lib/modules/"), file("./boot/vmlinuz-6.2", fakeBzImage(), 0o644)), "a second kernel image"},
		{"other release", append(kernelTree(rel, "lib/modules/"), file("./lib/modules/6.2/x.ko", "x", 0o644)), "modules for release 6.2"},
		{"no modules", []tarEnt{file("./boot/vmlinuz-"+rel, fakeBzImage(), 0o644)}, "no lib/modules/" + rel},
		{"not a bzImage", []tarEnt{file("./boot/vmlinuz-"+rel, "MZ not linux", 0o644), file("./lib/modules/"+rel+"/m", "", 0o644)}, "not a bzImage"},
		{"kernel is a symlink", []tarEnt{symlink("./boot/vmlinuz-"+rel, "/vmlinuz"), file("./lib/modules/"+rel+"/m", "", 0o644)}, "not a file"},
		{"both module dirs", append(kernelTree(rel, "lib/modules/"), file("./usr/lib/modules/"+rel+"/y.ko", "y", 0o644)), "modules both in"},
	}
	for _, c := range cases {
		p, err := openBytes(t, makeDeb(t, Gzip, c.ents))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "k")
		_, err = ExtractKernel(context.Background(), p, dir)
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line saying %q", c.name, err, c.msg)
		}
		if c.name == "no kernel" && !errors.Is(err, ErrNoKernel) {
			t.Errorf("%s: %v is not ErrNoKernel", c.name, err)
		}
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("%s: %s left behind", c.name, dir)
		}
		// ExtractKernelFS refuses it the same way.
		p, perr := openBytes(t, makeDeb(t, Gzip, c.ents))
		if perr != nil {
			t.Fatal(perr)
		}
		_, _, ferr := ExtractKernelFS(context.Background(), p, &memSpool{})
		if ferr == nil || ferr.Error() != err.Error() || errors.Is(err, ErrNoKernel) != errors.Is(ferr, ErrNoKernel) {
			t.Errorf("%s: ExtractKernelFS: %v, ExtractKernel: %v", c.name, ferr, err)
		}
	}
}

func TestExtractKernelFS(t *testing.T) {
	for _, pre := range modulesPrefixes {
		d := makeDeb(t, XZ, kernelTree("6.1.0-1-amd64", pre))
		p, err := openBytes(t, d)
		if err != nil {
			t.Fatal(err)
		}
		k, kfs, err := ExtractKernelFS(context.Background(), p, &memSpool{})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(fakeBzImage()))
		want := Kernel{Package: "hello", Version: "1.0-1", Architecture: "amd64", Release: "6.1.0-1-amd64",
			Vmlinuz: "boot/vmlinuz-6.1.0-1-amd64", VmlinuzSize: 0x400, VmlinuzSHA256: hex.EncodeToString(sum[:]),
			ModulesDir: pre + "6.1.0-1-amd64", Files: 3, Bytes: 0x400 + int64(len("kernel/fs/ext4/ext4.ko\nelf"))}
		if *k != want {
			t.Errorf("%s: got %+v\nwant %+v", pre, *k, want)
		}
		if b, err := fs.ReadFile(kfs, k.Vmlinuz); err != nil || string(b) != fakeBzImage() {
			t.Errorf("%s: vmlinuz: %v", pre, err)
		}
		// The same tree as ExtractKernel writes.
		dir := filepath.Join(t.TempDir(), "k")
		if p, err = openBytes(t, d); err != nil {
			t.Fatal(err)
		}
		if _, err := ExtractKernel(context.Background(), p, dir); err != nil {
			t.Fatal(err)
		}
		if got, want := fsTree(t, kfs), tree(t, dir); !equal(got, want) {
			t.Errorf("%s: spooled %q, extracted %q", pre, got, want)
		}
		mfs, err := fs.Sub(kfs, k.ModulesDir)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fs.ReadDir(mfs, ".")
		if err != nil || len(ents) != 2 || ents[0].Name() != "kernel" || !ents[0].IsDir() || ents[1].Name() != "modules.builtin" {
			t.Errorf("%s: modules tree %v, %v", pre, ents, err)
		}
	}
}
