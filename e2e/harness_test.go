package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// The harness: skipping, building this module's binaries, and running a
// VM under QEMU TCG while reading its serial console.

const qemuBinary = "qemu-system-x86_64"

// needTools skips the test under -short and, for each tool not on PATH,
// fails it under CI and skips it otherwise (fixtures.Missing).
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped under -short")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fixtures.Missing(t, "%s missing (make deps installs it)", tool)
		}
	}
}

// repoRoot is the module's root directory, where go build runs.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s: the e2e tests run from the e2e directory", dir)
	}
	return dir
}

// goBuild builds the main package pkg ("./cmd/guest-init", relative to the
// repository) into out as 'make build' does: static (CGO_ENABLED=0),
// -trimpath, without VCS stamping, with an empty build id.
func goBuild(t testing.TB, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-buildid= -s -w", "-o", out, pkg)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// buildGuestInit builds the guest init (cmd/guest-init, the initrd's /init)
// into dir.
func buildGuestInit(t testing.TB, dir string) string {
	return goBuild(t, "./cmd/guest-init", filepath.Join(dir, "guest-init"))
}

// buildImagebuilder builds the imagebuilder command into dir.
func buildImagebuilder(t testing.TB, dir string) string {
	return goBuild(t, "./cmd/imagebuilder", filepath.Join(dir, "imagebuilder"))
}

// buildStandin builds the kata-agent stand-in (examples/kata-agent-standin)
// into dir. Started by kata-agent.service it prints standinReady and exits
// 3, and the unit's FailureAction=poweroff ends the VM.
func buildStandin(t testing.TB, dir string) string {
	return goBuild(t, "./examples/kata-agent-standin", filepath.Join(dir, "kata-agent-standin"))
}

// standinReady starts the line the stand-in prints
// (examples/kata-agent-standin's ReadyLine).
const standinReady = "KATA-AGENT-STAND-IN-READY"

// vmConfig is a direct kernel boot under qemu-system-x86_64 -accel tcg.
type vmConfig struct {
	Kernel  string // the bzImage
	Initrd  string // "" for none
	Cmdline string
	// Disk is a raw disk image, attached read-only as a virtio-blk disk;
	// "" for none.
	Disk string
	// MemoryMiB is the guest's memory; 0 means 1024.
	MemoryMiB int
	// Timeout bounds the VM's whole run: it is killed when it passes.
	// Required; TCG on a loaded 2-core machine is slow, so be generous and
	// catch stalls from the console instead.
	Timeout time.Duration
}

// consoleLine is one line of the serial console, with ANSI escapes and
// carriage returns removed, and the time since QEMU started when it
// arrived.
type consoleLine struct {
	Text string
	At   time.Duration
}

// errVMStopped is returned by vm.waitFor when the VM stopped (powered off,
// rebooted or panicked: QEMU runs with -no-reboot) without the line.
var errVMStopped = errors.New("VM stopped")

// vm is a running QEMU. Its console is read as it comes; waitFor waits for
// a line, wait for the end. The VM is killed when its timeout passes and
// when the test ends.
type vm struct {
	name    string // the program, for messages
	timeout time.Duration
	start   time.Time

	mu      sync.Mutex
	raw     []byte        // everything QEMU wrote (console and QEMU's own messages)
	lines   []consoleLine // complete lines of raw, cleaned
	partial int           // raw[partial:] is the line being written
	changed chan struct{} // closed and replaced when lines grows or the VM stops

	stopped  bool          // QEMU has exited and its output is read
	done     chan struct{} // closed once stopped is set
	exitErr  error         // from cmd.Wait
	timedOut bool          // killed because cfg.Timeout passed
	elapsed  time.Duration // QEMU's run time
}

// startVM starts QEMU with cfg: no default devices, the serial console on
// stdout, -no-reboot (a reboot or panic=-1 ends QEMU). It skips or fails
// the test as needTools does when QEMU is missing.
func startVM(t testing.TB, cfg vmConfig) *vm {
	t.Helper()
	needTools(t, qemuBinary)
	if cfg.Timeout <= 0 {
		t.Fatal("vmConfig.Timeout is required")
	}
	mem := cfg.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	args := []string{"-accel", "tcg", "-m", fmt.Sprint(mem), "-nographic", "-nodefaults", "-no-reboot",
		"-serial", "stdio", "-kernel", cfg.Kernel, "-append", cfg.Cmdline}
	if cfg.Initrd != "" {
		args = append(args, "-initrd", cfg.Initrd)
	}
	if cfg.Disk != "" {
		args = append(args, "-drive", "file="+cfg.Disk+",format=raw,if=virtio,readonly=on")
	}
	return startConsole(t, cfg.Timeout, qemuBinary, args...)
}

// startConsole starts a program whose stdout and stderr are a console (QEMU
// with -serial stdio), killed when timeout passes or the test ends.
func startConsole(t testing.TB, timeout time.Duration, name string, args ...string) *vm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, name, args...)
	// Its own process group, killed whole on timeout or at the test's end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, pw, err := os.Pipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	v := &vm{name: name, timeout: timeout, changed: make(chan struct{}), done: make(chan struct{})}
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		pr.Close()
		pw.Close()
		t.Fatalf("%s: %v", name, err)
	}
	pw.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 64<<10)
		for {
			n, err := pr.Read(buf)
			v.add(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() {
		werr := cmd.Wait()
		// The pipe ends when the last holder of its write end exits:
		// normally the process itself; do not wait long for any other.
		select {
		case <-read:
		case <-time.After(2 * time.Second):
			pr.Close()
			<-read
		}
		pr.Close()
		v.mu.Lock()
		v.elapsed = time.Since(v.start)
		v.exitErr = werr
		v.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		v.flushPartial()
		v.stopped = true
		close(v.changed)
		v.mu.Unlock()
		close(v.done)
	}()
	t.Cleanup(func() {
		cancel() // kills the VM if it still runs
		<-v.done
	})
	return v
}

// add appends console output and splits off complete lines.
func (v *vm) add(b []byte) {
	if len(b) == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.raw = append(v.raw, b...)
	grew := false
	for {
		nl := bytes.IndexByte(v.raw[v.partial:], '\n')
		if nl < 0 {
			break
		}
		v.appendLine(v.raw[v.partial : v.partial+nl])
		v.partial += nl + 1
		grew = true
	}
	if grew {
		close(v.changed)
		v.changed = make(chan struct{})
	}
}

// flushPartial makes the unterminated last line, if any, a line.
func (v *vm) flushPartial() {
	if v.partial < len(v.raw) {
		v.appendLine(v.raw[v.partial:])
		v.partial = len(v.raw)
	}
}

func (v *vm) appendLine(b []byte) {
	text := strings.ReplaceAll(stripANSI(string(b)), "\r", "")
	v.lines = append(v.lines, consoleLine{Text: text, At: time.Since(v.start)})
}

// waitFor waits for a console line that re matches, searching the whole
// console from its start, and returns the first one. It returns an error
// wrapping errVMStopped when the VM stopped without such a line, and
// another error when the VM's timeout passed.
func (v *vm) waitFor(re *regexp.Regexp) (consoleLine, error) {
	seen := 0
	for {
		v.mu.Lock()
		for ; seen < len(v.lines); seen++ {
			if re.MatchString(v.lines[seen].Text) {
				l := v.lines[seen]
				v.mu.Unlock()
				return l, nil
			}
		}
		stopped, changed := v.stopped, v.changed
		v.mu.Unlock()
		if stopped {
			if err := v.endErr(); err != nil {
				return consoleLine{}, fmt.Errorf("no console line matching %q: %w", re, err)
			}
			return consoleLine{}, fmt.Errorf("no console line matching %q: %w after %.1fs", re, errVMStopped, v.elapsed.Seconds())
		}
		<-changed
	}
}

// wait waits until the VM stops and returns QEMU's run time. It returns an
// error when the timeout killed the VM or QEMU failed.
func (v *vm) wait() (time.Duration, error) {
	<-v.done
	return v.elapsed, v.endErr()
}

// endErr says why QEMU ended, nil for a VM that stopped by itself. Call
// it after v.done is closed.
func (v *vm) endErr() error {
	switch {
	case v.timedOut:
		return fmt.Errorf("VM still running after %v, killed", v.timeout)
	case v.exitErr != nil:
		return fmt.Errorf("%s: %w", v.name, v.exitErr)
	}
	return nil
}

// console returns the console so far, cleaned as its lines are, for
// failure messages and checks on the whole boot log.
func (v *vm) console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	for _, l := range v.lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	if v.partial < len(v.raw) {
		b.WriteString(strings.ReplaceAll(stripANSI(string(v.raw[v.partial:])), "\r", ""))
	}
	return b.String()
}

