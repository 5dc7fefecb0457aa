package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// TestGuestInitBoot boots the real Debian kernel
// (scripts/fixtures/debian-kernel.sh) with an initrd built by pkg/initrd
// around the guest init (cmd/guest-init), and a GPT disk holding an erofs
// root (mkfs.erofs) and its dm-verity hash tree (pkg/verity, checked with
// veritysetup verify), four times under QEMU TCG: the verity root boots to
// a marker program (testdata/marker) as PID 1; a flipped data byte and a
// wrong root hash stop the kernel with dm-verity's corruption error and
// never run the marker; a missing disk ends with the init's FATAL line.
func TestGuestInitBoot(t *testing.T) {
	needTools(t, qemuBinary, "mkfs.erofs", "veritysetup", "sgdisk")
	kernel := fixtures.DebianKernel(t)
	dir := t.TempDir()

	// The init, built as 'make build' builds it, and the marker.
	initBin := buildGuestInit(t, dir)
	if st, err := os.Stat(initBin); err != nil {
		t.Fatal(err)
	} else if st.Size() >= 3<<20 {
		t.Errorf("guest-init is %d bytes, want < 3 MiB", st.Size())
	}
	rootDir := filepath.Join(dir, "rootfs")
	for _, d := range []string{"sbin", "dev", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	goBuild(t, "./e2e/testdata/marker", filepath.Join(rootDir, "sbin", "init"))
	// Filler so the tree spans many data blocks.
	filler := bytes.Repeat([]byte("imagebuilder verity root filler\n"), 1<<15)
	if err := os.WriteFile(filepath.Join(rootDir, "etc", "filler"), filler, 0o644); err != nil {
		t.Fatal(err)
	}

	// The initrd: modules for virtio-blk, dm-verity and erofs, and /init.
	// zstd for two boots, gzip (our parallel deflate) for the other two:
	// the kernel's own decompressors must unpack both.
	imgs := map[initrd.Compression]string{}
	for _, c := range []initrd.Compression{initrd.Zstd, initrd.Gzip} {
		imgs[c] = filepath.Join(dir, "initrd-"+string(c)+".img")
		f, err := os.Create(imgs[c])
		if err != nil {
			t.Fatal(err)
		}
		_, err = initrd.Build(context.Background(), initrd.Config{
			Modules:     initrd.Modules{Dir: kernel.ModulesDir, Names: []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"}},
			Init:        initrd.Init{Path: initBin, Skeleton: true},
			Compression: c,
		}, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	good := makeVerityDisk(t, mkdir(t, dir, "good"), rootDir, func(r string) string { return r })
	const timeout = 150 * time.Second // generous: TCG on a loaded 2-core machine
	boot := func(t *testing.T, initrdPath, disk, cmdline string) string {
		return runVM(t, vmConfig{Kernel: kernel.Vmlinuz, Initrd: initrdPath, Disk: disk, Cmdline: cmdline, Timeout: timeout})
	}

	t.Run("verity-root", func(t *testing.T) {
		out := boot(t, imgs[initrd.Zstd], good.Path, ibrootCmdline(good.RootHash, good.Salt, good.DataBlocks, ""))
		if !strings.Contains(out, "MARKER OK") {
			t.Fatalf("no MARKER OK on the console:\n%s", out)
		}
		if !strings.Contains(out, "ibroot: root ") {
			t.Errorf("no ibroot success line:\n%s", out)
		}
		t.Log(grep(out, "ibroot:|MARKER"))
	})

	t.Run("flipped-data-byte", func(t *testing.T) {
		bad := filepath.Join(dir, "corrupt.img")
		b, err := os.ReadFile(good.Path)
		if err != nil {
			t.Fatal(err)
		}
		// Block 0 holds the erofs superblock (at 1024): it is read first.
		b[good.DataOffset+2000] ^= 0x01
		if err := os.WriteFile(bad, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out := boot(t, imgs[initrd.Zstd], bad, ibrootCmdline(good.RootHash, good.Salt, good.DataBlocks, ""))
		if strings.Contains(out, "MARKER") {
			t.Fatalf("corrupted root booted:\n%s", out)
		}
		if !regexp.MustCompile(`data block 0 is corrupted`).MatchString(out) {
			t.Fatalf("no dm-verity corruption error:\n%s", out)
		}
		t.Log(grep(out, "ibroot:|verity|panic"))
	})

	t.Run("wrong-root-hash", func(t *testing.T) {
		// The disk's partitions are named after the hash on the command
		// line, but its tree has another root: what a swapped disk looks like.
		wh := flipHex(good.RootHash, 5)
		d := makeVerityDisk(t, mkdir(t, dir, "wrong"), rootDir, func(string) string { return wh })
		out := boot(t, imgs[initrd.Gzip], d.Path, ibrootCmdline(wh, d.Salt, d.DataBlocks, ""))
		if strings.Contains(out, "MARKER") {
			t.Fatalf("root with a wrong hash booted:\n%s", out)
		}
		if !regexp.MustCompile(`metadata block \d+ is corrupted|data block \d+ is corrupted`).MatchString(out) {
			t.Fatalf("no dm-verity error:\n%s", out)
		}
		t.Log(grep(out, "ibroot:|verity|panic"))
	})

	t.Run("missing-disk", func(t *testing.T) {
		out := boot(t, imgs[initrd.Gzip], "", ibrootCmdline(good.RootHash, good.Salt, good.DataBlocks, "ibroot.timeout=3"))
		if !strings.Contains(out, "ibroot: FATAL: no disk with GPT partitions "+uuidOf(good.RootHash[:32])) {
			t.Fatalf("no missing-disk error:\n%s", out)
		}
		t.Log(grep(out, "ibroot:"))
	})
}

func mkdir(t *testing.T, parts ...string) string {
	t.Helper()
	p := filepath.Join(parts...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// flipHex changes hex digit i of s to another hex digit.
func flipHex(s string, i int) string {
	b := []byte(s)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}
