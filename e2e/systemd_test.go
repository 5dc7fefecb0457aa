package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// TestSystemdBoot boots the Debian systemd image end to end: the guest init
// (cmd/guest-init) in an initrd made by 'imagebuilder initrd build' opens
// the verity root that rootfs.Build makes of the Debian systemd fixture,
// from the ibroot.* fragment of its description; systemd reaches the
// default target (kata-containers.target) with tmpfs on /tmp and /var and
// runs the agent, the stand-in of examples/kata-agent-standin, which prints
// its ready line from the read-only dm-verity root and fails, and
// FailureAction=poweroff powers the VM off. The wall time from QEMU's start
// to the default target is logged with the load average; the test fails
// on it only beyond a generous bound, since TCG on a loaded shared machine
// varies, and fails on console lines that show systemd waiting (a job
// still running, a device timeout, a failed dependency).
func TestSystemdBoot(t *testing.T) {
	const (
		// QEMU start -> default target: 10-40 s on a 2-core machine, over
		// 100 s when other builds load it heavily, so the bound is wide.
		// Stalls such as systemd waiting 90 s for a device are caught by
		// the console checks below instead.
		targetBound = 180 * time.Second
		vmTimeout   = 5 * time.Minute // the whole boot, until power-off
	)
	needTools(t, qemuBinary)
	kernel := fixtures.DebianKernel(t)
	fix := fixtures.DebianSystemd(t)
	dir := t.TempDir()

	ib := buildImagebuilder(t, dir)
	initrdPath := filepath.Join(dir, "initrd.img")
	out, err := exec.Command(ib, "initrd", "build",
		"--verity-init", buildGuestInit(t, dir),
		"--modules-dir", kernel.ModulesDir,
		"--module", "virtio_pci,virtio_blk,dm-verity,erofs", "--compress", "zstd", "-o", initrdPath).CombinedOutput()
	if err != nil {
		t.Fatalf("initrd build: %v\n%s", err, out)
	}

	src, err := source.Parse("oci-layout:" + filepath.Join(fix, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	d, err := rootfs.Build(context.Background(), rootfs.Options{Sources: []source.Source{src}, Agent: buildStandin(t, dir), Seed: "boot"}, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	v := startVM(t, vmConfig{Kernel: kernel.Vmlinuz, Initrd: initrdPath, Disk: img,
		Cmdline: "console=ttyS0 panic=-1 " + d.Cmdline.IBRoot, Timeout: vmTimeout})
	// The 80-column console shortens the unit name ("kata-contai…"), so
	// the line is also matched by the unit's Description.
	reached := regexp.MustCompile(`Reached target (kata-containers\.target|.* - Kata Containers Agent Target\.)`)
	target, err := v.waitFor(reached)
	switch {
	case errors.Is(err, errVMStopped):
		t.Errorf("systemd never reached its default target kata-containers.target")
	case err != nil:
		t.Fatalf("%v; console:\n%s", err, v.consoleTail())
	case target.At > targetBound:
		t.Errorf("default target reached after %.1fs, beyond the %v bound (load average %s)", target.At.Seconds(), targetBound, loadAvg())
	}
	// The VM runs on until the agent's failure powers it off.
	total, err := v.wait()
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, v.consoleTail())
	}
	if !t.Failed() {
		t.Logf("QEMU start -> default target kata-containers.target: %.1fs; power-off after %.1fs; load average %s",
			target.At.Seconds(), total.Seconds(), loadAvg())
	}
	log := v.console()
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
		"reboot: Power down",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("boot log lacks %q", want)
		}
	}
	// The stand-in runs on the Debian kernel, from the dm-verity device
	// mounted read-only.
	ready := regexp.MustCompile(regexp.QuoteMeta(standinReady) + ` kernel=` + regexp.QuoteMeta(kernel.Version) + ` root=/dev/dm-\d+:erofs:ro\b`)
	if !ready.MatchString(log) {
		t.Errorf("boot log lacks the stand-in's line %q", ready)
	}
	if t.Failed() {
		t.Logf("boot log:\n%s", v.consoleTail())
		return
	}
	t.Log("\n" + grep(log, `ibroot: root|Reached target .*(basic\.target|Kata Containers)|`+standinReady+`|Power down`))
}
