package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
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
		{"missing -o", []string{"initrd", "build", "--dir", tree}, exitUsage, `required flag(s) "output" not set (see 'imagebuilder initrd build --help')`},
		{"module without dir", []string{"initrd", "build", "--module", "erofs", "-o", out}, exitUsage, "--module needs --modules-dir"},
		{"bad early cpio (fails after the output is opened)", []string{"initrd", "build", "--dir", tree, "--early-cpio", spec, "-o", out}, exitFailure, "early cpio " + spec + ": cpio: truncated header at offset 0"},
		{"bad epoch", []string{"initrd", "build", "--dir", tree, "-o", out}, exitUsage, "SOURCE_DATE_EPOCH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "bad epoch" {
				t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
			}
			code, _, stderr := runCaptured(t, c.args...)
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
	if code, _, stderr := runCaptured(t, args...); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	code, list, _ := runCaptured(t, "initrd", "list", out)
	want := `crw-------   1 0        0          5,   1 Jan  1  1970 dev/console`
	if code != exitOK || !strings.Contains(list, want) || !strings.Contains(list, "-rwxr-xr-x   1 0        0              10 Jan  1  1970 init") {
		t.Errorf("list: exit %d\n%s", code, list)
	}
}

// contentOf extracts one file's content from an uncompressed initrd.
func contentOf(t *testing.T, img, name string) string {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var got string
	err = initrd.Walk(context.Background(), fh, func(h *initrd.Header, _ initrd.Segment, r io.Reader) error {
		if h.Name == name {
			b, err := io.ReadAll(r)
			got = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestInitrdSourceOrder checks that --dir, --file and --source merge in
// command-line order, whatever the flag kind, and that a hostile --source
// fails without output.
func TestInitrdSourceOrder(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("dir\n"), 0o644)
	file := filepath.Join(dir, "motd")
	os.WriteFile(file, []byte("file\n"), 0o644)
	img := filepath.Join(dir, "image.tar")
	writeTar(t, img, map[string]string{"etc/motd": "image\n", "bin/tool": "tool"})
	out := filepath.Join(dir, "initrd.img")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", tree, "--file", file + ":etc/motd"}, "file\n"},
		{[]string{"--file", file + ":etc/motd", "--dir", tree}, "dir\n"},
		{[]string{"--dir", tree, "--source", "tar:" + img}, "image\n"},
		{[]string{"--source", "tar:" + img, "--file", file + ":/etc/motd", "--dir", tree}, "dir\n"},
		{[]string{"--dir", tree, "--source", "tar:" + img, "--file", file + ":/etc/motd"}, "file\n"},
	} {
		args := append([]string{"initrd", "build", "--compress", "none", "-o", out}, c.args...)
		if code, _, stderr := runCaptured(t, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr)
		}
		if got := contentOf(t, out, "etc/motd"); got != c.want {
			t.Errorf("%v: etc/motd is %q, want %q", c.args, got, c.want)
		}
	}
	if code, l, _ := runCaptured(t, "initrd", "list", out); code != exitOK || !strings.Contains(l, "bin/tool") {
		t.Errorf("--source entries missing from the list (exit %d):\n%s", code, l)
	}
	os.Remove(out)

	bad := filepath.Join(dir, "bad.tar")
	writeTar(t, bad, map[string]string{"../escape": "x"})
	code, _, stderr := runCaptured(t, "initrd", "build", "--dir", tree, "--source", "tar:"+bad, "-o", out)
	if code != exitFailure || !strings.Contains(stderr, `tar:`+bad+`: entry "../escape"`) {
		t.Errorf("hostile --source: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("partial output %s left behind", out)
	}
}

func writeTar(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
