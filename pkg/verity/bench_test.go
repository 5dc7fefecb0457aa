//go:build unix

package verity

import (
	"crypto/sha256"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// benchFile is a data file of size bytes in a temporary directory.
func benchFile(b *testing.B, size int64) *os.File {
	b.Helper()
	f, err := os.Create(b.TempDir() + "/data")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(testData(size, 1)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// BenchmarkFormat formats a 256 MiB file (sha256, 4 KiB blocks, 32-byte
// salt), reading it from the page cache.
func BenchmarkFormat(b *testing.B) {
	const size = 256 << 20
	f := benchFile(b, size)
	p := DefaultParams()
	p.Salt = SaltFromSeed(nil)
	b.SetBytes(size)
	b.ResetTimer()
	c0 := cpuTime()
	for range b.N {
		if _, err := Format(bg, f, size, discard{}, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-c0)/float64(b.N), "cpu-s/op")
}

// cpuTime is the user and system CPU time of the process in seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkRawSHA256 is the bound: sha256 of the same 4 KiB blocks (salt
// first) on all cores, from memory, without a tree.
func BenchmarkRawSHA256(b *testing.B) {
	const size = 256 << 20
	data := testData(size, 1)
	salt := SaltFromSeed(nil)
	workers := runtime.GOMAXPROCS(0)
	b.SetBytes(size)
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { b.ReportMetric((cpuTime()-c0)/float64(b.N), "cpu-s/op") }()
	for range b.N {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := sha256.New()
				var sum [32]byte
				blocks := size / 4096
				for i := blocks * w / workers; i < blocks*(w+1)/workers; i++ {
					h.Reset()
					h.Write(salt)
					h.Write(data[i*4096 : (i+1)*4096])
					h.Sum(sum[:0])
				}
			}()
		}
		wg.Wait()
	}
}