// consoleTail returns the last 3000 bytes of the console.
func (v *vm) consoleTail() string {
	s := v.console()
	if len(s) > 3000 {
		s = "...\n" + s[len(s)-3000:]
	}
	return s
}

// runVM boots cfg until the VM stops by itself and returns its console; it
// fails the test when the timeout kills it or QEMU fails.
func runVM(t testing.TB, cfg vmConfig) string {
	t.Helper()
	v := startVM(t, cfg)
	took, err := v.wait()
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, v.console())
	}
	t.Logf("VM stopped after %.1fs", took.Seconds())
	return v.console()
}

// stripANSI removes terminal escapes: the colour sequences systemd writes
// (CSI, ESC [ ... final byte) and two-byte ones such as the reset (ESC c)
// SeaBIOS writes before the kernel starts.
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			out.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < '@' || s[j] > '~') {
				j++
			}
			i = j
		} else {
			i++ // ESC and the one byte after it
		}
	}
	return out.String()
}

// grep returns the lines of out that pat matches, for test logs.
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

// loadAvg returns the 1-minute load average, to read boot times against.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b) + " unknown")[0]
}

// verityDisk is a disk made by makeVerityDisk.
type verityDisk struct {
	Path       string
	RootHash   string // hex
	Salt       string // hex
	DataBlocks int64  // 4096-byte blocks of the erofs
	DataOffset int64  // byte offset of the data partition in the disk
}

