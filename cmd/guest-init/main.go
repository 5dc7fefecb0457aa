// Command guest-init is the /init of an imagebuilder initramfs for a
// dm-verity protected root. As PID 1 it mounts devtmpfs, proc and sysfs,
// loads the kernel modules listed in /etc/initrd/modules.order (in order,
// with finit_module), reads the ibroot.* parameters from the kernel command
// line, waits (bounded) for the disk whose GPT holds the data and hash
// partitions named by the two halves of the root hash, creates the
// dm-verity device through device-mapper ioctls, mounts it read-only (erofs,
// ext4 or squashfs, recognised by magic), moves /dev, /proc and /sys into
// it, deletes the initramfs contents, switches root and executes
// /sbin/init. Any failure prints one line on the console and powers the
// machine off: there is no shell and no endless wait.
//
// The kernel command line parameters (ibroot.*) are pkg/ibroot's; the
// boot contract is docs/guest-init.md.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/ibroot"
	"golang.org/x/sys/unix"
)

const (
	orderFile = "/etc/initrd/modules.order"
	newRoot   = "/ibroot"
	dmName    = "ibroot"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "ibroot: "+format+"\n", args...)
}

// fail prints the reason on the console and powers off.
func fail(err error) {
	logf("FATAL: %v; powering off", err)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Only reached if the reboot system call failed: exiting PID 1 makes
	// the kernel panic, which panic= turns into a reboot.
	os.Exit(1)
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guest-init: must run as PID 1 (the /init of an initramfs)")
		os.Exit(2)
	}
	// A Go panic would print a stack trace and end PID 1, which panics the
	// kernel: report it as one line and power off like any other failure.
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("internal error: %v", r))
		}
	}()
	fail(run())
}

// run returns only on failure: on success it executes the new root's init.
func run() error {
	if err := mountEarly(); err != nil {
		return err
	}
	ensureConsole()
	// A kernel panic (dm-verity corruption) must never hang the VM.
	if b, err := os.ReadFile("/proc/sys/kernel/panic"); err == nil && strings.TrimSpace(string(b)) == "0" {
		os.WriteFile("/proc/sys/kernel/panic", []byte("-1"), 0)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read /proc/cmdline: %w", err)
	}
	p, err := ibroot.Parse(string(cmdline))
	if err != nil {
		return err
	}
	if err := loadModules(orderFile); err != nil {
		return err
	}
	disk, dataPart, hashPart, err := waitDisk(p)
	if err != nil {
		return err
	}
	dev, err := dmCreateVerity(dmName, "IBROOT-"+uuidString(p.RootHash[:16]), p.Sectors(), p.VerityTable(dataPart.dev, hashPart.dev))
	if err != nil {
		return fmt.Errorf("dm-verity on %s (data %s, hash %s): %w", disk, dataPart.name, hashPart.name, err)
	}
	node := fmt.Sprintf("/dev/dm-%d", unix.Minor(dev))
	if _, err := os.Stat(node); err != nil {
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(dev)); err != nil && err != unix.EEXIST {
			return fmt.Errorf("create %s: %w", node, err)
		}
	}
	fstype, err := detectFS(node)
	if err != nil {
		return err
	}
	if p.FSType != "" && p.FSType != fstype {
		return fmt.Errorf("ibroot.fstype=%s but %s holds %s", p.FSType, node, fstype)
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(node, newRoot, fstype, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s, read-only) on %s: %w", node, fstype, newRoot, err)
	}
	logf("root %x... verified by dm-verity (%s, %s), %s mounted read-only from %s (%s, %s)",
		p.RootHash[:8], p.Alg, policyName(p.Corruption), fstype, node, dataPart.name, hashPart.name)
	if err := switchRoot(newRoot); err != nil {
		return err
	}
	if _, err := os.Stat(p.Init); err != nil {
		return fmt.Errorf("init %s in the new root: %w", p.Init, err)
	}
	argv := append([]string{p.Init}, os.Args[1:]...)
	err = unix.Exec(p.Init, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", p.Init, err)
}

func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func policyName(p string) string {
	if p == ibroot.CorruptionPanic {
		return "panic_on_corruption"
	}
	return "EIO on corruption"
}

func mountEarly() error {
	// The flags systemd itself uses for these (it keeps mounts it finds):
	// no device nodes on proc and sysfs.
	for _, m := range []struct {
		src, dst, fs string
		flags        uintptr
	}{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, m.flags, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dst, err)
		}
	}
	return nil
}

// ensureConsole makes fds 0-2 the console when the kernel could not open it.
func ensureConsole() {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		unix.Dup2(fd, i)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// loadModules loads the modules of the order file; a missing file means
// none are needed.
func loadModules(name string) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		optional := len(f) > 1 && f[1] == "optional"
		if err := loadModule(f[0]); err != nil {
			if optional {
				if !errors.Is(err, unix.ENODEV) {
					logf("optional module %s not loaded: %v", filepath.Base(f[0]), err)
				}
				continue
			}
			return fmt.Errorf("load module %s: %w", f[0], err)
		}
	}
	return nil
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.FinitModule(fd, "", 0); err != nil && err != unix.EEXIST {
		return err
	}
	return nil
}

type part struct {
	name string // "vda1"
	dev  string // "254:1"
	size uint64 // bytes
}

