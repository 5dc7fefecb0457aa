package initrd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needTool skips when a reference tool is missing, and fails under CI
// (make test installs them).
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (scripts/testdeps.sh installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
}

// pattern returns n deterministic, moderately compressible bytes.
func pattern(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		if x%7 < 3 {
			b[i] = byte(x >> 24)
		} else {
			b[i] = "initramfs "[i%10]
		}
	}
	return b
}

// makeTree writes a source tree with every kind of entry the tests check;
// all modes are set explicitly so the umask does not matter, and mtimes
// are set to mtime.
func makeTree(t *testing.T, dir string, mtime time.Time) {
	t.Helper()
	files := []struct {
		name string
		mode os.FileMode
		data []byte
	}{
		{"bin/sh", 0o755, []byte("#!/bin/true\n")},
		{"etc/motd", 0o644, []byte("hello from the initramfs\n")},
		{"etc/empty", 0o600, nil},
		{"etc/one", 0o644, []byte("1")},
		{"etc/two", 0o644, []byte("22")},
		{"etc/three", 0o644, []byte("333")},
		{"etc/four", 0o644, []byte("4444")},
		{"etc/five", 0o644, []byte("55555")},
		{"usr/lib/big.bin", 0o644, pattern(3<<20+123, 7)},
		{"usr/lib/a-b", 0o644, []byte("dash")},
		{"usr/share/deep/er/still/file name with spaces", 0o640, []byte("spaces")},
		{"sbin/suid", 0o4755, []byte("suid")},
		{"hard/x", 0o644, []byte("shared content of a hard link\n")},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "hard/sub"), 0o755))
	must(os.Link(filepath.Join(dir, "hard/x"), filepath.Join(dir, "hard/sub/y")))
	must(os.Link(filepath.Join(dir, "hard/x"), filepath.Join(dir, "hard/z")))
	must(os.Symlink("../etc/motd", filepath.Join(dir, "bin/motd-link")))
	must(os.Symlink("/bin/sh", filepath.Join(dir, "sbin/init")))
	must(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o755))
	must(os.Chmod(filepath.Join(dir, "empty-dir"), 0o700))
	must(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o1777))
	must(unix.Mkfifo(filepath.Join(dir, "run-fifo"), 0o644))
	must(os.Chmod(filepath.Join(dir, "run-fifo"), 0o620))
	must(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(mtime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())})
	}))
}

// makeKO returns a minimal relocatable ELF64 file with a .modinfo section
// holding the given NUL-separated key=value strings.
func makeKO(kv ...string) []byte {
	var modinfo bytes.Buffer
	for _, s := range kv {
		modinfo.WriteString(s)
		modinfo.WriteByte(0)
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	le := binary.LittleEndian
	const ehsize, shentsize = 64, 64
	infoOff := ehsize
	strOff := infoOff + modinfo.Len()
	shOff := (strOff + len(shstr) + 7) &^ 7
	out := make([]byte, shOff+3*shentsize)
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(out[16:], 1)  // ET_REL
	le.PutUint16(out[18:], 62) // EM_X86_64
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[40:], uint64(shOff))
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[58:], shentsize)
	le.PutUint16(out[60:], 3)
	le.PutUint16(out[62:], 2)
	copy(out[infoOff:], modinfo.Bytes())
	copy(out[strOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		s := out[shOff+i*shentsize:]
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
	}
	sh(1, 1, 1, infoOff, modinfo.Len()) // .modinfo PROGBITS
	sh(2, 10, 3, strOff, len(shstr))    // .shstrtab STRTAB
	return out
}

// buildBytes writes a with opts and returns the bytes.
func buildBytes(t testing.TB, a *Archive, opts WriteOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := a.Write(context.Background(), &b, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// mustAdd adds sources to a.
func mustAdd(t testing.TB, a *Archive, srcs ...Source) {
	t.Helper()
	for _, s := range srcs {
		if err := s.AddTo(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
}

// walkAll walks b and calls fn with each header and segment.
func walkAll(b []byte, fn func(h *Header, seg Segment)) error {
	return Walk(context.Background(), bytes.NewReader(b), func(h *Header, seg Segment, _ io.Reader) error {
		fn(h, seg)
		return nil
	})
}
