package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// Boot tests: a real Debian kernel (scripts/fixtures/debian-kernel.sh)
// with an initrd built by pkg/initrd around this init, and a GPT disk
// holding an erofs root (mkfs.erofs) and its dm-verity hash tree
// (pkg/verity, checked with veritysetup verify), under QEMU (TCG). The
// boot of the real Debian systemd image (this init, pkg/rootfs's disk, up
// to systemd's default target) is pkg/rootfs's TestSystemdBoot.

// needTools skips (or, under CI, fails) when a tool or fixture is missing.
func needBoot(t *testing.T) (vmlinuz, modDir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boot test skipped under -short")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.erofs", "veritysetup", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			fixtures.Missing(t, "%s missing (make deps installs it)", tool)
		}
	}
	k := fixtures.DebianKernel(t)
	return k.Vmlinuz, k.ModulesDir
}

func runCmd(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func goBuild(t *testing.T, pkgDir, out string) {
	t.Helper()
	runCmd(t, pkgDir, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-buildid= -s -w", "-o", out, ".")
}

// verityDisk describes a built test disk.
type verityDisk struct {
	path       string
	rootHash   string
	salt       string
	blocks     int64
	dataOffset int64 // byte offset of the data partition in the disk
}

const (
	typeRoot       = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	typeRootVerity = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
)

func uuidOf(hexs string) string {
	return hexs[0:8] + "-" + hexs[8:12] + "-" + hexs[12:16] + "-" + hexs[16:20] + "-" + hexs[20:32]
}

// makeDisk builds an erofs of rootDir, its verity tree (with superblock)
// and a GPT disk with both, named by partUUIDHash's halves (the root hash
// itself unless a test wants a mismatch).
func makeDisk(t *testing.T, dir, rootDir string, partHash func(root string) string) verityDisk {
	t.Helper()
	data := filepath.Join(dir, "root.erofs")
	hash := filepath.Join(dir, "root.verity")
	runCmd(t, dir, nil, "mkfs.erofs", "-T0", "-U", "6b1e6a2c-4f0a-4b7e-9a55-0c2b8b7f3e01", "--all-root", data, rootDir)
	salt := sha256.Sum256([]byte("ibroot-test-salt"))
	params := verity.DefaultParams()
	params.Salt = salt[:]
	copy(params.UUID[:], []byte("ibroot-test-uuid"))
	df, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	dst, _ := df.Stat()
	hf, err := os.Create(hash)
	if err != nil {
		t.Fatal(err)
	}
	res, err := verity.Format(df, dst.Size(), hf, params)
	if err != nil {
		t.Fatal(err)
	}
	hf.Close()
	if res.HashStartBlock != 1 {
		t.Fatalf("hash start block %d, the test's command line says 1", res.HashStartBlock)
	}
	// Cross-check against veritysetup, the reference tool.
	runCmd(t, dir, nil, "veritysetup", "verify", data, hash, res.RootHashHex())
	root := res.RootHashHex()
	ph := partHash(root)
	ds, _ := os.Stat(data)
	hs, _ := os.Stat(hash)
	sec := func(n int64) int64 { return (n + 511) / 512 }
	align := func(n int64) int64 { return (n + 2047) / 2048 * 2048 }
	p1 := int64(2048)
	p1end := p1 + align(sec(ds.Size())) - 1
	p2 := p1end + 1
	p2end := p2 + align(sec(hs.Size())) - 1
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, (p2end+1+2048)*512); err != nil {
		t.Fatal(err)
	}
	runCmd(t, dir, nil, "sgdisk", "-o",
		fmt.Sprintf("-n=1:%d:%d", p1, p1end), "-t=1:"+typeRoot, "-u=1:"+uuidOf(ph[:32]),
		fmt.Sprintf("-n=2:%d:%d", p2, p2end), "-t=2:"+typeRootVerity, "-u=2:"+uuidOf(ph[32:]),
		disk)
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, x := range []struct {
		name string
		off  int64
	}{{data, p1 * 512}, {hash, p2 * 512}} {
		b, err := os.ReadFile(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, x.off); err != nil {
			t.Fatal(err)
		}
	}
	return verityDisk{path: disk, rootHash: root, salt: hex.EncodeToString(salt[:]), blocks: ds.Size() / 4096, dataOffset: p1 * 512}
}

func cmdline(root, salt string, blocks int64, extra string) string {
	return fmt.Sprintf("console=ttyS0 panic=-1 quiet ibroot.hash=%s ibroot.salt=%s ibroot.alg=sha256 ibroot.blocks=%d ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs %s",
		root, salt, blocks, extra)
}

// boot runs QEMU until the VM stops (power off or reboot: -no-reboot) or
// the timeout passes, and returns the console output.
func boot(t *testing.T, vmlinuz, initrdPath, disk, kcmd string, timeout time.Duration) string {
	t.Helper()
	args := []string{"-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", vmlinuz, "-initrd", initrdPath, "-append", kcmd}
	if disk != "" {
		args = append(args, "-drive", "file="+disk+",format=raw,if=virtio,readonly=on")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("VM still running after %v; console:\n%s", timeout, out.String())
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out.String())
	}
	t.Logf("VM stopped after %.1fs", time.Since(start).Seconds())
	return out.String()
}

