package rootfs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// TestSystemdBoot boots the Debian systemd image end to end: the project's
// guest init (cmd/guest-init) in an initrd made by 'imagebuilder initrd
// build' opens the verity root of this package's disk from the ibroot.*
// fragment of the description, systemd reaches the default target
// (kata-containers.target) with tmpfs on /tmp and /var, runs the agent (a
// stand-in that prints a marker and fails), and FailureAction=poweroff
// powers the VM off. The wall time from QEMU's start to the default target
// is logged (issue 6 asks for under 30 s on the reference machine); the
// test fails only beyond a generous bound, since TCG on a loaded shared
// machine varies, and on console lines that show systemd waiting (a job
// still running, a device timeout, a failed dependency).
func TestSystemdBoot(t *testing.T) {
	const (
		// QEMU start -> default target. About 20-40 s on the 2-core
		// machine; 96 s and 107 s were seen at load averages 10-12 (other
		// test runs, and go test ./... runs cmd/guest-init's boots at the
		// same time), so the bound is wide. Stalls such as systemd waiting
		// 90 s for a device are caught by the console checks below instead.
		targetBound = 180 * time.Second
		vmTimeout   = 5 * time.Minute // the whole boot, until power-off
	)
	fix := debianFixture(t)
	qemu := needTool(t, "qemu-system-x86_64")
	repo, _ := filepath.Abs("../..")
	kernel := fixtures.DebianKernel(t)
	dir := t.TempDir()
	gobuild := func(pkg, out string) {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	gobuild("./cmd/guest-init", filepath.Join(dir, "guest-init"))
	gobuild("./cmd/imagebuilder", filepath.Join(dir, "imagebuilder"))
	initrd := filepath.Join(dir, "initrd.img")
	out, err := exec.Command(filepath.Join(dir, "imagebuilder"), "initrd", "build",
		"--verity-init", filepath.Join(dir, "guest-init"),
		"--modules-dir", kernel.ModulesDir,
		"--module", "virtio_pci,virtio_blk,dm-verity,erofs", "--compress", "zstd", "-o", initrd).CombinedOutput()
	if err != nil {
		t.Fatalf("initrd build: %v\n%s", err, out)
	}

	agent := writeFile(t, filepath.Join(dir, "kata-agent"), []byte("#!/bin/sh\necho KATA-AGENT-STAND-IN-STARTED\nsleep 1\nexit 1\n"))
	os.Chmod(agent, 0o755)
	img := filepath.Join(dir, "rootfs.img")
	d, err := buildFile(t, Options{Sources: srcs(t, "oci-layout:"+filepath.Join(fix, "oci")), Agent: agent, Seed: "boot"}, img)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot",
		"-kernel", kernel.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 "+d.Cmdline.IBRoot,
		"-drive", "file="+img+",format=raw,if=virtio,readonly=on")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	// Read the console as it comes, noting when the default target is
	// reached; the VM then runs on until the agent's failure powers it off.
	// The 80-column console shortens the unit name ("kata-contai…"), so the
	// line is also matched by the unit's Description (kataContainersTarget).
	reached := regexp.MustCompile(`Reached target (kata-containers\.target|.* - Kata Containers Agent Target\.)`)
	var console []byte
	var toTarget time.Duration
	scanned := 0 // console[:scanned] holds complete lines already checked
	buf := make([]byte, 64<<10)
	for {
		n, rerr := pr.Read(buf)
		console = append(console, buf[:n]...)
		if nl := bytes.LastIndexByte(console, '\n'); toTarget == 0 && nl >= scanned {
			if reached.MatchString(stripANSI(string(console[scanned:nl]))) {
				toTarget = time.Since(start)
			}
			scanned = nl
		}
		if rerr != nil {
			break
		}
	}
	werr := cmd.Wait()
	total := time.Since(start)
	log := stripANSI(string(console))
	if ctx.Err() != nil {
		t.Fatalf("VM still running after %v:\n%s", vmTimeout, tail(console))
	}
	if werr != nil {
		t.Errorf("qemu: %v", werr)
	}
	switch {
	case toTarget == 0:
		t.Errorf("systemd never reached its default target kata-containers.target")
	case toTarget > targetBound:
		t.Errorf("default target reached after %.1fs, beyond the %v bound (load average %s)", toTarget.Seconds(), targetBound, loadAvg())
	default:
		t.Logf("QEMU start -> default target kata-containers.target: %.1fs (issue 6 target: < 30s); power-off after %.1fs; load average %s",
			toTarget.Seconds(), total.Seconds(), loadAvg())
	}
	for _, stall := range []string{"A start job is running for", "Timed out waiting for device", "Dependency failed for"} {
		if strings.Contains(log, stall) {
			t.Errorf("boot log has %q: systemd waited for something", stall)
		}
	}
	for _, want := range []string{
		"ibroot: root " + d.Verity.RootHash[:16],
		"Queued start job for default target kata-containers.target",
		"Mounted tmp.mount",
		"Mounted var.mount",
		"Installed transient /etc/machine-id file",
		"Started kata-agent.service",
		"KATA-AGENT-STAND-IN-STARTED",
		"reboot: Power down",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("boot log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("boot log:\n%s", tail(console))
		return
	}
	key := regexp.MustCompile(`ibroot: root|Reached target .*(basic\.target|Kata Containers)|KATA-AGENT|Power down`)
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if key.MatchString(l) {
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

// loadAvg returns the 1-minute load average, to read boot times against.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b) + " unknown")[0]
}

// stripANSI removes the colour escapes systemd writes to the console.
func stripANSI(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < '@' || s[j] > '~') {
				j++
			}
			i = j
			continue
		}
		out.WriteByte(s[i])
	}
	return out.String()
}
