package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdBoot boots the Debian systemd root end to end: the project's
// guest init (cmd/guest-init, from the initrd area) opens the verity root
// from the ibroot.* fragment of the description, systemd starts the default
// kata-containers.target with tmpfs on /tmp and /var, runs the agent (a
// stand-in that prints a marker and fails), and FailureAction=poweroff
// powers the VM off.
func TestSystemdBoot(t *testing.T) {
	fix := debianFixture(t)
	qemu := needTool(t, "qemu-system-x86_64")
	repo, _ := filepath.Abs("../..")
	if _, err := os.Stat(filepath.Join(repo, "cmd", "guest-init")); err != nil {
		t.Skip("needs cmd/guest-init (the initrd area's guest init) in the tree")
	}
	cache := os.Getenv("IMAGEBUILDER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "imagebuilder")
	}
	kdir := filepath.Join(cache, "debian-kernel")
	ver, err := os.ReadFile(filepath.Join(kdir, "version"))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("kernel fixture missing (scripts/fixtures/debian-kernel.sh): %v", err)
		}
		t.Skipf("kernel fixture missing: %v", err)
	}
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
		"--modules-dir", filepath.Join(kdir, "lib", "modules", strings.TrimSpace(string(ver))),
		"--module", "virtio_pci,virtio_blk,dm-verity,erofs", "--compress", "zstd", "-o", initrd).CombinedOutput()
	if err != nil {
		t.Fatalf("initrd build: %v\n%s", err, out)
	}

	agent := writeFile(t, filepath.Join(dir, "kata-agent"), []byte("#!/bin/sh\necho KATA-AGENT-STAND-IN-STARTED\nsleep 1\nexit 1\n"))
	os.Chmod(agent, 0o755)
	img := filepath.Join(dir, "rootfs.img")
	d, err := buildFile(t, Options{Sources: []string{"oci-layout:" + filepath.Join(fix, "oci")}, Agent: agent, Seed: "boot"}, img)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, _ := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(kdir, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 "+d.Cmdline.IBRoot,
		"-drive", "file="+img+",format=raw,if=virtio,readonly=on").CombinedOutput()
	log := string(b)
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
		if !strings.Contains(stripANSI(log), want) {
			t.Errorf("boot log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("boot log:\n%s", tail(b))
	}
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
