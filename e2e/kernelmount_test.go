package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// kernelMountModules are the Debian 6.1 modules that reach an erofs on
// virtio-blk, in load order (crc32c for the superblock checksum).
var kernelMountModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
	"crypto/crc32c_generic", "lib/libcrc32c", "fs/erofs/erofs",
}

// kernelMountInit mounts partition 1 with the Linux erofs driver and prints
// every file as the kernel sees it: "@@ path|rawmode|uid|gid|size|nlink|extra".
const kernelMountInit = `#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /mnt
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /lib/$m.ko 2>/dev/null; done
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if mount -t erofs -o ro /dev/vda1 /mnt; then
  cd /mnt
  find . | sort | while read -r f; do
    extra=""
    if [ -L "$f" ]; then extra="$(readlink "$f")"
    elif [ -b "$f" ] || [ -c "$f" ]; then extra="$(stat -c '%t:%T' "$f")"
    elif [ -f "$f" ]; then extra="$(sha256sum "$f" | cut -d' ' -f1)"
    fi
    echo "@@ $f|$(stat -c '%f|%u|%g|%s|%h' "$f")|$extra"
  done
  echo "@@DONE"
else
  echo "@@MOUNTFAIL"
fi
poweroff -f
`

// TestKernelMount builds the small fixture (internal/rootfstest) with
// rootfs.Build, boots the Debian kernel under QEMU with a busybox initrd
// (cpio), and checks that Linux's own erofs driver mounts partition 1 and
// sees exactly the tree go-erofs reads back (modes, owners, sizes, link
// counts, targets, device numbers, every file's sha256).
func TestKernelMount(t *testing.T) {
	needTools(t, qemuBinary, "cpio", "busybox")
	busybox, _ := exec.LookPath("busybox")
	kernel := fixtures.DebianKernel(t)
	mods := filepath.Join(kernel.ModulesDir, "kernel")
	dir := t.TempDir()

	// The disk: the small fixture as pkg/rootfs's golden test builds it.
	opts := rootfs.Options{Seed: "imagebuilder-test", SourceDateEpoch: 1700000000}
	for i, l := range rootfstest.SmallLayers(t) {
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar", i))
		if err := os.WriteFile(p, l, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := source.Parse("tar:" + p)
		if err != nil {
			t.Fatal(err)
		}
		opts.Sources = append(opts.Sources, src)
	}
	opts.Agent = filepath.Join(dir, "kata-agent")
	if err := os.WriteFile(opts.Agent, []byte("#!/bin/sh\necho kata-agent stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rootfs.Build(context.Background(), opts, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	want := rootfstest.ReadBack(t, img)

	// The initrd: busybox, the modules, the init script.
	root := filepath.Join(dir, "initrd")
	write := func(name string, b []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	write("bin/busybox", b, 0o755)
	write("init", []byte(kernelMountInit), 0o755)
	var names []string
	for _, m := range kernelMountModules {
		b, err := os.ReadFile(filepath.Join(mods, m+".ko"))
		if err != nil {
			continue // built in
		}
		name := filepath.Base(m)
		write("lib/"+name+".ko", b, 0o644)
		names = append(names, name)
	}
	write("modules", []byte(strings.Join(names, "\n")+"\n"), 0o644)
	initrdPath := filepath.Join(dir, "initrd.cpio")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+initrdPath)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, out)
	}

	out := runVM(t, vmConfig{Kernel: kernel.Vmlinuz, Initrd: initrdPath, Disk: img,
		Cmdline: "console=ttyS0 panic=-1 quiet loglevel=3", MemoryMiB: 512, Timeout: 4 * time.Minute})
	got := map[string]string{}
	done := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, "@@MOUNTFAIL"):
			t.Fatalf("the kernel could not mount the erofs:\n%s", out)
		case strings.Contains(line, "@@DONE"):
			done = true
		case strings.Contains(line, "@@ "):
			// The console may put kernel messages before the marker.
			p, desc, err := kernelDesc(line[strings.Index(line, "@@ ")+3:])
			if err != nil {
				t.Fatalf("%v in %q", err, line)
			}
			got[p] = desc
		}
	}
	if !done {
		t.Fatalf("no listing from the guest:\n%s", out)
	}
	// The kernel shows no xattrs through stat; drop them from go-erofs's view.
	for p, d := range want {
		if i := strings.Index(d, " xattrs="); i >= 0 {
			want[p] = d[:i]
		}
	}
	rootfstest.CompareTrees(t, got, want)
	t.Logf("the kernel lists the %d files go-erofs reads, identically", len(got))
}

// kernelDesc turns one guest line into rootfstest.ReadBack's form.
func kernelDesc(line string) (string, string, error) {
	f := strings.SplitN(line, "|", 7)
	if len(f) != 7 {
		return "", "", fmt.Errorf("bad line")
	}
	p := "/" + strings.TrimPrefix(strings.TrimPrefix(f[0], "."), "/")
	mode, err := strconv.ParseUint(f[1], 16, 32)
	if err != nil {
		return "", "", err
	}
	desc := fmt.Sprintf("%06o %s:%s", mode, f[2], f[3])
	switch mode & erofs.S_IFMT {
	case erofs.S_IFLNK:
		desc += " -> " + f[6]
	case erofs.S_IFREG:
		desc += fmt.Sprintf(" size=%s nlink=%s sha=%s", f[4], f[5], f[6])
	case erofs.S_IFCHR, erofs.S_IFBLK:
		var ma, mi uint64
		if x := strings.SplitN(f[6], ":", 2); len(x) == 2 {
			ma, _ = strconv.ParseUint(x[0], 16, 32)
			mi, _ = strconv.ParseUint(x[1], 16, 32)
		}
		desc += fmt.Sprintf(" dev=%d:%d", ma, mi)
	}
	return p, desc, nil
}
