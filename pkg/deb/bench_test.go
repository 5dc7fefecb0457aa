package deb

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// BenchmarkExtractKernelDeb extracts the whole cached Debian kernel
// package (scripts/bench/deb.sh compares it with dpkg-deb -x).
func BenchmarkExtractKernelDeb(b *testing.B) {
	k := fixtures.DebianKernelDeb(b)
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(b.TempDir(), "x")
		p, f, err := OpenFile(context.Background(), k.Deb)
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Extract(context.Background(), dir, ExtractOptions{})
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(res.Bytes)
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
