package inspect

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// synth is a ReaderAt of n bytes of deterministic, page-distinct content
// (no two 4 KiB pages equal), generated on the fly.
type synth struct{ n int64 }

func (s synth) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.n {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < s.n {
		pos := off + int64(n)
		word := pos &^ 7
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], uint64(word)*0x9e3779b97f4a7c15|1)
		c := copy(p[n:], w[pos-word:])
		if rem := s.n - pos; int64(c) > rem {
			c = int(rem)
		}
		n += c
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// bigIGVM writes the d01 vector with size bytes of extra data pages (an
// "initrd" at 0x10000000) to dir and returns its path.
func bigIGVM(tb testing.TB, dir string, size int64) string {
	tb.Helper()
	ref := open(tb, "../../../testdata/igvm/d01_kata_clh_short.igvm")
	var b igvm.Builder
	src := synth{size}
	for _, h := range ref.Headers {
		if _, ok := h.(*igvm.SNPIDBlock); ok {
			for off := int64(0); off < size; off += igvm.PageSize4K {
				b.Add(&igvm.PageData{GPA: 0x10000000 + uint64(off), CompatibilityMask: 1},
					io.NewSectionReader(src, off, min(igvm.PageSize4K, size-off)))
			}
		}
		var d *io.SectionReader
		if igvm.HasData(h) {
			d = ref.DataReader(h)
		}
		b.Add(h, d)
	}
	path := filepath.Join(dir, "big.igvm")
	out, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := b.WriteTo(out); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkInspect100MiB opens, validates and inspects a 100 MiB IGVM file
// (25,600 data pages plus the d01 layout). Target: well under 1 s per op.
func BenchmarkInspect100MiB(b *testing.B) {
	path := bigIGVM(b, b.TempDir(), 100<<20)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fh, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f, err := igvm.Open(fh, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		r, err := Inspect(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
		fh.Close()
		if r.Linux == nil || len(r.Directives) == 0 {
			b.Fatal("incomplete report")
		}
	}
}

// TestInspectBigFileStreams checks that inspecting a 100 MiB file neither
// reads it whole nor allocates memory in proportion to it.
func TestInspectBigFileStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 100 MiB file")
	}
	path := bigIGVM(t, t.TempDir(), 100<<20)
	st, _ := os.Stat(path)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cr := &countingReaderAt{r: fh}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := igvm.Open(cr, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if r.Directives[len(r.Directives)-2].Pages != 25600 {
		t.Errorf("big run folded into %+v", r.Directives[len(r.Directives)-2])
	}
	if cr.n > 8<<20 {
		t.Errorf("inspect read %d bytes of a %d-byte file", cr.n, st.Size())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("inspect allocated %d bytes for a %d-byte file", alloc, st.Size())
	}
	t.Logf("read %d bytes, allocated %d bytes", cr.n, after.TotalAlloc-before.TotalAlloc)
}

type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}
