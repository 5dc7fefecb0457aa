package deb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostile(t *testing.T) {
	ctl := func(c Compression) []byte {
		return compress(t, c, makeTar(t, []tarEnt{file("./control", testControl, 0o644)}), 0)
	}
	data := func(ents ...tarEnt) []byte { return makeTar(t, ents) }
	good := data(file("./a", "a", 0o644))
	bin := arMem{name: "debian-binary", data: []byte("2.0\n")}
	deb := func(ms ...arMem) []byte { return makeAr(ms) }
	withData := func(ents ...tarEnt) []byte {
		return deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar", data: data(ents...)})
	}
	gz := compress(t, Gzip, good, 0)
	zs := compress(t, Zstd, good, 0)
	xzb := compress(t, XZ, good, 0)
	const (
		format   = "format"
		insecure = "insecure"
	)
	cases := []struct {
		name, kind, msg string
		deb             []byte
	}{
		{"not ar", format, "no ar archive magic", []byte("hello, this is not a package")},
		{"empty ar", format, "no debian-binary", []byte(arMagic)},
		{"truncated ar header", format, "truncated ar header", deb(bin)[:len(arMagic)+30]},
		{"huge declared member", format, "runs past the end", deb(bin, arMem{name: "control.tar", data: ctl(None), size: 9999999999})},
		{"bad size field", format, "not a decimal", []byte(strings.Replace(string(deb(bin)), "4         `", "-4        `", 1))},
		{"control first", format, "first ar member is not debian-binary", deb(arMem{name: "control.tar", data: ctl(None)}, bin)},
		{"data before control", format, "where control.tar belongs", deb(bin, arMem{name: "data.tar", data: good}, arMem{name: "control.tar", data: ctl(None)})},
		{"duplicate control", format, "where data.tar belongs", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar", data: good})},
		{"duplicate data", format, "after data.tar", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar", data: good}, arMem{name: "data.tar.gz", data: gz})},
		{"no data", format, "no data.tar", deb(bin, arMem{name: "control.tar", data: ctl(None)})},
		{"format 3", format, "want 2.x", deb(arMem{name: "debian-binary", data: []byte("3.0\n")})},
		{"unknown compression", format, "where control.tar belongs", deb(bin, arMem{name: "control.tar.lzma", data: ctl(None)})},
		{"wrong magic", format, "bad magic", deb(bin, arMem{name: "control.tar.xz", data: ctl(Gzip)}, arMem{name: "data.tar", data: good})},
		{"no control file", format, "no control file", deb(bin, arMem{name: "control.tar", data: data(file("./md5sums", "", 0o644))}, arMem{name: "data.tar", data: good})},
		{"empty control.tar", format, "empty tar", deb(bin, arMem{name: "control.tar", data: make([]byte, 1024)}, arMem{name: "data.tar", data: good})},
		{"truncated gzip", format, "data.tar.gz", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar.gz", data: gz[:len(gz)/2]})},
		{"truncated zstd", format, "data.tar.zst", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar.zst", data: zs[:len(zs)/2]})},
		{"truncated xz", format, "data.tar.xz", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar.xz", data: xzb[:len(xzb)-20]})},
		{"truncated entry", format, "truncated", withData(file("./a", "abc", 0o644), tarEnt{name: "./big", body: "xy", typ: '0', mode: 0o644, size: 1 << 20})},
		{"huge declared entry", format, "contents exceed", withData(file("./a", "abc", 0o644), tarEnt{name: "./big", body: "xy", typ: '0', mode: 0o644, size: 1 << 50})},
		{"absolute", insecure, "absolute", withData(file("/etc/evil", "x", 0o644))},
		{"dotdot", insecure, `".."`, withData(file("./../evil", "x", 0o644))},
		{"inner dotdot", insecure, `".."`, withData(dir("./a/", 0o755), file("./a/../../evil", "x", 0o644))},
		{"through symlink", insecure, "parent x is a symlink", withData(symlink("./x", "../../outside"), file("./x/evil", "x", 0o644))},
		{"through abs symlink", insecure, "parent etc is a symlink", withData(symlink("./etc", "/etc"), file("./etc/passwd", "x", 0o644))},
		{"through file", insecure, "parent f is a file", withData(file("./f", "x", 0o644), file("./f/g", "x", 0o644))},
		{"hard link outside", insecure, "hard link target", withData(hardlink("./l", "../outside"))},
		{"hard link absolute", insecure, "hard link target", withData(hardlink("./l", "/etc/shadow"))},
		{"hard link to later", insecure, "not an earlier regular file", withData(hardlink("./l", "./f"), file("./f", "x", 0o644))},
		{"hard link to dir", insecure, "not an earlier regular file", withData(dir("./d/", 0o755), hardlink("./l", "./d"))},
		{"duplicate entry", format, "duplicate entry", withData(file("./f", "x", 0o644), file("./f", "y", 0o644))},
		{"symlink over implied dir", format, "entries below it came earlier", withData(file("./d/f", "x", 0o644), symlink("./d", "/tmp"))},
		{"device node", format, "unsupported entry type", withData(tarEnt{name: "./dev/sda", typ: '4', mode: 0o600})},
		{"fifo", format, "unsupported entry type", withData(tarEnt{name: "./p", typ: '6', mode: 0o600})},
		{"root is a file", format, "root entry", withData(file(".", "", 0o644))},
		{"empty data.tar", format, "empty tar", deb(bin, arMem{name: "control.tar", data: ctl(None)}, arMem{name: "data.tar", data: make([]byte, 1024)})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "a", "b", "target")
			os.MkdirAll(filepath.Dir(target), 0o755)
			p, err := openBytes(t, c.deb)
			if err == nil {
				_, err = p.Extract(context.Background(), target, ExtractOptions{})
			}
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "deb: ") {
				t.Errorf("error %q: want one line starting with \"deb: \"", msg)
			}
			if !strings.Contains(msg, c.msg) {
				t.Errorf("error %q does not say %q", msg, c.msg)
			}
			var fe *FormatError
			var ie *InsecurePathError
			switch c.kind {
			case format:
				if !errors.As(err, &fe) {
					t.Errorf("error %q (%T) is not a FormatError", msg, err)
				}
			case insecure:
				if !errors.As(err, &ie) || !errors.Is(err, ErrInsecurePath) {
					t.Errorf("error %q (%T) is not an InsecurePathError", msg, err)
				}
			}
			// Nothing outside the target, and the target is gone again.
			var left []string
			filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					left = append(left, p)
				}
				return nil
			})
			if len(left) > 0 {
				t.Errorf("files left behind: %v", left)
			}
			if _, err := os.Lstat(target); err == nil {
				t.Errorf("target %s left behind", target)
			}
			// Spool refuses it the same way.
			if p, perr := openBytes(t, c.deb); perr == nil {
				_, _, serr := p.Spool(context.Background(), &memSpool{}, ExtractOptions{})
				if serr == nil || serr.Error() != msg || !errors.As(serr, &fe) && !errors.As(serr, &ie) {
					t.Errorf("spool: %v (%T), want %q", serr, serr, msg)
				}
			}
		})
	}
}

func TestLimits(t *testing.T) {
	d := makeDeb(t, None, goodTree)
	for _, o := range []WalkOptions{{MaxEntries: 3}, {MaxBytes: 10}} {
		p, err := openBytes(t, d)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Extract(context.Background(), filepath.Join(t.TempDir(), "x"), ExtractOptions{WalkOptions: o})
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%+v: %v, want a FormatError", o, err)
		}
	}
}

func TestTargetMustBeEmpty(t *testing.T) {
	p, err := openBytes(t, makeDeb(t, None, goodTree))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o644)
	if _, err := p.Extract(context.Background(), dir, ExtractOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("got %v, want a refusal of a non-empty target", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep")); string(b) != "mine" {
		t.Fatal("the caller's file was touched")
	}
}
