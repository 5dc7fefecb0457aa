package snp

import (
	"encoding/binary"
	"testing"
)

// TestVMSAOffsets pins the byte offsets of the fields that launch digests
// depend on (Linux struct sev_es_save_area, APM vol. 2 table B-4).
func TestVMSAOffsets(t *testing.T) {
	v := VMSA{
		CS:          Segment{Selector: 0xf000, Attrib: 0x9b, Limit: 0xffff, Base: 0xffff0000},
		TR:          Segment{Attrib: 0x8b, Limit: 0xffff},
		EFER:        0x1000,
		CR4:         0x40,
		CR3:         0x1234000,
		CR0:         0x10,
		DR7:         0x400,
		DR6:         0xffff0ff0,
		RFLAGS:      0x2,
		RIP:         0xfff0,
		RSP:         0x5000,
		GPAT:        0x0007040600070406,
		RDX:         0xa00f11,
		RSI:         0x7000,
		SEVFeatures: 0x21,
		XCR0:        1,
		MXCSR:       0x1f80,
		X87FCW:      0x37f,
	}
	page := v.Marshal()
	if len(page) != PageSize {
		t.Fatalf("page size %d", len(page))
	}
	u64 := func(off int) uint64 { return binary.LittleEndian.Uint64(page[off:]) }
	tests := []struct {
		name string
		off  int
		want uint64
	}{
		{"cs.selector|attrib|limit", 0x10, 0xffff_009b_f000},
		{"cs.base", 0x18, 0xffff0000},
		{"tr.attrib", 0x90, 0xffff_008b_0000},
		{"efer", 0xd0, 0x1000},
		{"cr4", 0x148, 0x40},
		{"cr3", 0x150, 0x1234000},
		{"cr0", 0x158, 0x10},
		{"dr7", 0x160, 0x400},
		{"dr6", 0x168, 0xffff0ff0},
		{"rflags", 0x170, 2},
		{"rip", 0x178, 0xfff0},
		{"rsp", 0x1d8, 0x5000},
		{"g_pat", 0x268, 0x0007040600070406},
		{"rdx", 0x310, 0xa00f11},
		{"rsi", 0x330, 0x7000},
		{"sev_features", 0x3b0, 0x21},
		{"xcr0", 0x3e8, 1},
		{"mxcsr|ftw|fsw", 0x408, 0x1f80},
		{"fcw|fop|ds|cs", 0x410, 0x37f},
	}
	for _, tc := range tests {
		if got := u64(tc.off); got != tc.want {
			t.Errorf("%s at %#x = %#x, want %#x", tc.name, tc.off, got, tc.want)
		}
	}
	back, err := UnmarshalVMSA(page)
	if err != nil {
		t.Fatal(err)
	}
	if *back != v {
		t.Errorf("round trip changed the VMSA")
	}
	if vmsaStateSize != 0x570 {
		t.Errorf("save area covers %#x bytes, want 0x570", vmsaStateSize)
	}
}

func TestPolicyString(t *testing.T) {
	if got, want := GuestPolicy(0x3001f).String(), "0x3001f (ABI >= 0.31, SMT RESERVED_1)"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if err := GuestPolicy(0x10000).Validate(); err == nil {
		t.Error("policy without bit 17 accepted")
	}
	if err := GuestPolicy(0x30000).Validate(); err != nil {
		t.Error(err)
	}
}
