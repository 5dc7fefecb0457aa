package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoVerifyReproduce builds the demo image (examples/podvm.yaml, the
// real Debian kernel and root) and runs the auditor's commands on it:
// verify passes every link (the demo has no ID block: link id_block has
// nothing to check); a byte flipped in a file of the root file system
// fails links outputs and rootfs, naming the file, and handler (the node
// installs the disk); reproduce rebuilds the demo from the config without
// the stage cache and finds every artifact identical.
func TestDemoVerifyReproduce(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	out, _, _ := demoBuild(t, dir)
	ib := filepath.Join(dir, "bin", "imagebuilder")
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(ib, args...)
		cmd.Dir = dir
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}

	stdout, stderr, code := run("verify", out)
	if code != 0 || !strings.HasSuffix(stdout, out+": verified (7 ok)\n") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("verify:\n%s", stdout)

	// One byte of /usr/bin/su (a file of the Debian root) flipped. Data
	// block 5000 of the erofs lies in it, at byte 1 MiB + 5000 * 4096 of
	// the disk.
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(bad, 0o755)
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "rootfs.img" {
			continue
		}
		if err := os.Link(filepath.Join(out, e.Name()), filepath.Join(bad, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	img, err := os.ReadFile(filepath.Join(out, "rootfs.img"))
	if err != nil {
		t.Fatal(err)
	}
	img[1<<20+5000*4096+100] ^= 1
	os.WriteFile(filepath.Join(bad, "rootfs.img"), img, 0o644)
	stdout, stderr, code = run("verify", "-q", bad)
	if code != 1 || !strings.Contains(stdout, "1 outputs       FAILED  rootfs.img: sha256") ||
		!strings.Contains(stdout, "the digest of data block 5000, in /") ||
		stderr != "imagebuilder: verify: "+bad+": 3 of 7 links failed (1 outputs, 2 rootfs, 7 handler)\n" {
		t.Errorf("flipped byte: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("flipped byte:\n%s", stdout)

	stdout, stderr, code = run("reproduce", "-q", "-f", filepath.Join(dir, "examples", "podvm.yaml"), "--against", out,
		"--guest-init", filepath.Join(dir, "bin", "guest-init"), "--cache", filepath.Join(dir, "cache"))
	if code != 0 || !strings.HasSuffix(stdout, fmt.Sprintf("reproduced: %d artifacts identical\n", len(ents))) {
		t.Errorf("reproduce: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("reproduce:\n%s", stdout)
}
