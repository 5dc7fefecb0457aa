package measure

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

const benchPages = 64 << 20 / snp.PageSize // 64 MiB of measured pages

// pageSource generates page i of the benchmark image: distinct, non-zero
// contents (so nothing is deduplicated or measured as a zero page).
type pageSource struct{}

func (pageSource) ReadAt(p []byte, off int64) (int, error) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(off+int64(i))*0x9e3779b97f4a7c15+1)
	}
	return len(p), nil
}

// bigIGVM writes a 64 MiB SNP IGVM file (benchPages pages and a VMSA) to
// dir and returns its path.
func bigIGVM(tb testing.TB, dir string) string {
	tb.Helper()
	return bigIGVMPages(tb, dir, benchPages)
}

// bigIGVMPages writes an SNP IGVM file of n distinct pages and a VMSA.
func bigIGVMPages(tb testing.TB, dir string, n int) string {
	tb.Helper()
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	src := pageSource{}
	for i := 0; i < n; i++ {
		b.Add(&igvm.PageData{GPA: 0x100000 + uint64(i)*snp.PageSize, CompatibilityMask: 1},
			io.NewSectionReader(src, int64(i)*snp.PageSize, snp.PageSize))
	}
	v := tinyVMSA()
	b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	path := filepath.Join(dir, "big.igvm")
	fh, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	if _, err := b.WriteTo(fh); err != nil {
		tb.Fatal(err)
	}
	return path
}

func measureFile(tb testing.TB, path string, p Profile) *Result {
	fh, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	res, err := MeasureIGVMFile(context.Background(), fh, st.Size(), Options{Profile: p})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// BenchmarkMeasureIGVM64MiB measures a 64 MiB IGVM file read from disk
// (page cache); compare with BenchmarkSHA384Pages64MiB, the bound is 1.25x
// (scripts/bench/measure-igvm.sh prints the ratio).
func BenchmarkMeasureIGVM64MiB(b *testing.B) {
	path := bigIGVM(b, b.TempDir())
	for _, p := range Profiles {
		b.Run(string(p), func(b *testing.B) {
			b.SetBytes(benchPages * snp.PageSize)
			measureFile(b, path, p) // warm the page cache
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				measureFile(b, path, p)
			}
		})
	}
}

// BenchmarkSHA384Pages64MiB is the bound: SHA-384 of the same pages, one
// hash per 4 KiB page, data already in memory.
func BenchmarkSHA384Pages64MiB(b *testing.B) {
	page := make([]byte, snp.PageSize)
	var pages [][]byte
	for i := 0; i < benchPages; i++ {
		p := make([]byte, snp.PageSize)
		pageSource{}.ReadAt(p, int64(i)*snp.PageSize)
		pages = append(pages, p)
	}
	_ = page
	h := sha512.New384()
	var sum [48]byte
	b.SetBytes(benchPages * snp.PageSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range pages {
			h.Reset()
			h.Write(p)
			h.Sum(sum[:0])
		}
	}
}

// TestMeasureIGVMMemoryFlat: measuring 64 MiB allocates far less than the
// file (pages are streamed, not loaded).
func TestMeasureIGVMMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MiB file")
	}
	path := bigIGVM(t, t.TempDir())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := measureFile(t, path, ProfileKVM)
	runtime.ReadMemStats(&after)
	if res.Pages != benchPages+1 {
		t.Fatalf("%d pages measured", res.Pages)
	}
	// The headers (24 bytes each) are held by the reader; page data not.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("measuring 64 MiB allocated %d MiB", alloc>>20)
	}
	// The same with mshv (sorted by GPA).
	runtime.ReadMemStats(&before)
	measureFile(t, path, ProfileMSHV)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("mshv: measuring 64 MiB allocated %d MiB", alloc>>20)
	}
}

// cpuTime is the CPU time (user + system) the process has used so far.
// The ratio benchmark compares CPU time rather than wall time, so that other
// processes on a busy machine do not distort it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMeasureIGVMRatio interleaves the bound (SHA-384 of the pages,
// on one goroutine) and both profiles in every iteration, in a rotating
// order (the second and third runs of an iteration came out ~5% slower
// than the first), and reports the ratios of the best CPU times (user +
// system; run with -cpu 1 for the one-core comparison) and of the best
// wall times (with -cpu 2 or more, measure hashes pages on several cores).
func BenchmarkMeasureIGVMRatio(b *testing.B) {
	path := bigIGVM(b, b.TempDir())
	pages := make([][]byte, benchPages)
	for i := range pages {
		pages[i] = make([]byte, snp.PageSize)
		pageSource{}.ReadAt(pages[i], int64(i)*snp.PageSize)
	}
	h := sha512.New384()
	var sum [48]byte
	bestCPU := map[string]time.Duration{}
	bestWall := map[string]time.Duration{}
	keep := func(best map[string]time.Duration, name string, d time.Duration) {
		if v, ok := best[name]; !ok || d < v {
			best[name] = d
		}
	}
	runs := []func() string{
		func() string {
			for _, p := range pages {
				h.Reset()
				h.Write(p)
				h.Sum(sum[:0])
			}
			return "sha384"
		},
	}
	for _, p := range Profiles {
		runs = append(runs, func() string { measureFile(b, path, p); return string(p) })
	}
	measureFile(b, path, ProfileKVM) // warm the page cache
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range runs {
			runtime.GC() // collect outside the timed sections
			c0, w0 := cpuTime(), time.Now()
			name := runs[(i+j)%len(runs)]()
			keep(bestCPU, name, cpuTime()-c0)
			keep(bestWall, name, time.Since(w0))
		}
	}
	b.ReportMetric(float64(bestCPU["sha384"].Milliseconds()), "sha384-ms")
	for _, p := range Profiles {
		b.ReportMetric(float64(bestCPU[string(p)])/float64(bestCPU["sha384"]), string(p)+"/sha384")
		b.ReportMetric(float64(bestWall[string(p)])/float64(bestWall["sha384"]), string(p)+"/sha384-wall")
	}
}
