package measure

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// cancellingReader cancels a context once more than after bytes were read,
// and counts what is read after that.
type cancellingReader struct {
	r       io.ReaderAt
	after   int64
	cancel  context.CancelFunc
	read    atomic.Int64
	overrun atomic.Int64
}

func (c *cancellingReader) ReadAt(p []byte, off int64) (int, error) {
	if c.read.Add(int64(len(p))) > c.after {
		c.cancel()
		c.overrun.Add(int64(len(p)))
	}
	return c.r.ReadAt(p, off)
}

// pagesIGVM is an IGVM file of n distinct 4 KiB pages and a VMSA.
func pagesIGVM(t testing.TB, n int) []byte {
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	data := make([]byte, n*snp.PageSize)
	for i := range n {
		data[i*snp.PageSize] = byte(i)
		data[i*snp.PageSize+1] = byte(i >> 8)
	}
	for i := range n {
		b.Add(&igvm.PageData{GPA: uint64(i) * snp.PageSize, CompatibilityMask: 1}, io.NewSectionReader(bytes.NewReader(data), int64(i)*snp.PageSize, snp.PageSize))
	}
	v := tinyVMSA()
	b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	return igvmtest.Write(t, &b)
}

// A cancelled context stops a measurement soon: within a bounded number
// of pages after the cancellation (ctxCheckPages, plus the hash pool's
// read-ahead), not at the end of the file.
func TestMeasureIGVMCancel(t *testing.T) {
	file := pagesIGVM(t, 8192) // 32 MiB of pages
	for _, p := range Profiles {
		for _, workers := range []int{1, 3} {
			withWorkers(t, workers, func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				r := &cancellingReader{r: bytes.NewReader(file), after: 4 << 20, cancel: cancel}
				f, err := igvm.Open(r, int64(len(file)))
				if err != nil {
					t.Fatal(err)
				}
				r.read.Store(0)
				_, err = MeasureIGVM(ctx, f, Options{Profile: p, SkipKVMChecks: true})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("%s, %d workers: %v, want context.Canceled", p, workers, err)
				}
				// ctxCheckPages pages, the pool's queue (2 x workers x 64 pages
				// a batch) and a read-ahead run: a few MiB, not the 28 MiB left.
				if o := r.overrun.Load(); o > 12<<20 {
					t.Errorf("%s, %d workers: %d bytes read after the cancellation", p, workers, o)
				}
			})
		}
	}
	// Every entry point returns the context's error before any work.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := igvm.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureIGVM(ctx, f, Options{Profile: ProfileMSHV}); !errors.Is(err, context.Canceled) {
		t.Errorf("MeasureIGVM: %v", err)
	}
	if _, err := ComputeReferenceValues(ctx, f, RefSpec{Profiles: []Profile{ProfileMSHV}}); !errors.Is(err, context.Canceled) {
		t.Errorf("ComputeReferenceValues: %v", err)
	}
	if _, err := SignIGVM(ctx, f, IGVMSignOptions{Measure: Options{Profile: ProfileMSHV}}); !errors.Is(err, context.Canceled) {
		t.Errorf("SignIGVM: %v", err)
	}
	fw, err := ParseOVMF(synthOVMF(t, 512, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureOVMF(ctx, fw, OVMFConfig{VCPUs: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("MeasureOVMF: %v", err)
	}
	if _, err := OVMFHash(ctx, fw); !errors.Is(err, context.Canceled) {
		t.Errorf("OVMFHash: %v", err)
	}
	if _, err := HashKernel(ctx, bytes.NewReader(make([]byte, 1<<20)), nil, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("HashKernel: %v", err)
	}
}