// waitDisk polls /sys/block until a disk's GPT holds both partitions, or
// the timeout passes.
func waitDisk(p *ibroot.Params) (disk string, data, hash part, err error) {
	deadline := time.Now().Add(time.Duration(p.Timeout) * time.Second)
	dataUUID, hashUUID := p.DataPartUUID(), p.HashPartUUID()
	var last error
	for {
		disk, data, hash, err = findDisk(p)
		if err == nil {
			break
		}
		if !errors.Is(err, errNotFound) {
			return "", part{}, part{}, err
		}
		last = err
		if time.Now().After(deadline) {
			return "", part{}, part{}, fmt.Errorf("no disk with GPT partitions %s (data) and %s (hash) appeared within %ds (%v)",
				uuidString(dataUUID[:]), uuidString(hashUUID[:]), p.Timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if need := p.DataBlocks * uint64(p.DataBlockSize); data.size < need {
		return "", part{}, part{}, fmt.Errorf("data partition %s has %d bytes, ibroot.blocks=%d x ibroot.bs=%d needs %d", data.name, data.size, p.DataBlocks, p.DataBlockSize, need)
	}
	if need := (p.HashStart + 1) * uint64(p.HashBlockSize); hash.size < need {
		return "", part{}, part{}, fmt.Errorf("hash partition %s has %d bytes, ibroot.hashstart=%d needs at least %d", hash.name, hash.size, p.HashStart, need)
	}
	return disk, data, hash, nil
}

var errNotFound = errors.New("not found")

func readSys(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func findDisk(p *ibroot.Params) (string, part, part, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return "", part{}, part{}, fmt.Errorf("read /sys/block: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "dm-") || strings.HasPrefix(n, "zram") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	type match struct {
		disk       string
		data, hash part
	}
	var found []match
	disks := 0
	for _, n := range names {
		sector, _ := strconv.Atoi(readSys("/sys/block/" + n + "/queue/logical_block_size"))
		if sector == 0 {
			sector = 512
		}
		f, err := os.Open("/dev/" + n)
		if err != nil {
			continue
		}
		disks++
		size, err := f.Seek(0, io.SeekEnd)
		var tab *gpt.Table
		if err == nil {
			tab, err = gpt.Read(f, size, sector)
		}
		f.Close()
		if err != nil {
			continue
		}
		dataUUID, hashUUID := p.DataPartUUID(), p.HashPartUUID()
		var dn, hn int
		for _, gp := range tab.Partitions {
			if gp.UUID == dataUUID {
				dn = gp.Number
			}
			if gp.UUID == hashUUID {
				hn = gp.Number
			}
		}
		if dn == 0 || hn == 0 {
			continue
		}
		d, ok1 := sysPart(n, dn)
		h, ok2 := sysPart(n, hn)
		if !ok1 || !ok2 {
			return "", part{}, part{}, fmt.Errorf("%w: %s has the partitions but the kernel has not listed them yet", errNotFound, n)
		}
		found = append(found, match{n, d, h})
	}
	switch len(found) {
	case 0:
		return "", part{}, part{}, fmt.Errorf("%w: %d disk(s) checked", errNotFound, disks)
	case 1:
		return found[0].disk, found[0].data, found[0].hash, nil
	}
	return "", part{}, part{}, fmt.Errorf("several disks (%s, %s) hold the verity partitions", found[0].disk, found[1].disk)
}

// sysPart finds partition number n of disk in sysfs.
func sysPart(disk string, n int) (part, bool) {
	ents, err := os.ReadDir("/sys/block/" + disk)
	if err != nil {
		return part{}, false
	}
	for _, e := range ents {
		dir := "/sys/block/" + disk + "/" + e.Name()
		if readSys(dir+"/partition") != strconv.Itoa(n) {
			continue
		}
		dev := readSys(dir + "/dev")
		sectors, err := strconv.ParseUint(readSys(dir+"/size"), 10, 64)
		if dev == "" || err != nil {
			return part{}, false
		}
		return part{name: e.Name(), dev: dev, size: sectors * 512}, true
	}
	return part{}, false
}

// detectFS recognises erofs, ext4 and squashfs by their superblock magic.
func detectFS(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "", fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	return fsMagic(b)
}

func fsMagic(b []byte) (string, error) {
	le := binary.LittleEndian
	switch {
	case le.Uint32(b[1024:]) == 0xE0F5E1E2:
		return "erofs", nil
	case le.Uint16(b[1024+56:]) == 0xEF53:
		return "ext4", nil
	case string(b[:4]) == "hsqs":
		return "squashfs", nil
	}
	return "", errors.New("root device holds no erofs, ext4 or squashfs file system")
}

// switchRoot moves /dev, /proc and /sys into root, deletes the initramfs
// contents (as switch_root does: they would otherwise stay in memory),
// and makes root the new /.
func switchRoot(root string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(m, root+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to the new root: %w (does the root have %s?)", m, err, m)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return err
	}
	freeInitramfs("/", st.Dev, root)
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// freeInitramfs deletes everything below dir on the device dev except the
// new root; errors are ignored (nothing depends on it).
func freeInitramfs(dir string, dev uint64, keep string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == keep {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if e.IsDir() {
			freeInitramfs(p, dev, keep)
			unix.Rmdir(p)
		} else {
			unix.Unlink(p)
		}
	}
}