func TestBoot(t *testing.T) {
	vmlinuz, modDir := needBoot(t)
	dir := t.TempDir()
	repo, _ := filepath.Abs("../..")

	// The init and the marker, built as `make build` builds guest-init.
	initBin := filepath.Join(dir, "guest-init")
	goBuild(t, filepath.Join(repo, "cmd", "guest-init"), initBin)
	if st, _ := os.Stat(initBin); st.Size() >= 3<<20 {
		t.Errorf("guest-init is %d bytes, want < 3 MiB", st.Size())
	}
	rootDir := filepath.Join(dir, "rootfs")
	for _, d := range []string{"sbin", "dev", "proc", "sys", "etc"} {
		os.MkdirAll(filepath.Join(rootDir, d), 0o755)
	}
	goBuild(t, filepath.Join(repo, "cmd", "guest-init", "testdata", "marker"), filepath.Join(rootDir, "sbin", "init"))
	// Filler so the tree spans many data blocks.
	filler := bytes.Repeat([]byte("imagebuilder verity root filler\n"), 1<<15)
	os.WriteFile(filepath.Join(rootDir, "etc", "filler"), filler, 0o644)

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
			Modules:     initrd.Modules{Dir: modDir, Names: []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"}},
			Init:        initrd.Init{Path: initBin, Skeleton: true},
			Compression: c,
		}, f)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	img := imgs[initrd.Zstd]

	good := makeDisk(t, mkdir(t, dir, "good"), rootDir, func(r string) string { return r })
	const timeout = 150 * time.Second // generous: TCG on a loaded 2-core machine

	t.Run("verity-root", func(t *testing.T) {
		out := boot(t, vmlinuz, img, good.path, cmdline(good.rootHash, good.salt, good.blocks, ""), timeout)
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
		b, err := os.ReadFile(good.path)
		if err != nil {
			t.Fatal(err)
		}
		// Block 0 holds the erofs superblock (at 1024): it is read first.
		b[good.dataOffset+2000] ^= 0x01
		os.WriteFile(bad, b, 0o644)
		out := boot(t, vmlinuz, img, bad, cmdline(good.rootHash, good.salt, good.blocks, ""), timeout)
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
		wh := flipHex(good.rootHash, 5)
		d := makeDisk(t, mkdir(t, dir, "wrong"), rootDir, func(string) string { return wh })
		out := boot(t, vmlinuz, imgs[initrd.Gzip], d.path, cmdline(wh, d.salt, d.blocks, ""), timeout)
		if strings.Contains(out, "MARKER") {
			t.Fatalf("root with a wrong hash booted:\n%s", out)
		}
		if !regexp.MustCompile(`metadata block \d+ is corrupted|data block \d+ is corrupted`).MatchString(out) {
			t.Fatalf("no dm-verity error:\n%s", out)
		}
		t.Log(grep(out, "ibroot:|verity|panic"))
	})

	t.Run("missing-disk", func(t *testing.T) {
		out := boot(t, vmlinuz, imgs[initrd.Gzip], "", cmdline(good.rootHash, good.salt, good.blocks, "ibroot.timeout=3"), timeout)
		if !strings.Contains(out, "ibroot: FATAL: no disk with GPT partitions "+uuidOf(good.rootHash[:32])) {
			t.Fatalf("no missing-disk error:\n%s", out)
		}
		t.Log(grep(out, "ibroot:"))
	})
}

func mkdir(t *testing.T, parts ...string) string {
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

func grep(out, pat string) string {
	re := regexp.MustCompile(pat)
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			keep = append(keep, strings.TrimRight(l, "\r"))
		}
	}
	return strings.Join(keep, "\n")
}
