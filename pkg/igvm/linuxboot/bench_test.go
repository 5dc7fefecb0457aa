package linuxboot

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// noise fills b with a cheap pseudo-random stream (xorshift), so no two
// pages are equal and the writer cannot deduplicate them.
func noise(b []byte, seed uint64) {
	x := seed | 1
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
}

// bigKernel is a bzImage with an 8 MiB payload and a Debian-like init_size.
func bigKernel(tb testing.TB) *BzImage {
	payload := make([]byte, 8<<20)
	noise(payload, 1)
	k, err := ParseBzImage(fakeBzImage(payload, func(b []byte) {
		binary.LittleEndian.PutUint32(b[0x260:], 0x3f98000)
	}))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// buildToFile builds and writes the IGVM to path, as the CLI does.
func buildToFile(tb testing.TB, k *BzImage, initrd []byte, path string) int64 {
	img, err := Build(context.Background(), k, Options{Cmdline: "console=ttyS0 panic=-1", Initrd: initrd, PvalidateOpt: true, EncryptedPage: true, SVME: true})
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	n, err := img.WriteTo(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkBuild64MiBInitrd builds and writes the IGVM of an 8 MiB bzImage
// with a 64 MiB initrd (target: under 0.5 s/op). alloc-MiB/op is the
// memory allocated per build beyond the inputs, which must stay small
// next to the 64 MiB initrd.
func BenchmarkBuild64MiBInitrd(b *testing.B) {
	k := bigKernel(b)
	initrd := make([]byte, 64<<20)
	noise(initrd, 2)
	out := filepath.Join(b.TempDir(), "out.igvm")
	b.SetBytes(int64(len(k.Payload) + len(initrd)))
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for b.Loop() {
		buildToFile(b, k, initrd, out)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/op")
}

// allocatedBy returns the bytes allocated while f runs.
func allocatedBy(f func()) uint64 {
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	f()
	runtime.ReadMemStats(&ms1)
	return ms1.TotalAlloc - ms0.TotalAlloc
}

// TestMemoryDoesNotGrowWithInitrd: building with a 64 MiB initrd allocates
// only per-page bookkeeping more than with a 16 MiB one, never a copy of
// the initrd (the initrd itself is the one copy, made by the caller).
func TestMemoryDoesNotGrowWithInitrd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two large images; skipped with -short")
	}
	k := bigKernel(t)
	out := filepath.Join(t.TempDir(), "out.igvm")
	small := make([]byte, 16<<20)
	noise(small, 3)
	large := make([]byte, 64<<20)
	noise(large, 4)
	a := allocatedBy(func() { buildToFile(t, k, small, out) })
	b := allocatedBy(func() { buildToFile(t, k, large, out) })
	growth := int64(b) - int64(a)
	t.Logf("allocated %.1f MiB with a 16 MiB initrd, %.1f MiB with 64 MiB (growth %.1f MiB for 48 MiB more initrd)",
		float64(a)/(1<<20), float64(b)/(1<<20), float64(growth)/(1<<20))
	if growth > 48<<20/4 {
		t.Errorf("allocations grow by %d bytes for 48 MiB more initrd: the initrd is being copied", growth)
	}
}
