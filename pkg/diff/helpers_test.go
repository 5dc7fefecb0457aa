package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// tent is one entry of a test tar.
type tent struct {
	name   string
	typ    byte
	mode   int64
	uid    int
	gid    int
	body   string
	link   string
	major  int64
	minor  int64
	xattrs map[string]string
}

func mkTar(t testing.TB, ents []tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// memDisk is an in-memory rootfs.Disk.
type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) Truncate(n int64) error {
	if n <= int64(len(m.b)) {
		m.b = m.b[:n]
		return nil
	}
	m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	return nil
}

// buildDisk builds a root disk from one tar layer with pkg/rootfs.
func buildDisk(t testing.TB, ents []tent) []byte {
	t.Helper()
	return buildDiskAt(t, ents, 0)
}

// buildDiskAt is buildDisk with another SOURCE_DATE_EPOCH.
func buildDiskAt(t testing.TB, ents []tent, epoch int64) []byte {
	t.Helper()
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(layer, mkTar(t, ents), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(dir, "kata-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\necho kata-agent stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := source.Parse("tar:" + layer)
	if err != nil {
		t.Fatal(err)
	}
	d := &memDisk{}
	if _, err := rootfs.Build(context.Background(), rootfs.Options{Sources: []source.Source{src}, Agent: agent, Seed: "diff-test", SourceDateEpoch: epoch}, d); err != nil {
		t.Fatal(err)
	}
	return d.b
}

func compareBytes(t testing.TB, a, b []byte, opts Options) (*Result, error) {
	t.Helper()
	return Compare(context.Background(), Artifact{Name: "a", R: bytes.NewReader(a), Size: int64(len(a))},
		Artifact{Name: "b", R: bytes.NewReader(b), Size: int64(len(b))}, opts)
}

// lines is the text form of the differences, one per line, derived ones
// marked with "~ ".
func lines(r *Result) string {
	var b strings.Builder
	for _, d := range r.Differences {
		if d.Derived {
			b.WriteString("~ ")
		}
		b.WriteString(d.Line())
		b.WriteByte('\n')
	}
	return b.String()
}

// primaryLines is the text form of the differences that are not derived.
func primaryLines(r *Result) []string {
	var out []string
	for _, d := range r.Differences {
		if !d.Derived {
			out = append(out, d.Line())
		}
	}
	return out
}

func text(t testing.TB, r *Result) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// mkInitrd writes an initrd of the given entries (type bits in Mode).
func mkInitrd(t testing.TB, ents []initrd.Entry, opts initrd.WriteOptions) []byte {
	t.Helper()
	a := initrd.New()
	defer a.Close()
	for _, e := range ents {
		if err := a.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := a.Write(context.Background(), &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
