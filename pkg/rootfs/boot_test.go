package rootfs

import (
	"bufio"
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
)

// bootModules are the Debian 6.1 modules that reach an erofs on virtio-blk,
// in load order (crc32c for the superblock checksum).
var bootModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
	"crypto/crc32c_generic", "lib/libcrc32c", "fs/erofs/erofs",
}

// bootInit mounts partition 1 with the Linux erofs driver and prints every
// file as the kernel sees it: "@@ path|rawmode|uid|gid|size|nlink|extra".
const bootInit = `#!/bin/busybox sh
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

// TestKernelMount boots the Debian kernel under QEMU and checks that Linux's
// own erofs driver mounts partition 1 and sees exactly the tree go-erofs
// reads back (modes, owners, sizes, link counts, targets, device numbers,
// every file's sha256).
func TestKernelMount(t *testing.T) {
	if testing.Short() {
		t.Skip("QEMU boot skipped with -short")
	}
	qemu := needTool(t, "qemu-system-x86_64")
	needTool(t, "cpio")
	busybox := needTool(t, "busybox")
	kernel := fixtures.DebianKernel(t)
	mods := filepath.Join(kernel.ModulesDir, "kernel")

	dir := t.TempDir()
	opts, _ := smallBuild(t, dir)
	img := filepath.Join(dir, "rootfs.img")
	if _, err := buildFile(t, opts, img); err != nil {
		t.Fatal(err)
	}
	want := readBack(t, img)

	// The initrd: busybox, the modules, the init script.
	root := filepath.Join(dir, "initrd")
	for _, d := range []string{"bin", "lib"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	b, _ := os.ReadFile(busybox)
	os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755)
	os.WriteFile(filepath.Join(root, "init"), []byte(bootInit), 0o755)
	var names []string
	for _, m := range bootModules {
		b, err := os.ReadFile(filepath.Join(mods, m+".ko"))
		if err != nil {
			continue // built in
		}
		name := filepath.Base(m)
		os.WriteFile(filepath.Join(root, "lib", name+".ko"), b, 0o644)
		names = append(names, name)
	}
	os.WriteFile(filepath.Join(root, "modules"), []byte(strings.Join(names, "\n")+"\n"), 0o644)
	initrd := filepath.Join(dir, "initrd.cpio")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+initrd)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	q := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", kernel.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3",
		"-drive", "file="+img+",format=raw,if=virtio,readonly=on")
	out, err := q.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("QEMU timed out:\n%s", tail(out))
	}
	got := map[string]string{}
	done := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.Contains(line, "@@MOUNTFAIL"):
			t.Fatalf("the kernel could not mount the erofs:\n%s", tail(out))
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
		t.Fatalf("no listing from the guest (%v):\n%s", err, tail(out))
	}
	// The kernel sees no xattrs through stat; drop them from go-erofs's view.
	for p, d := range want {
		if i := strings.Index(d, " xattrs="); i >= 0 {
			want[p] = d[:i]
		}
	}
	compareTrees(t, got, want)
}

// kernelDesc turns one guest line into readBack's description format.
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
	switch mode & sIFMT {
	case sIFLNK:
		desc += " -> " + f[6]
	case sIFREG:
		desc += fmt.Sprintf(" size=%s nlink=%s sha=%s", f[4], f[5], f[6])
	case sIFCHR, sIFBLK:
		var ma, mi uint64
		if x := strings.SplitN(f[6], ":", 2); len(x) == 2 {
			ma, _ = strconv.ParseUint(x[0], 16, 32)
			mi, _ = strconv.ParseUint(x[1], 16, 32)
		}
		desc += fmt.Sprintf(" dev=%d:%d", ma, mi)
	}
	return p, desc, nil
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
