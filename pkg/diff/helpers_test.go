package diff

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// tent is one entry of a test tar.
type tent = rootfstest.TarEntry

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
	if err := os.WriteFile(layer, rootfstest.Tar(t, ents), 0o644); err != nil {
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
	d := &rootfstest.MemDisk{}
	if _, err := rootfs.Build(context.Background(), rootfs.Options{Sources: []source.Source{src}, Agent: agent, Seed: "diff-test", SourceDateEpoch: epoch}, d); err != nil {
		t.Fatal(err)
	}
	return d.B
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
