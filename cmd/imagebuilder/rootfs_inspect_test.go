package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// TestRootfsInspectDoc runs the console example of docs/rootfs-inspect.md
// against this CLI (the test binary run as imagebuilder) and compares
// every output line.
func TestRootfsInspectDoc(t *testing.T) {
	for _, tool := range []string{"tar", "dd", "grep"} {
		if _, err := exec.LookPath(tool); err != nil {
			fixtures.Missing(t, "%s is not installed", tool)
		}
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/rootfs-inspect.md", doctest.Options{Path: []string{bin}})
}

// TestRootfsInspectCLI: the conventions of docs/cli.md for inspect.
func TestRootfsInspectCLI(t *testing.T) {
	dir := t.TempDir()
	rootfsTar(t, filepath.Join(dir, "base.tar"), "etc/os-release")
	os.WriteFile(filepath.Join(dir, "agent"), []byte("agent"), 0o755)
	img := filepath.Join(dir, "rootfs.img")
	if code, _, stderr := runCaptured(t, "rootfs", "build", "--source", "tar:"+filepath.Join(dir, "base.tar"),
		"--agent", filepath.Join(dir, "agent"), "--seed", "cli", "-o", img, "--cache", filepath.Join(dir, "cache")); code != exitOK {
		t.Fatalf("build: %s", stderr)
	}
	// --json=FILE writes the JSON and keeps the text.
	js := filepath.Join(dir, "inspect.json")
	code, out, _ := runCaptured(t, "rootfs", "inspect", "--files", "--json="+js, img)
	b, _ := os.ReadFile(js)
	if code != exitOK || !strings.Contains(out, "(ok)") || !strings.Contains(string(b), `"root_hash_ok": true`) ||
		!strings.Contains(string(b), `"path": "/etc/os-release"`) || !strings.Contains(string(b), `"attributes": "0x1000000000000000"`) {
		t.Errorf("--json=FILE: exit %d\n%s\n%s", code, out, b)
	}
	// A root hash mismatch: the result, then one error line, exit 1.
	bad := filepath.Join(dir, "bad.img")
	data, _ := os.ReadFile(img)
	data[1<<20+4096] ^= 1
	os.WriteFile(bad, data, 0o644)
	code, out, stderr := runCaptured(t, "rootfs", "inspect", "--json", bad)
	if code != exitFailure || !strings.Contains(out, `"root_hash_ok": false`) || !strings.Contains(out, `"mismatch": "partition 1 has root hash`) ||
		!strings.HasPrefix(stderr, "imagebuilder: rootfs inspect: "+bad+": partition 1 has root hash") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("mismatch: exit %d\n%s\n%s", code, out, stderr)
	}
	// Malformed: one line naming the file, nothing on stdout.
	data, _ = os.ReadFile(img)
	data[512+60] ^= 1
	os.WriteFile(bad, data, 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{bad}, exitFailure, "rootfs inspect: " + bad + ": rootfs: gpt: at offset 0x210: header CRC"},
		{[]string{filepath.Join(dir, "missing.img")}, exitFailure, "missing.img: no such file"},
		{[]string{dir}, exitFailure, "rootfs inspect: " + dir + ": not a regular file"},
		{[]string{}, exitUsage, "rootfs inspect"},
		{[]string{"--json=", img}, exitUsage, "empty file name"},
	} {
		code, out, stderr := runCaptured(t, append([]string{"rootfs", "inspect"}, tc.args...)...)
		if code != tc.code || out != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, stderr, tc.code, tc.want)
		}
	}
}
