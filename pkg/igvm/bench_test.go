package igvm

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// synthFile writes n bytes of page-distinct content to a file in dir.
func synthFile(tb testing.TB, dir string, n int64) *os.File {
	tb.Helper()
	f, err := os.Create(filepath.Join(dir, "payload"))
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], uint64(off+int64(i))*0x9e3779b97f4a7c15|1)
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), n-off)]); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// payloadBuilder loads n bytes of src as pages at 0x4000000.
func payloadBuilder(src io.ReaderAt, n int64) *Builder {
	var b Builder
	b.Add(snpPlatform(1), nil)
	b.Add(&GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	for off := int64(0); off < n; off += PageSize4K {
		b.Add(page(0x4000000+uint64(off), 0), io.NewSectionReader(src, off, min(PageSize4K, n-off)))
	}
	b.Add(&VPContext{GPA: 0x3000, CompatibilityMask: 1}, Bytes(make([]byte, 4096)))
	return &b
}

// BenchmarkWrite64MiB writes an IGVM holding a 64 MiB file as pages.
func BenchmarkWrite64MiB(b *testing.B) {
	const n = 64 << 20
	src := synthFile(b, b.TempDir(), n)
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := payloadBuilder(src, n).WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriterStreams checks that writing 64 MiB of page data allocates far
// less than the data: sources are read through small buffers.
func TestWriterStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	const n = 64 << 20
	src := synthFile(t, t.TempDir(), n)
	out, err := os.Create(filepath.Join(t.TempDir(), "out.igvm"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	written, err := payloadBuilder(src, n).WriteTo(out)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 24<<20 {
		t.Errorf("writing %d bytes allocated %d bytes", written, alloc)
	}
	st, _ := out.Stat()
	f, err := Open(out, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	// Spot-check page contents against the source.
	mem := f.Memory()
	for _, off := range []int64{0, 4096 * 1000, n - 4096} {
		got, want := make([]byte, 4096), make([]byte, 4096)
		if _, err := mem.ReadAt(got, 0x4000000+off); err != nil {
			t.Fatal(err)
		}
		src.ReadAt(want, off)
		if string(got) != string(want) {
			t.Errorf("page at source offset %#x differs", off)
		}
	}
	t.Logf("wrote %d bytes, allocated %d bytes", written, after.TotalAlloc-before.TotalAlloc)
}

// BenchmarkOpen16KPages opens (decodes and validates the headers of) an
// IGVM holding 64 MiB of 4 KiB pages: 16,386 headers.
func BenchmarkOpen16KPages(b *testing.B) {
	const n = 64 << 20
	src := synthFile(b, b.TempDir(), n)
	out, err := os.Create(filepath.Join(b.TempDir(), "out.igvm"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	size, err := payloadBuilder(src, n).WriteTo(out)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(out, size); err != nil {
			b.Fatal(err)
		}
	}
}