// The GPT partition types of systemd's Discoverable Partitions
// Specification for an x86-64 root and its verity tree.
const (
	typeRoot       = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	typeRootVerity = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
)

// uuidOf formats 32 hex digits as a UUID.
func uuidOf(hexs string) string {
	return hexs[0:8] + "-" + hexs[8:12] + "-" + hexs[12:16] + "-" + hexs[16:20] + "-" + hexs[20:32]
}

// makeVerityDisk makes dir/disk.img with the reference tools where they
// exist, independently of pkg/rootfs: an erofs of rootDir (mkfs.erofs), its
// dm-verity tree with a superblock (pkg/verity, checked with veritysetup
// verify) and a GPT holding both (sgdisk), the partitions named by the
// halves of partHash(root hash) (the root hash itself unless a test wants a
// disk that does not match its tree). The verity parameters are those of
// ibrootCmdline.
func makeVerityDisk(t testing.TB, dir, rootDir string, partHash func(root string) string) verityDisk {
	t.Helper()
	needTools(t, "mkfs.erofs", "veritysetup", "sgdisk")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	data := filepath.Join(dir, "root.erofs")
	hash := filepath.Join(dir, "root.verity")
	run("mkfs.erofs", "-T0", "-U", "6b1e6a2c-4f0a-4b7e-9a55-0c2b8b7f3e01", "--all-root", data, rootDir)
	salt := sha256.Sum256([]byte("ibroot-test-salt"))
	params := verity.DefaultParams()
	params.Salt = salt[:]
	copy(params.UUID[:], []byte("ibroot-test-uuid"))
	df, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	dst, err := df.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hf, err := os.Create(hash)
	if err != nil {
		t.Fatal(err)
	}
	res, err := verity.Format(context.Background(), df, dst.Size(), hf, params)
	if cerr := hf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.HashStartBlock != 1 {
		t.Fatalf("hash start block %d, ibrootCmdline says 1", res.HashStartBlock)
	}
	root := res.RootHashHex()
	// Cross-check against veritysetup, the reference tool.
	run("veritysetup", "verify", data, hash, root)
	ph := partHash(root)
	hst, err := os.Stat(hash)
	if err != nil {
		t.Fatal(err)
	}
	sec := func(n int64) int64 { return (n + 511) / 512 }
	align := func(n int64) int64 { return (n + 2047) / 2048 * 2048 }
	p1 := int64(2048)
	p1end := p1 + align(sec(dst.Size())) - 1
	p2 := p1end + 1
	p2end := p2 + align(sec(hst.Size())) - 1
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, (p2end+1+2048)*512); err != nil {
		t.Fatal(err)
	}
	run("sgdisk", "-o",
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
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return verityDisk{Path: disk, RootHash: root, Salt: hex.EncodeToString(salt[:]), DataBlocks: dst.Size() / 4096, DataOffset: p1 * 512}
}

// ibrootCmdline is the kernel command line that opens a verity root made
// by makeVerityDisk with the guest init, followed by extra.
func ibrootCmdline(rootHash, salt string, blocks int64, extra string) string {
	return fmt.Sprintf("console=ttyS0 panic=-1 quiet ibroot.hash=%s ibroot.salt=%s ibroot.alg=sha256 ibroot.blocks=%d ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs %s",
		rootHash, salt, blocks, extra)
}
