package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rootfsTar(t *testing.T, p string, names ...string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		tw.Write([]byte("hi"))
	}
	tw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsCLI(t *testing.T) {
	dir := t.TempDir()
	rootfsTar(t, filepath.Join(dir, "base.tar"), "etc/os-release", "usr/bin/true")
	os.WriteFile(filepath.Join(dir, "agent"), []byte("agent"), 0o755)
	os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("x=1\n"), 0o600)
	os.MkdirAll(filepath.Join(dir, "add", "etc", "kata"), 0o755)
	os.WriteFile(filepath.Join(dir, "add", "etc", "kata", "agent.toml"), []byte("[agent]\n"), 0o644)
	img, js := filepath.Join(dir, "rootfs.img"), filepath.Join(dir, "rootfs.json")
	args := []string{"rootfs", "build", "--source", "tar:" + filepath.Join(dir, "base.tar"),
		"--agent", filepath.Join(dir, "agent"), "--add", filepath.Join(dir, "add"),
		"--file", filepath.Join(dir, "extra.conf") + ":/etc/extra.conf:0640",
		"--seed", "cli", "-o", img, "--json=" + js, "--cache", filepath.Join(dir, "cache")}
	code, _, stderr := runCaptured(t, args...)
	if code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	var desc struct {
		Verity struct {
			RootHash string `json:"root_hash"`
		} `json:"verity"`
		Cmdline map[string]string `json:"cmdline"`
	}
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &desc); err != nil || len(desc.Verity.RootHash) != 64 || desc.Cmdline["ibroot"] == "" {
		t.Fatalf("bad JSON description (%v): %s", err, b)
	}
	code, out, _ := runCaptured(t, "rootfs", "inspect", "--files", img)
	if code != exitOK {
		t.Fatalf("inspect: exit %d", code)
	}
	for _, want := range []string{"root hash: " + desc.Verity.RootHash + " (ok)", "/usr/bin/kata-agent", "/etc/kata/agent.toml",
		"100640     0     0          4 /etc/extra.conf", "/etc/os-release", "partition 2 root-x86-64-verity"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCaptured(t, "rootfs", "inspect", "--json", img)
	if code != exitOK || !strings.Contains(out, `"root_hash_ok": true`) {
		t.Errorf("inspect --json: exit %d:\n%s", code, out)
	}

	// A corrupted data block fails the check.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, 1<<20+4096+10)
	f.Close()
	code, _, stderr = runCaptured(t, "rootfs", "inspect", img)
	if code != exitFailure || !strings.HasPrefix(stderr, "imagebuilder: ") {
		t.Errorf("corrupt image: exit %d, stderr %q", code, stderr)
	}
}

func TestRootfsCLIErrors(t *testing.T) {
	dir := t.TempDir()
	rootfsTar(t, filepath.Join(dir, "evil.tar"), "ok", "../../evil")
	os.WriteFile(filepath.Join(dir, "agent"), []byte("agent"), 0o755)
	img := filepath.Join(dir, "rootfs.img")
	base := []string{"rootfs", "build", "--source", "tar:" + filepath.Join(dir, "evil.tar"), "--seed", "s", "-o", img}
	tests := []struct {
		name string
		args []string
		env  string
		code int
		want string
	}{
		{"hostile layer", append(base, "--agent", filepath.Join(dir, "agent"), "--json="+img+".json"), "", exitFailure, `entry "../../evil": path has a ".." component`},
		{"no agent", base, "", exitUsage, `required flag(s) "agent" not set`},
		{"bad epoch", append(base, "--agent", filepath.Join(dir, "agent")), "yesterday", exitUsage, "SOURCE_DATE_EPOCH"},
		{"bad file flag", append(base, "--agent", filepath.Join(dir, "agent"), "--file", "nocolon"), "", exitUsage, `--file: file "nocolon": want SRC:DST[:MODE]`},
		{"unknown source", []string{"rootfs", "build", "--source", "Not A Ref!", "--agent", filepath.Join(dir, "agent"), "--seed", "s", "-o", img}, "", exitUsage, `source "Not A Ref!": not a registry reference`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.env)
			code, _, stderr := runCaptured(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || !strings.HasPrefix(stderr, "imagebuilder: ") {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if lines := strings.Count(strings.TrimSuffix(stderr, "\n"), "\n"); tc.code == exitFailure && lines != 0 {
				t.Errorf("error is %d lines", lines+1)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "rootfs.img") || strings.HasPrefix(e.Name(), ".rootfs") {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
