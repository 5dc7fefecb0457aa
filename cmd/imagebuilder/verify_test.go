package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/pkg/audit"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// reproOutput builds the reproducibility config with this CLI into
// root/out and returns the config path and the output directory.
func reproOutput(t *testing.T) (cfg, out string) {
	t.Helper()
	root := t.TempDir()
	cfg = reproConfig(t, root, false, time.Now(), 0)
	out = filepath.Join(root, "out")
	if code, _, stderr := runCaptured(t, "build", "-q", "-f", cfg, "-o", out, "--cache", filepath.Join(root, "cache")); code != exitOK {
		t.Fatalf("build: %s", stderr)
	}
	return cfg, out
}

// resumOutput records a changed output's digest in manifest.json.
func resumOutput(t *testing.T, out, name string) {
	t.Helper()
	mp := filepath.Join(out, podvm.FileManifest)
	b, _ := os.ReadFile(mp)
	var m podvm.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(out, name))
	s := sha256.Sum256(data)
	for i := range m.Outputs {
		if m.Outputs[i].Name == name {
			m.Outputs[i].SHA256, m.Outputs[i].Size = hex.EncodeToString(s[:]), int64(len(data))
		}
	}
	b, _ = json.MarshalIndent(&m, "", "  ")
	os.WriteFile(mp, b, 0o644)
}

// editDigest changes the first hex digit of the first digest of a JSON
// document.
func editDigest(b []byte) []byte {
	i := strings.Index(string(b), `"digest": "`) + len(`"digest": "`)
	b = append([]byte(nil), b...)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return b
}

// TestVerifyCLI: the conventions of docs/cli.md for verify.
func TestVerifyCLI(t *testing.T) {
	cfg, out := reproOutput(t)
	fw := filepath.Join(filepath.Dir(cfg), "ovmf_AmdSev_suffix.bin")
	code, stdout, stderr := runCaptured(t, "verify", out, "--firmware", fw)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != exitOK || stderr != "" || len(lines) != 8 || lines[7] != out+": verified (7 ok)" ||
		!strings.HasPrefix(lines[1], "2 rootfs        ok      GPT and backup sound") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	// --json: the same links, for programs.
	code, stdout, _ = runCaptured(t, "verify", "--json", out, "--firmware", fw)
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitOK || !rep.OK || len(rep.Links) != 7 || rep.Links[5].Keys == nil {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, stdout)
	}
	// One link fails: the lines, then one error line, exit 1.
	p := filepath.Join(out, podvm.FileReferenceValues)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, editDigest(b), 0o644)
	resumOutput(t, out, podvm.FileReferenceValues)
	code, stdout, stderr = runCaptured(t, "verify", out)
	if code != exitFailure || !strings.Contains(stdout, "\n5 launch_digest FAILED  aks-clh-snp launch digest: ") ||
		stderr != "imagebuilder: verify: "+out+": 2 of 7 links failed (5 launch_digest, 6 id_block)\n" {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	// -q: only the failed links.
	code, stdout, _ = runCaptured(t, "verify", "-q", out)
	if code != exitFailure || strings.Count(stdout, "\n") != 2 {
		t.Errorf("-q: exit %d\n%s", code, stdout)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"verify"},
		{"verify", out, "--id-key-digest", "abc"},
		{"verify", out, "--firmware", fw, "--firmware", fw},
		{"verify", out, "extra"},
		{"verify", "-q", "--json", out},
	} {
		if code, _, stderr := runCaptured(t, args...); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
	// A directory that does not exist: one line, exit 1.
	if code, _, stderr := runCaptured(t, "verify", filepath.Join(out, "nope")); code != exitFailure || strings.Count(stderr, "\n") != 1 {
		t.Errorf("missing directory: exit %d, %q", code, stderr)
	}
}

// TestReproduceCLI: identical, then one input changed.
func TestReproduceCLI(t *testing.T) {
	cfg, out := reproOutput(t)
	code, stdout, stderr := runCaptured(t, "reproduce", "-q", "-f", cfg, "--against", out)
	if code != exitOK || stderr != "" || !strings.HasSuffix(stdout, "\nreproduced: 15 artifacts identical\n") ||
		!strings.Contains(stdout, "spec.rootfs.sources[0] oci-layout:oci@sha256:") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	os.WriteFile(filepath.Join(filepath.Dir(cfg), "agent"), []byte("#!/bin/sh\necho another\n"), 0o755)
	kept := filepath.Join(t.TempDir(), "rebuilt")
	code, stdout, stderr = runCaptured(t, "reproduce", "-q", "-f", cfg, "--against", out, "-o", kept)
	if code != exitFailure || !strings.Contains(stdout, "stage rootfs: rootfs.img differs") || !strings.Contains(stdout, "/usr/bin/kata-agent content:") ||
		!strings.Contains(stdout, "changed since the published build: input .agent.sha256") ||
		stderr != "imagebuilder: reproduce: "+out+": not reproduced: stage rootfs differs first (rootfs.img)\n" {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(kept, podvm.FileManifest)); err != nil {
		t.Errorf("-o: %v", err)
	}
	for _, args := range [][]string{
		{"reproduce", "-f", cfg},
		{"reproduce", "--against", out},
		{"reproduce", "-f", cfg, "--against", filepath.Join(out, "nope")},
		{"reproduce", "-f", cfg, "--against", out, "-o", out},
	} {
		if code, _, stderr := runCaptured(t, args...); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}

// TestPullVerifies: pull runs verify on the pulled set before it appears.
func TestPullVerifies(t *testing.T) {
	_, out := reproOutput(t)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	if code, _, stderr := runCaptured(t, "push", out, "--oci-layout", layout); code != exitOK {
		t.Fatalf("push: %s", stderr)
	}
	code, stdout, stderr := runCaptured(t, "pull", "--oci-layout", layout, "-o", filepath.Join(dir, "pulled"))
	if code != exitOK || !strings.HasSuffix(stdout, ", checked, verified (7 ok)\n") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A set whose files match its own manifest but break the chain: the
	// reference values name another digest.
	p := filepath.Join(out, podvm.FileReferenceValues)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, editDigest(b), 0o644)
	resumOutput(t, out, podvm.FileReferenceValues)
	layout2 := filepath.Join(dir, "layout2")
	if code, _, stderr := runCaptured(t, "push", out, "--oci-layout", layout2); code != exitOK {
		t.Fatalf("push: %s", stderr)
	}
	code, _, stderr = runCaptured(t, "pull", "--oci-layout", layout2, "-o", filepath.Join(dir, "pulled2"))
	if code != exitFailure || !strings.HasPrefix(stderr, "imagebuilder: pull: verify: link 5 launch_digest failed: aks-clh-snp launch digest: ") {
		t.Errorf("exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pulled2")); !os.IsNotExist(err) {
		t.Errorf("the unverified set appeared: %v", err)
	}
	if code, _, stderr := runCaptured(t, "pull", "--oci-layout", layout2, "--no-verify", "-o", filepath.Join(dir, "pulled3")); code != exitOK {
		t.Errorf("--no-verify: %s", stderr)
	}
}

// TestVerifyDocs runs the console examples of docs/verify.md in a copy of
// the reproducibility config's tree.
func TestVerifyDocs(t *testing.T) {
	for _, tool := range []string{"sha256sum", "dd", "sed", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	root := t.TempDir()
	reproConfig(t, root, false, time.Now(), 0)
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/verify.md", doctest.Options{Dir: root, Path: []string{bin}})
}
