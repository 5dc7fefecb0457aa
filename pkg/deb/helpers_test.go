package deb

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// tarEnt is one entry of a test tar; size, when set, overrides the
// header's size (to declare more than the body holds).
type tarEnt struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64
}

func file(name, body string, mode int64) tarEnt {
	return tarEnt{name: name, body: body, typ: tar.TypeReg, mode: mode}
}
func dir(name string, mode int64) tarEnt { return tarEnt{name: name, typ: tar.TypeDir, mode: mode} }
func symlink(name, target string) tarEnt {
	return tarEnt{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) tarEnt {
	return tarEnt{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

// makeTar writes the entries as dpkg-deb does (GNU format, root owner);
// an entry whose size exceeds its body ends the archive there, truncated.
func makeTar(t testing.TB, ents []tarEnt) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		size := int64(len(e.body))
		if e.typ != tar.TypeReg {
			size = 0
		}
		if e.size != 0 {
			size = e.size
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: size,
			ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root", Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
		if size > int64(len(e.body)) {
			tw.Flush()
			return buf.Bytes() // truncated on purpose
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress compresses b; xzBlock > 0 makes a multi-block xz stream with
// blocks of that many bytes, as multi-threaded xz writes.
func compress(t testing.TB, c Compression, b []byte, xzBlock int64) []byte {
	var buf bytes.Buffer
	switch c {
	case None:
		return b
	case Gzip:
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
	case Zstd:
		w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
	case XZ:
		cfg := xz.WriterConfig{DictCap: 1 << 16}
		if xzBlock > 0 {
			cfg.BlockSize = xzBlock
		}
		w, err := cfg.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
	default:
		t.Fatalf("compression %s", c)
	}
	return buf.Bytes()
}

func suffix(c Compression) string {
	for _, s := range suffixes {
		if s.c == c {
			return s.ext
		}
	}
	return ".unknown"
}

type arMem struct {
	name string
	data []byte
	size int64 // overrides the header's size when set
}

func makeAr(ms []arMem) []byte {
	var buf bytes.Buffer
	buf.WriteString(arMagic)
	for _, m := range ms {
		size := int64(len(m.data))
		if m.size != 0 {
			size = m.size
		}
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 1700000000, 0, 0, "100644", size)
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

const testControl = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libc6 (>= 2.36), foo | bar:any\nDescription: a test\n second line\n"

// makeDeb builds a package with the given data entries.
func makeDeb(t testing.TB, c Compression, data []tarEnt) []byte {
	ctl := makeTar(t, []tarEnt{dir("./", 0o755), file("./control", testControl, 0o644)})
	return makeAr([]arMem{
		{name: "debian-binary", data: []byte("2.0\n")},
		{name: "control.tar" + suffix(c), data: compress(t, c, ctl, 0)},
		{name: "data.tar" + suffix(c), data: compress(t, c, makeTar(t, data), 0)},
	})
}

func openBytes(t testing.TB, b []byte) (*Package, error) {
	t.Helper()
	return Open(context.Background(), bytes.NewReader(b), int64(len(b)))
}
