package measure

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
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
		v := tinyVMSA()
		b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	}
	return igvmtest.Write(t, &b)
}

// tinyVMSA is a protected-mode BSP state KVM accepts.
func tinyVMSA() snp.VMSA {
	return snp.VMSA{CR0: 0x31, XCR0: 1, SEVFeatures: 1, MXCSR: 0x1f80, X87FCW: 0x37f}
}

// The tiny file measured by hand with the chain: both profiles. Under kvm
// the page without data is a NORMAL zero page, measured after the
// parameter area (QEMU queues the insert while the zero page's region is
// still open), the parameter area is measured page by page, and the VMSA
// is KVM's: EFER.SVME, CR4.MCE and RFLAGS bit 1 added.
func TestTinyIGVM(t *testing.T) {
	file := tinyIGVM(t, igvm.PlatformSEVSNP, true)
	v := tinyVMSA()
	kv := v
	kv.EFER, kv.CR4, kv.RFLAGS = 0x1000, 0x40, 2
	mshv := NewChain(Digest{})
	must(t, mshv.AddPage(0x1000, snp.PageNormal, []byte("hello")))
	must(t, mshv.AddPage(0x2000, snp.PageNormal, nil))
	must(t, mshv.AddPage(0x10000, snp.PageUnmeasured, nil))
	must(t, mshv.AddPage(KVMVMSAGPA, snp.PageVMSA, v.Marshal()))
	kvm := NewChain(Digest{})
	must(t, kvm.AddPage(0x1000, snp.PageNormal, []byte("hello")))
	must(t, kvm.AddPage(0x10000, snp.PageUnmeasured, nil))
	must(t, kvm.AddPage(0x11000, snp.PageUnmeasured, nil))
	must(t, kvm.AddPage(0x2000, snp.PageNormal, nil))
	must(t, kvm.AddPage(KVMVMSAGPA, snp.PageVMSA, kv.Marshal()))
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
		{"kvm without VMSA nor CPU", tinyIGVM(t, igvm.PlatformSEVSNP, false), Options{Profile: ProfileKVM}, "CPU model"},
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
	// An igvmgen file: QEMU refuses its VMSA (GPA, sev_features).
	var ce *KVMCheckError
	if _, err := MeasureIGVMFile(context.Background(), bytes.NewReader(good), int64(len(good)), Options{Profile: ProfileKVM}); !errors.As(err, &ce) {
		t.Errorf("d01 under kvm: %v", err)
	}
}

