package measure

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func TestCPUSignatures(t *testing.T) {
	tests := []struct {
		name string
		want uint32
	}{
		{"EPYC-v4", 0x800f12}, {"epyc", 0x800f12}, {"EPYC-Rome", 0x830f10},
		{"milan", 0xa00f11}, {"EPYC-Milan-v2", 0xa00f11},
		{"genoa", 0xa10f10}, {"EPYC-Genoa", 0xa10f10},
		{"turin", 0xb00f00}, {"0xa00f12", 0xa00f12},
	}
	for _, tc := range tests {
		m, err := LookupCPU(tc.name)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m.Signature != tc.want {
			t.Errorf("%s: signature %#x, want %#x", tc.name, m.Signature, tc.want)
		}
	}
	for _, bad := range []string{"", "skylake", "0x", "0xzz", "EPYC-Mars"} {
		if _, err := LookupCPU(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHostKernel(t *testing.T) {
	tests := []struct {
		in               string
		init2, debugSwap bool
	}{
		{"6.6", false, true}, {"6.7.12", false, true}, {"6.8", false, false},
		{"6.9", false, false}, {"6.10", true, false}, {"6.11-rc1", true, false}, {"7.0", true, false},
	}
	for _, tc := range tests {
		h, err := ParseHostKernel(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if h.INIT2() != tc.init2 || h.DefaultDebugSwap() != tc.debugSwap {
			t.Errorf("%s: INIT2 %v debug-swap %v", tc.in, h.INIT2(), h.DefaultDebugSwap())
		}
	}
	for _, bad := range []string{"6", "5.15", "x.y", "6.-1"} {
		if _, err := ParseHostKernel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The reset VMSA: the fields sev-snp-measure's BSP save area documents,
// plus the host kernel's forced fields.
func TestResetVMSA(t *testing.T) {
	milan, _ := LookupCPU("milan")
	page := ResetVMSA(0xfffffff0, milan, FeatureSNPActive, HostKernel{6, 9}).Marshal()
	u64 := func(off int) uint64 { return binary.LittleEndian.Uint64(page[off:]) }
	checks := map[int]uint64{
		0x10: 0xffff_009b_f000, 0x18: 0xffff0000, 0x178: 0xfff0, 0x310: 0xa00f11,
		0x3b0: 1, 0xd0: 0x1000, 0x148: 0x40, 0x158: 0x10, 0x3e8: 1, 0x408: 0, 0x410: 0,
	}
	for off, want := range checks {
		if got := u64(off); got != want {
			t.Errorf("6.9: %#x = %#x, want %#x", off, got, want)
		}
	}
	page = ResetVMSA(0xfffffff0, milan, FeatureSNPActive, HostKernel{6, 6}).Marshal()
	if got := u64(0x3b0); got != 0x21 {
		t.Errorf("6.6: sev_features %#x, want 0x21", got)
	}
	page = ResetVMSA(0xfffffff0, milan, FeatureSNPActive, HostKernel{6, 11}).Marshal()
	if got := u64(0x408); got != 0x1f80 {
		t.Errorf("6.11: mxcsr %#x", got)
	}
	if got := u64(0x410); got != 0x37f {
		t.Errorf("6.11: fcw %#x", got)
	}
}

func TestExtendVCPUs(t *testing.T) {
	ap := Digest(sha512.Sum384(ResetVMSA(0xfffffff0, CPUModel{Signature: 1}, 1, DefaultHostKernel).Marshal()))
	start := Digest{1, 2, 3}
	one, err := ExtendVCPUs(start, ap, 1)
	if err != nil || one != start {
		t.Fatalf("1 vCPU changed the digest: %v", err)
	}
	c := NewChain(start)
	for i := 0; i < 3; i++ {
		must(t, c.AddPage(KVMVMSAGPA, snp.PageVMSA, ResetVMSA(0xfffffff0, CPUModel{Signature: 1}, 1, DefaultHostKernel).Marshal()))
	}
	four, err := ExtendVCPUs(start, ap, 4)
	if err != nil || four != c.Digest() {
		t.Errorf("4 vCPUs: %v %s != %s", err, four, c.Digest())
	}
	for _, n := range []int{0, -1, 513} {
		if _, err := ExtendVCPUs(start, ap, n); err == nil {
			t.Errorf("%d vCPUs accepted", n)
		}
	}
}

// The kvm profile's reset-state VMSA (host kernel >= 6.10) is byte for byte
// the VMSA that the OVMF path builds for QEMU, which every QEMU vector of
// sev-snp-measure in testdata/measure/ovmf checks (EPYC-v4, Milan, Genoa;
// features 0x1 and 0x21; BSP at the reset vector and APs at the reset
// block's entry). So the IGVM APs' VMSA is tied to the reference tool's
// model of KVM, not only to our Python re-implementation.
func TestResetVMSAMatchesOVMFModel(t *testing.T) {
	for _, name := range []string{"EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"} {
		cpu, err := LookupCPU(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, features := range []uint64{0x1, 0x21} {
			for _, eip := range []uint32{bspResetEIP, 0x80b004} {
				for _, host := range []HostKernel{{6, 10}, {6, 11}, {6, 12}} {
					got := ResetVMSA(eip, cpu, features, host).Marshal()
					want := ovmfVMSA(eip, features, cpu.Signature, VMMQEMU).Marshal()
					if !bytes.Equal(got, want) {
						t.Errorf("%s features %#x eip %#x host %s: reset VMSA differs from the OVMF model", name, features, eip, host)
					}
				}
			}
		}
	}
}
