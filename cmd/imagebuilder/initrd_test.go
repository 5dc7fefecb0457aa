package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitrdCLI(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("hi\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "init"), []byte("#!/bin/sh\n"), 0o644)
	spec := filepath.Join(dir, "s.spec")
	os.WriteFile(spec, []byte("dir /dev 755 0 0\nnod /dev/console 600 0 0 c 5 1\n"), 0o644)
	badSpec := filepath.Join(dir, "bad.spec")
	os.WriteFile(badSpec, []byte("dir /dev 755 0 0\n\nnod /dev/console 600 0 0 q 5 1\n"), 0o644)
	out := filepath.Join(dir, "initrd.img")

	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown compression", []string{"initrd", "build", "--dir", tree, "--compress", "lz4", "-o", out}, exitUsage, `--compress "lz4": want none, gzip or zstd`},
		{"spec syntax error", []string{"initrd", "build", "--dir", tree, "--spec", badSpec, "-o", out}, exitFailure, "bad.spec:3: device type \"q\""},
		{"escaping --file", []string{"initrd", "build", "--file", filepath.Join(dir, "init") + ":../../init", "-o", out}, exitFailure, "escapes the archive root"},
		{"bad --file", []string{"initrd", "build", "--file", "onlysrc", "-o", out}, exitUsage, "want SRC:DST[:MODE]"},
		{"missing -o", []string{"initrd", "build", "--dir", tree}, exitUsage, "-o/--output is required"},
		{"module without dir", []string{"initrd", "build", "--module", "erofs", "-o", out}, exitUsage, "--module needs --modules-dir"},
		{"bad early cpio (fails after the output is opened)", []string{"initrd", "build", "--dir", tree, "--early-cpio", spec, "-o", out}, exitFailure, "early cpio: cpio: truncated header at offset 0"},
		{"bad epoch", []string{"initrd", "build", "--dir", tree, "-o", out}, exitFailure, "SOURCE_DATE_EPOCH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "bad epoch" {
				t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
			}
			var code int
			stderr := captureStderr(t, func() { code = run(c.args) })
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, c.code, c.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("partial output %s left behind", out)
			}
			if ents, _ := filepath.Glob(filepath.Join(dir, ".*")); len(ents) > 0 {
				t.Errorf("temporary files left: %v", ents)
			}
		})
	}

	args := []string{"initrd", "build", "--dir", tree, "--spec", spec, "--file", filepath.Join(dir, "init") + ":/init:755", "--compress", "gzip", "-o", out}
	if code := run(args); code != exitOK {
		t.Fatalf("build: exit %d", code)
	}
	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	code := run([]string{"initrd", "list", out})
	w.Close()
	os.Stdout = old
	b := make([]byte, 4096)
	n, _ := r.Read(b)
	want := `crw-------   1 0        0          5,   1 Jan  1  1970 dev/console`
	if code != exitOK || !strings.Contains(string(b[:n]), want) || !strings.Contains(string(b[:n]), "-rwxr-xr-x   1 0        0              10 Jan  1  1970 init") {
		t.Errorf("list: exit %d\n%s", code, b[:n])
	}
}
