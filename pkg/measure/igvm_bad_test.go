package measure

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// tinyIGVM builds a small valid file on the given platform: two pages (one
// with data, one without), a parameter area insert and a VMSA.
func tinyIGVM(t testing.TB, platform uint8, withVMSA bool) []byte {
	t.Helper()
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: platform, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
	b.Add(&igvm.PageData{GPA: 0x2000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.ParameterArea{NumberOfBytes: 0x2000, ParameterAreaIndex: 0}, nil)
	b.Add(&igvm.VPCountParameter{ParameterAreaIndex: 0, ByteOffset: 0}, nil)
	b.Add(&igvm.ParameterInsert{GPA: 0x10000, CompatibilityMask: 1, ParameterAreaIndex: 0}, nil)
	if withVMSA {
		v := snp.VMSA{CR0: 0x31, SEVFeatures: 1, MXCSR: 0x1f80, X87FCW: 0x37f}
		b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	}
	return igvmtest.Write(t, &b)
}

// The tiny file measured by hand with the chain: both profiles.
func TestTinyIGVM(t *testing.T) {
	file := tinyIGVM(t, igvm.PlatformSEVSNP, true)
	v := snp.VMSA{CR0: 0x31, SEVFeatures: 1, MXCSR: 0x1f80, X87FCW: 0x37f}
	mshv := NewChain(Digest{})
	must(t, mshv.AddPage(0x1000, snp.PageNormal, []byte("hello")))
	must(t, mshv.AddPage(0x2000, snp.PageNormal, nil))
	must(t, mshv.AddPage(0x10000, snp.PageUnmeasured, nil))
	must(t, mshv.AddPage(KVMVMSAGPA, snp.PageVMSA, v.Marshal()))
	kvm := NewChain(Digest{})
	must(t, kvm.AddPage(0x1000, snp.PageNormal, []byte("hello")))
	must(t, kvm.AddPage(0x2000, snp.PageZero, nil))
	must(t, kvm.AddPage(0x10000, snp.PageUnmeasured, nil))
	must(t, kvm.AddPage(0x11000, snp.PageUnmeasured, nil))
	must(t, kvm.AddPage(KVMVMSAGPA, snp.PageVMSA, v.Marshal()))
	for _, tc := range []struct {
		p    Profile
		want Digest
	}{{ProfileMSHV, mshv.Digest()}, {ProfileKVM, kvm.Digest()}} {
		res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), Options{Profile: tc.p})
		if err != nil {
			t.Fatal(err)
		}
		if res.Digest != tc.want {
			t.Errorf("%s: %s, want %s", tc.p, res.Digest, tc.want)
		}
		if res.Policy != 0x30000 {
			t.Errorf("%s: policy %v", tc.p, res.Policy)
		}
	}
}