func TestReferenceValues(t *testing.T) {
	f, err := igvm.Parse(layoutIGVM(t, linuxboot.LayoutKVM))
	if err != nil {
		t.Fatal(err)
	}
	milan, _ := LookupCPU("milan")
	genoa, _ := LookupCPU("genoa")
	rv, err := ComputeReferenceValues(context.Background(), f, RefSpec{CPUs: []CPUModel{milan, genoa}, VCPUs: []int{1, 2, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Entries) != 3 || rv.Policy != 0x3001f || len(rv.Skipped) != 0 {
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
	// A file QEMU refuses: kvm is skipped with the rules by default, an
	// error when asked for, and hypothetical with the override.
	ready, err := igvm.Parse(kvmReadyIGVM(t))
	if err != nil {
		t.Fatal(err)
	}
	rv, err = ComputeReferenceValues(context.Background(), ready, RefSpec{CPUs: []CPUModel{milan}})
	if err != nil || len(rv.Entries) != 1 || len(rv.Skipped) != 1 || rv.Skipped[0].Violations[0].Rule != "kvm:kvm_is_valid_sregs" {
		t.Fatalf("refused file: %v %+v", err, rv)
	}
	var ce *KVMCheckError
	if _, err := ComputeReferenceValues(context.Background(), ready, RefSpec{Profiles: []Profile{ProfileKVM}, CPUs: []CPUModel{milan}}); !errors.As(err, &ce) {
		t.Errorf("refused file, kvm asked for: %v", err)
	}
	rv, err = ComputeReferenceValues(context.Background(), ready, RefSpec{CPUs: []CPUModel{milan}, SkipKVMChecks: true})
	if err != nil || len(rv.Entries) != 2 || !rv.Entries[1].Hypothetical || len(rv.Entries[1].KVMChecksSkipped) != 2 {
		t.Errorf("refused file with the override: %v %+v", err, rv)
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
	f.Add(layoutIGVM(f, linuxboot.LayoutKVM))
	for _, name := range []string{"param-insert", "vmsa-rebuilt"} {
		if b, err := os.ReadFile("../../testdata/measure/kvm-model/" + name + ".igvm"); err == nil {
			f.Add(b)
		}
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
		// CheckIGVM refuses exactly what the kvm profile refuses without
		// the override, with the same rules.
		opts := Options{Profile: ProfileKVM, VCPUs: 2, CPU: &milan}
		checkErr := CheckIGVM(context.Background(), file, opts)
		_, measureErr := MeasureIGVM(context.Background(), file, opts)
		if fmt.Sprint(checkErr) != fmt.Sprint(measureErr) {
			t.Errorf("CheckIGVM %v, MeasureIGVM %v", checkErr, measureErr)
		}
	})
}

// kvmTestFile is an IGVM file with one page and a BSP VP context built
// from v (mutated by the test case), at gpa, plus extra directives.
func kvmTestFile(t *testing.T, v snp.VMSA, gpa uint64, extra func(*igvm.Builder)) []byte {
	t.Helper()
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
	b.Add(&igvm.VPContext{GPA: gpa, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	if extra != nil {
		extra(&b)
	}
	return igvmtest.Write(t, &b)
}

// longModeVMSA is a 64-bit BSP state KVM accepts and measures as it is
// (the values KVM writes are already there).
func longModeVMSA() snp.VMSA {
	code := snp.Segment{Selector: 0x08, Attrib: 0xa9b, Limit: 0xffffffff}
	data := snp.Segment{Selector: 0x18, Attrib: 0xc93, Limit: 0xffffffff}
	return snp.VMSA{
		ES: data, CS: code, SS: data, DS: data,
		GDTR: snp.Segment{Limit: 0x37, Base: 0x200000},
		TR:   snp.Segment{Selector: 0x28, Attrib: 0x8b, Limit: 0x67},
		EFER: 0x1d01, CR4: 0x60, CR3: 0x201000, CR0: 0x80000011, DR7: 0x400, DR6: 0xffff0ff0,
		RFLAGS: 2, RIP: 0x300000, RSP: 0x3ff000, RSI: 0x200100, GPAT: 0x0007040600070406,
		SEVFeatures: 1, XCR0: 1, MXCSR: 0x1f80, X87FCW: 0x37f,
	}
}

// Each acceptance rule of QEMU and KVM on its own (docs/kvm-measurement.md
// section 7): the kvm profile refuses the file naming exactly that rule,
// and --skip-kvm-checks measures it marked hypothetical.
func TestKVMCheckRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*snp.VMSA)
		gpa   uint64
		extra func(*igvm.Builder)
		opts  Options
		want  string // the rule; "" = accepted
	}{
		{name: "long mode", want: ""},
		{name: "protected mode", edit: func(v *snp.VMSA) { *v = tinyVMSA() }, want: ""},
		{name: "page after the VP context", extra: func(b *igvm.Builder) {
			b.Add(&igvm.PageData{GPA: 0x2000, CompatibilityMask: 1}, igvm.Bytes([]byte("late")))
		}, want: ""},
		{name: "other GPA", gpa: 0x5000, want: "qemu:check_vmsa_supported"},
		{name: "unsynchronised field", edit: func(v *snp.VMSA) { v.LSTAR = 0xffffffff81000000 }, want: "qemu:check_vmsa_supported"},
		{name: "restricted injection", edit: func(v *snp.VMSA) { v.SEVFeatures = 0x9 }, want: "qemu:check_sev_features"},
		{name: "no SNP_ACTIVE", edit: func(v *snp.VMSA) { v.SEVFeatures = 0 }, want: "qemu:check_sev_features"},
		{name: "long mode without paging", edit: func(v *snp.VMSA) { v.CR0 = 0x31 }, want: "kvm:kvm_is_valid_sregs"},
		{name: "paging without PAE", edit: func(v *snp.VMSA) { v.CR4 = 0x40 }, want: "qemu:cpu_x86_update_cr0"},
		{name: "NW without CD", edit: func(v *snp.VMSA) { v.CR0 = 0xa0000011 }, want: "kvm:kvm_is_valid_cr0"},
		{name: "reserved CR4 bit", edit: func(v *snp.VMSA) { v.CR4 |= 1 << 15 }, want: "kvm:kvm_is_valid_cr4"},
		{name: "CPU-dependent CR4 bit", edit: func(v *snp.VMSA) { v.CR4 |= 1 << 21 }, want: "unmodelled:cpu_x86_update_cr4"},
		{name: "DR7", edit: func(v *snp.VMSA) { v.DR7 = 0x401 }, want: "kvm:sev_es_sync_vmsa"},
		{name: "DR6 high bits", edit: func(v *snp.VMSA) { v.DR6 |= 1 << 32 }, want: "kvm:kvm_vcpu_ioctl_x86_set_debugregs"},
		{name: "PAT", edit: func(v *snp.VMSA) { v.GPAT = 0x0007040600070402 }, want: "kvm:kvm_pat_valid"},
		{name: "XCR0 without x87", edit: func(v *snp.VMSA) { v.XCR0 = 0 }, want: "kvm:__kvm_set_xcr"},
		{name: "XCR0 AVX without SSE", edit: func(v *snp.VMSA) { v.XCR0 = 5 }, want: "kvm:__kvm_set_xcr"},
		{name: "XCR0 AVX-512", edit: func(v *snp.VMSA) { v.XCR0 = 0xe7 }, want: "unmodelled:__kvm_set_xcr"},
		{name: "virtual-8086", edit: func(v *snp.VMSA) { *v = tinyVMSA(); v.RFLAGS = 2 | 1<<17 }, want: "unmodelled:kvm_put_sregs"},
		{name: "command line directive", extra: func(b *igvm.Builder) {
			b.Add(&igvm.ParameterArea{NumberOfBytes: 0x1000, ParameterAreaIndex: 0}, nil)
			b.Add(&igvm.CommandLine{ParameterAreaIndex: 0}, nil)
			b.Add(&igvm.ParameterInsert{GPA: 0x10000, CompatibilityMask: 1, ParameterAreaIndex: 0}, nil)
		}, want: "qemu:qigvm_handler"},
		{name: "AP context beyond the vCPUs", extra: func(b *igvm.Builder) {
			v := longModeVMSA()
			b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1, VPIndex: 1}, igvm.Bytes(v.Marshal()))
		}, want: "qemu:sev_set_cpu_context"},
		{name: "host 6.8", opts: Options{HostKernel: HostKernel{6, 8}}, want: "hypothetical-host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := longModeVMSA()
			if tc.edit != nil {
				tc.edit(&v)
			}
			gpa := tc.gpa
			if gpa == 0 {
				gpa = KVMVMSAGPA
			}
			file := kvmTestFile(t, v, gpa, tc.extra)
			opts := tc.opts
			opts.Profile = ProfileKVM
			res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), opts)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res.Hypothetical || len(res.VMSAChanges) != 0 && tc.edit == nil {
					t.Errorf("hypothetical %v, VMSA changes %v", res.Hypothetical, res.VMSAChanges)
				}
				return
			}
			var ce *KVMCheckError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a KVMCheckError", err)
			}
			if ce.Violations[0].Rule != tc.want {
				t.Errorf("violations %v, want %s first", ce.Violations, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			opts.SkipKVMChecks = true
			res, err = MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Hypothetical || len(res.KVMChecksSkipped) == 0 || res.KVMChecksSkipped[0].Rule != tc.want {
				t.Errorf("hypothetical %v, skipped checks %v, want %s", res.Hypothetical, res.KVMChecksSkipped, tc.want)
			}
		})
	}
}

