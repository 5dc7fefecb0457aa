package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

// TestSameBytesAsTheCLI: the program, calling pkg/ alone, writes the same
// root disk, initrd and IGVM file and measures the same launch digest as
// the imagebuilder commands given the same inputs.
func TestSameBytesAsTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the imagebuilder command")
	}
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	in := Inputs{
		Source:  "tar:" + write("base.tar", rootfstest.SmallLayers(t)[0], 0o644),
		Agent:   write("kata-agent", []byte("#!/bin/sh\necho agent\n"), 0o755),
		Init:    write("guest-init", []byte("#!/bin/sh\necho init\n"), 0o755),
		Kernel:  "../../testdata/igvm/inputs/synthetic-bzImage",
		Seed:    "library-example",
		Cmdline: "console=ttyS0 panic=-1",
		Policy:  0x30000,
		Out:     filepath.Join(dir, "lib"),
	}
	os.Mkdir(in.Out, 0o755)
	libDigest, err := build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}

	// The same through the commands.
	bin := filepath.Join(dir, "imagebuilder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/imagebuilder").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cli := filepath.Join(dir, "cli")
	os.Mkdir(cli, 0o755)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("imagebuilder %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	var desc struct {
		Cmdline struct {
			IBRoot string `json:"ibroot"`
		} `json:"cmdline"`
	}
	if err := json.Unmarshal([]byte(run("rootfs", "build", "--source", in.Source, "--agent", in.Agent,
		"--seed", in.Seed, "-o", filepath.Join(cli, "rootfs.img"), "--json")), &desc); err != nil {
		t.Fatal(err)
	}
	run("initrd", "build", "--verity-init", in.Init, "-o", filepath.Join(cli, "initrd.img"))
	run("igvm", "build", "--kernel", in.Kernel, "--initrd", filepath.Join(cli, "initrd.img"), "--kata",
		"--policy", fmt.Sprintf("%#x", uint64(in.Policy)), "--cmdline", in.Cmdline+" "+desc.Cmdline.IBRoot,
		"-o", filepath.Join(cli, "podvm.igvm"))
	cliDigest := strings.TrimSpace(run("measure", "igvm", filepath.Join(cli, "podvm.igvm"), "--profile", "mshv"))

	for _, name := range []string{"rootfs.img", "initrd.img", "podvm.igvm"} {
		a, b := sum(t, filepath.Join(in.Out, name)), sum(t, filepath.Join(cli, name))
		if a != b {
			t.Errorf("%s: library %s, CLI %s", name, a, b)
		}
	}
	if got := fmt.Sprintf("%x", libDigest[:]); got != cliDigest {
		t.Errorf("launch digest: library %s, CLI %s", got, cliDigest)
	}
}

func sum(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}