func TestIGVMBadInput(t *testing.T) {
	good, err := os.ReadFile("../../testdata/igvm/d01_kata_clh_short.igvm")
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), good...)
	corrupt[40] ^= 0xff // inside the variable headers: CRC mismatch
	milan, _ := LookupCPU("milan")
	ready := tinyIGVM(t, igvm.PlatformSEVSNP, true)
	tests := []struct {
		name string
		file []byte
		opts Options
		want string
	}{
		{"empty", nil, Options{Profile: ProfileMSHV}, "shorter than"},
		{"truncated", good[:len(good)/2], Options{Profile: ProfileMSHV}, "igvm:"},
		{"corrupt header", corrupt, Options{Profile: ProfileMSHV}, "igvm:"},
		{"not SNP", tinyIGVM(t, igvm.PlatformVSMIsolation, false), Options{Profile: ProfileMSHV}, "no SEV-SNP platform"},
		{"kvm without VMSA", tinyIGVM(t, igvm.PlatformSEVSNP, false), Options{Profile: ProfileKVM}, "no VP context"},
		{"zero vcpus", ready, Options{Profile: ProfileKVM, VCPUs: -1}, "want 1 to 512"},
		{"513 vcpus", ready, Options{Profile: ProfileKVM, VCPUs: 513, CPU: &milan}, "want 1 to 512"},
		{"kvm APs without CPU", ready, Options{Profile: ProfileKVM, VCPUs: 2}, "CPU model"},
		{"features without SNP", ready, Options{Profile: ProfileKVM, GuestFeatures: new(uint64)}, "SNP_ACTIVE"},
		{"unknown profile", ready, Options{Profile: "xen"}, "unknown profile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MeasureIGVMFile(context.Background(), bytes.NewReader(tc.file), int64(len(tc.file)), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// A kvm file whose VMSA is fine but is not last.
	var ce *KVMCheckError
	if _, err := MeasureIGVMFile(context.Background(), bytes.NewReader(good), int64(len(good)), Options{Profile: ProfileKVM}); !errors.As(err, &ce) {
		t.Errorf("d01 under kvm: %v", err)
	}
}

func TestReferenceValues(t *testing.T) {
	ready, err := os.ReadFile("../../testdata/measure/kvm-ready.igvm")
	if err != nil {
		t.Fatal(err)
	}
	f, err := igvm.Parse(ready)
	if err != nil {
		t.Fatal(err)
	}
	milan, _ := LookupCPU("milan")
	genoa, _ := LookupCPU("genoa")
	rv, err := ComputeReferenceValues(context.Background(), f, RefSpec{CPUs: []CPUModel{milan, genoa}, VCPUs: []int{1, 2, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Entries) != 3 || rv.Policy != 0x3001f {
		t.Fatalf("entries %d policy %v", len(rv.Entries), rv.Policy)
	}
	for _, e := range rv.Entries[1:] {
		cpu, _ := LookupCPU(e.CPU)
		for _, v := range e.ByVCPUs {
			res, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileKVM, VCPUs: v.VCPUs, CPU: &cpu})
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != v.Digest {
				t.Errorf("%s x%d: reference %s, measured %s", e.CPU, v.VCPUs, v.Digest, res.Digest)
			}
		}
	}
	if _, err := ComputeReferenceValues(context.Background(), f, RefSpec{Profiles: []Profile{ProfileKVM}}); err == nil {
		t.Error("kvm reference values without a CPU model accepted")
	}
	if _, err := ComputeReferenceValues(context.Background(), f, RefSpec{VCPUs: []int{0}}); err == nil {
		t.Error("0 vCPUs accepted")
	}
}

// FuzzMeasureIGVM: any input either fails to parse or measures under both
// profiles without panicking, with the same result whether page contents
// are hashed on the worker pool or in the chain.
func FuzzMeasureIGVM(f *testing.F) {
	f.Add(tinyIGVM(f, igvm.PlatformSEVSNP, true))
	f.Add(tinyIGVM(f, igvm.PlatformSEVSNP, false))
	if b, err := os.ReadFile("../../testdata/igvm/d01_kata_clh_short.igvm"); err == nil {
		f.Add(b)
	}
	milan, _ := LookupCPU("milan")
	if b, err := os.ReadFile("../../testdata/measure/kvm-ready.igvm"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Repair what the mutator breaks first (size, CRC), so mutations
		// reach the measurement.
		if len(b) >= igvm.FixedHeaderSize {
			binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
		}
		igvmtest.FixChecksum(b)
		file, err := igvm.Parse(b)
		if err != nil {
			return
		}
		// Work in proportion to the file: at most 512 pages (a 2 MiB page)
		// per 32-byte header, the parameter areas (bounded by igvm.Open)
		// and one VMSA per vCPU.
		maxPages := uint64(len(b))/32*512 + igvm.MaxParameterAreaBytes/snp.PageSize + MaxVCPUs
		for _, opts := range []Options{
			{Profile: ProfileMSHV, Explain: true},
			{Profile: ProfileKVM, VCPUs: 3, CPU: &milan, SkipKVMChecks: true, Explain: true},
		} {
			var got [2]string
			for i, workers := range []int{1, 3} {
				withWorkers(t, workers, func() {
					saved := poolMin
					poolMin = 1
					defer func() { poolMin = saved }()
					var res *Result
					fuzzbound.Check(t, b, 64, 32<<20, func() { res, err = MeasureIGVM(context.Background(), file, opts) })
					if err == nil && res.Pages > maxPages {
						t.Fatalf("%d pages measured for a %d-byte file", res.Pages, len(b))
					}
					if err != nil {
						got[i] = "error: " + err.Error()
						return
					}
					j, _ := json.Marshal(res)
					got[i] = string(j)
				})
			}
			if got[0] != got[1] {
				t.Errorf("%s: sequential %s, pool %s", opts.Profile, got[0], got[1])
			}
		}
	})
}

// Each rule of igvmmeasure --check-kvm on its own: the kvm profile refuses
// the file with exactly that reason, and --skip-kvm-checks measures it with
// the reason as a warning.
func TestKVMCheckRules(t *testing.T) {
	build := func(t *testing.T, cr0 uint64, gpa uint64, vmsas int, pageAfter bool) []byte {
		var b igvm.Builder
		b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
		b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
		b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
		for i := 0; i < vmsas; i++ {
			v := snp.VMSA{CR0: cr0, SEVFeatures: 1, MXCSR: 0x1f80, X87FCW: 0x37f}
			b.Add(&igvm.VPContext{GPA: gpa - uint64(i)*snp.PageSize, CompatibilityMask: 1, VPIndex: uint16(i)}, igvm.Bytes(v.Marshal()))
		}
		if pageAfter {
			b.Add(&igvm.PageData{GPA: 0x2000, CompatibilityMask: 1}, igvm.Bytes([]byte("late")))
		}
		return igvmtest.Write(t, &b)
	}
	for _, tc := range []struct {
		name      string
		cr0, gpa  uint64
		vmsas     int
		pageAfter bool
		want      string // "" = accepted
	}{
		{"protected mode", 0x31, KVMVMSAGPA, 1, false, ""},
		{"real mode", 0x30, KVMVMSAGPA, 1, false, ""},
		{"paging", 0x80000011, KVMVMSAGPA, 1, false, "VMSA CR0 is 0x80000011"},
		{"other GPA", 0x31, 0x5000, 1, false, "VMSA at GPA 0x5000"},
		{"page after VMSA", 0x31, KVMVMSAGPA, 1, true, "page directive at 0x2000 follows the VMSA"},
		{"two VMSAs", 0x31, KVMVMSAGPA, 2, false, "more than one VMSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := build(t, tc.cr0, tc.gpa, tc.vmsas, tc.pageAfter)
			_, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), Options{Profile: ProfileKVM})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *KVMCheckError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a KVMCheckError", err)
			}
			// Two VMSAs: the second is also at another GPA, so two reasons.
			if !strings.Contains(ce.Reasons[0], tc.want) || tc.vmsas == 1 && len(ce.Reasons) != 1 {
				t.Errorf("reasons %q, want only %q", ce.Reasons, tc.want)
			}
			res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), Options{Profile: ProfileKVM, SkipKVMChecks: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.KVMChecksSkipped) == 0 || !strings.Contains(res.KVMChecksSkipped[0], tc.want) {
				t.Errorf("skipped checks %q, want %q", res.KVMChecksSkipped, tc.want)
			}
		})
	}
}