// A VP context measures the same wherever it sits among the directives:
// QEMU measures VMSAs at launch finish, after every page.
func TestKVMVPContextPosition(t *testing.T) {
	v := longModeVMSA()
	last := kvmTestFile(t, v, KVMVMSAGPA, func(b *igvm.Builder) {})
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
	first := igvmtest.Write(t, &b)
	var d [2]Digest
	for i, file := range [][]byte{last, first} {
		res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), Options{Profile: ProfileKVM})
		if err != nil {
			t.Fatal(err)
		}
		d[i] = res.Digest
	}
	if d[0] != d[1] {
		t.Errorf("VP context last %s, first %s", d[0], d[1])
	}
}

// QEMU hands the initialization section to the same handler table, where
// only GUEST_POLICY has a handler: a relocatable region ends the load.
func TestKVMInitializationHeaders(t *testing.T) {
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.RelocatableRegion{CompatibilityMask: 1, RelocationAlignment: 0x1000, RelocationRegionGPA: 0x1000,
		RelocationRegionSize: 0x1000, MinimumRelocationGPA: 0x1000, MaximumRelocationGPA: 0x10000}, nil)
	b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
	v := longModeVMSA()
	b.Add(&igvm.VPContext{GPA: KVMVMSAGPA, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
	file := igvmtest.Write(t, &b)
	_, err := MeasureIGVMFile(context.Background(), bytes.NewReader(file), int64(len(file)), Options{Profile: ProfileKVM})
	var ce *KVMCheckError
	if !errors.As(err, &ce) || len(ce.Violations) != 1 || ce.Violations[0].Rule != "qemu:qigvm_handler" {
		t.Errorf("error %v, want the relocatable region refused by qemu:qigvm_handler", err)
	}
}
