package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
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

// TestRootfsBuildDefects: each case was accepted or wrong before (issue 9).
func TestRootfsBuildDefects(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	rootfsTar(t, base, "etc/os-release")
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)
	empty := filepath.Join(dir, "empty.tar")
	os.WriteFile(empty, nil, 0o644)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	conf := filepath.Join(dir, "x.conf")
	os.WriteFile(conf, []byte("x"), 0o644)
	out := filepath.Join(dir, "out", "rootfs.img")
	os.MkdirAll(filepath.Dir(out), 0o755)
	build := func(extra ...string) []string {
		return append([]string{"rootfs", "build", "--agent", agent, "--seed", "s", "--cache", filepath.Join(dir, "cache")}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bogus platform", build("--source", "tar:"+base, "-o", out, "--platform", "bogus"), exitUsage,
			`rootfs build: --platform: platform "bogus": want OS/ARCH[/VARIANT]`},
		{"unknown architecture", build("--source", "tar:"+base, "-o", out, "--platform", "linux/amd46"), exitUsage,
			`unknown architecture "amd46"`},
		{"empty tar", build("--source", "tar:"+empty, "-o", out), exitFailure,
			"rootfs build: tar:" + empty + ": empty file, not a tar archive"},
		{"existing directory without a scheme", build("--source", tree, "-o", out), exitUsage,
			"names a local directory, not a registry image: write dir:" + tree},
		{"existing file without a scheme", build("--source", base, "-o", out), exitUsage,
			"write tar:" + base + " for a tar file"},
		{"unknown scheme", build("--source", "oci:"+tree, "-o", out), exitUsage, `unknown scheme "oci"; write oci-layout:DIR`},
		{"source twice", build("--source", "tar:"+base, "--source", "tar:"+base, "-o", out), exitUsage,
			"rootfs build: --source tar:" + base + ": given twice"},
		{"add twice", build("--source", "tar:"+base, "--add", tree, "--add", tree, "-o", out), exitUsage, "--add " + tree + ": given twice"},
		{"file twice", build("--source", "tar:"+base, "--file", conf+":/etc/x", "--file", conf+":/etc/x", "-o", out), exitUsage, "given twice"},
		{"disk to stdout", build("--source", "tar:"+base, "-o", "-"), exitUsage, "-o -: this output cannot go to stdout"},
		{"output is a directory", build("--source", "tar:"+base, "-o", dir), exitUsage, "is a directory"},
		{"no source", build("-o", out), exitUsage, `required flag(s) "source" not set`},
		{"no output", build("--source", "tar:"+base), exitUsage, `required flag(s) "output" not set`},
		{"agent not a file", []string{"rootfs", "build", "--source", "tar:" + base, "--agent", dir, "--seed", "s", "-o", out}, exitFailure,
			"rootfs build: --agent " + dir + ": " + dir + " is not a regular file"},
		{"add not a directory", build("--source", "tar:"+base, "--add", conf, "-o", out), exitFailure,
			"rootfs build: --add " + conf + ": not a directory"},
		{"unwritable JSON output", build("--source", "tar:"+base, "-o", out, "--json="+filepath.Join(dir, "nodir", "d.json")), exitFailure,
			"nodir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCaptured(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) > 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

var summaryRE = regexp.MustCompile(`^(.+): (\d+) bytes, sha256 ([0-9a-f]{64}), root hash ([0-9a-f]{64})\n$`)

// TestRootfsBuildOutputs: the summary line, --json to stdout, --json=FILE
// published with the disk, and the required flags in --help.
func TestRootfsBuildOutputs(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.tar")
	rootfsTar(t, base, "etc/os-release")
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)
	img := filepath.Join(dir, "rootfs.img")
	args := []string{"rootfs", "build", "--source", "tar:" + base, "--agent", agent, "--seed", "s", "-o", img, "--cache", filepath.Join(dir, "cache")}

	code, stdout, stderr := runCaptured(t, args...)
	m := summaryRE.FindStringSubmatch(stdout)
	if code != exitOK || m == nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, _ := os.ReadFile(img)
	if m[1] != img || m[2] != fmt.Sprint(len(b)) || m[3] != fmt.Sprintf("%x", sha256.Sum256(b)) {
		t.Errorf("summary %q does not describe %s (%d bytes)", stdout, img, len(b))
	}

	code, stdout, _ = runCaptured(t, append(args, "--json")...)
	// (rootfs.GUID has no UnmarshalText yet: decode the parts checked.)
	var desc struct {
		Verity struct {
			RootHash string `json:"root_hash"`
		} `json:"verity"`
		Sources []source.Resolved `json:"sources"`
		Agent   rootfs.AddedFile  `json:"agent"`
	}
	if err := json.Unmarshal([]byte(stdout), &desc); code != exitOK || err != nil || desc.Verity.RootHash != m[4] {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, stdout)
	}
	if len(desc.Sources) != 1 || desc.Sources[0].Source != "tar:"+base || desc.Agent.SHA256 != fmt.Sprintf("%x", sha256.Sum256([]byte("agent"))) {
		t.Errorf("--json: sources %+v, agent %+v", desc.Sources, desc.Agent)
	}

	js := filepath.Join(dir, "rootfs.json")
	code, stdout, _ = runCaptured(t, append(args, "--json="+js)...)
	jb, err := os.ReadFile(js)
	if code != exitOK || err != nil || !summaryRE.MatchString(stdout) || !strings.Contains(string(jb), `"root_hash": "`+m[4]+`"`) {
		t.Errorf("--json=FILE: exit %d, stdout %q, %v", code, stdout, err)
	}

	_, help, _ := runCaptured(t, "rootfs", "build", "--help")
	for _, flag := range []string{"--source", "--agent", "--seed", "--output"} {
		if !regexp.MustCompile(`(?m)^.*` + flag + ` .*\(required\)`).MatchString(help) {
			t.Errorf("--help does not mark %s as required:\n%s", flag, help)
		}
	}
}
