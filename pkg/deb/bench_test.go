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

// BenchmarkExtractKernelFiles takes the kernel and its modules tree out
// of the cached Debian kernel package as files (ExtractKernel).
func BenchmarkExtractKernelFiles(b *testing.B) {
	benchKernel(b, func(p *Package, dir string) (*Kernel, error) {
		return ExtractKernel(context.Background(), p, filepath.Join(dir, "x"))
	})
}

// BenchmarkExtractKernelFS takes the same into one spool file
// (ExtractKernelFS), what the build's kernel stage does.
func BenchmarkExtractKernelFS(b *testing.B) {
	benchKernel(b, func(p *Package, dir string) (*Kernel, error) {
		f, err := os.Create(filepath.Join(dir, "spool"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		k, _, err := ExtractKernelFS(context.Background(), p, f)
		return k, err
	})
}

func benchKernel(b *testing.B, extract func(p *Package, dir string) (*Kernel, error)) {
	k := fixtures.DebianKernelDeb(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		p, f, err := OpenFile(context.Background(), k.Deb)
		if err != nil {
			b.Fatal(err)
		}
		kern, err := extract(p, dir)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(kern.Bytes)
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
