package measure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// withWorkers runs fn with hashWorkers set to n and the pool threshold
// lowered to one page, so the small vector files use the pool too.
func withWorkers(t *testing.T, n int, fn func()) {
	t.Helper()
	saved := hashWorkers
	hashWorkers = func() int { return n }
	defer func() { hashWorkers = saved }()
	fn()
}

// mixedIGVM has every kind of PAGE_DATA the profiles treat differently:
// 4 KiB and 2 MiB pages with data, zero pages, shared, unmeasured,
// secrets and CPUID pages, a parameter insert, and pages whose file data
// is not contiguous (deduplicated contents), in an order that is not the
// GPA order.
func mixedIGVM(t *testing.T) *igvm.File {
	t.Helper()
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.ParameterArea{NumberOfBytes: 2 * snp.PageSize, ParameterAreaIndex: 0}, nil)
	b.Add(&igvm.VPCountParameter{ParameterAreaIndex: 0}, nil)
	b.Add(&igvm.ParameterInsert{GPA: 0x8000, CompatibilityMask: 1, ParameterAreaIndex: 0}, nil)
	src := pageSource{}
	page := func(i int) *io.SectionReader {
		return io.NewSectionReader(src, int64(i%700)*snp.PageSize, snp.PageSize)
	}
	for i := 0; i < 1000; i++ {
		gpa := 0x1000000 + uint64(i)*snp.PageSize
		if i%3 == 0 {
			gpa = 0x2000000 - uint64(i)*snp.PageSize // out of GPA order
		}
		pd := &igvm.PageData{GPA: gpa, CompatibilityMask: 1}
		data := page(i)
		switch i % 97 {
		case 5:
			pd.Flags = igvm.PageFlagShared
		case 11:
			pd.Flags = igvm.PageFlagUnmeasured
		case 13:
			data = nil
		}
		b.Add(pd, data)
	}
	b.Add(&igvm.PageData{GPA: 0x4000000, CompatibilityMask: 1, Flags: igvm.PageFlag2MB}, io.NewSectionReader(src, 0x100000, igvm.PageSize2M))
	b.Add(&igvm.PageData{GPA: 0x9000, CompatibilityMask: 1, DataType: igvm.DataSecrets}, nil)
	b.Add(&igvm.PageData{GPA: 0xa000, CompatibilityMask: 1, DataType: igvm.DataCPUID}, page(3))
	v := tinyVMSA()
	b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	f := igvmtest.Reparse(t, &b)
	return f
}

// TestHashPoolSameResult: hashing pages on workers gives the same result
// (digest, regions, warnings) as hashing them in the chain, for every
// vector file and a file with every kind of page, under both profiles.
func TestHashPoolSameResult(t *testing.T) {
	files := map[string]*igvm.File{"mixed": mixedIGVM(t)}
	for _, c := range vectorCases(t) {
		files[c.Name] = openVector(t, c)
	}
	genoa, err := LookupCPU("genoa")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range files {
		for _, p := range Profiles {
			opts := Options{Profile: p, VCPUs: 2, CPU: &genoa, Explain: true}
			measure := func(workers int) []byte {
				var res *Result
				withWorkers(t, workers, func() {
					saved := poolMin
					poolMin = 1
					defer func() { poolMin = saved }()
					var err error
					res, err = MeasureIGVM(context.Background(), f, opts)
					var kvmErr *KVMCheckError
					if errors.As(err, &kvmErr) {
						o := opts
						o.SkipKVMChecks = true
						res, err = MeasureIGVM(context.Background(), f, o)
					}
					if err != nil {
						t.Fatalf("%s/%s, %d workers: %v", name, p, workers, err)
					}
				})
				b, err := json.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			seq, par := measure(1), measure(3)
			if !reflect.DeepEqual(seq, par) {
				t.Errorf("%s/%s: the pool gives\n%s\nsequential gives\n%s", name, p, par, seq)
			}
		}
	}
}

// failingReader fails reads that touch the page at bad.
type failingReader struct {
	r   io.ReaderAt
	bad int64
}

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off < f.bad+snp.PageSize && f.bad < off+int64(len(p)) {
		return 0, errors.New("disk on fire")
	}
	return f.r.ReadAt(p, off)
}

// TestHashPoolReadError: a read error in the pool is reported, as in the
// sequential path, and stops the pool.
func TestHashPoolReadError(t *testing.T) {
	path := bigIGVMPages(t, t.TempDir(), 2048)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := int64(len(data)) / 2 &^ (snp.PageSize - 1)
	f, err := igvm.Open(failingReader{bytes.NewReader(data), bad}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for _, workers := range []int{1, 3} {
		withWorkers(t, workers, func() {
			_, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileKVM})
			if err == nil || !strings.HasPrefix(err.Error(), "measure: read page data at") || !strings.HasSuffix(err.Error(), "disk on fire") {
				t.Errorf("%d workers: error %v", workers, err)
			}
		})
	}
	// The pool's goroutines end once the measurement has failed.
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines left running, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
