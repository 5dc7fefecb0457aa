package snp

import "testing"

func TestVMSAField(t *testing.T) {
	for _, c := range []struct {
		off  int
		want Field
	}{
		{0x000, Field{"es.selector", 0, 2}},
		{0x012, Field{"cs.attrib", 0x12, 2}},
		{0x018, Field{"cs.base", 0x18, 8}},
		{0x0cb, Field{"cpl", 0xcb, 1}},
		{0x0d3, Field{"efer", 0xd0, 8}},
		{0x150, Field{"cr3", 0x150, 8}},
		{0x178, Field{"rip", 0x178, 8}},
		{0x268, Field{"g_pat", 0x268, 8}},
		{0x320, Field{"reserved", 0x320, 8}},
		{0x330, Field{"rsi", 0x330, 8}},
		{0x3b7, Field{"sev_features", 0x3b0, 8}},
		{0x3e8, Field{"xcr0", 0x3e8, 8}},
		{0x410, Field{"x87_fcw", 0x410, 2}},
		{0x4ff, Field{"fpreg_xmm", 0x470, 256}},
		{0x600, Field{"fpreg_ymm", 0x570, 0x100}},
		{0xfff, Field{"reserved", 0x670, 0x990}},
	} {
		got, ok := VMSAField(c.off)
		if !ok || got != c.want {
			t.Errorf("VMSAField(%#x) = %+v, %v; want %+v", c.off, got, ok, c.want)
		}
	}
	// Every byte of the page belongs to exactly one field, in order.
	next := 0
	for off := 0; off < PageSize; off++ {
		f, ok := VMSAField(off)
		if !ok || off < f.Offset || off >= f.Offset+f.Size {
			t.Fatalf("VMSAField(%#x) = %+v, %v", off, f, ok)
		}
		if off == f.Offset {
			if f.Offset != next {
				t.Fatalf("field %s at %#x, want %#x", f.Name, f.Offset, next)
			}
			next = f.Offset + f.Size
		}
	}
	if _, ok := VMSAField(PageSize); ok {
		t.Error("VMSAField(PageSize) is a field")
	}
}

func TestCPUIDPageField(t *testing.T) {
	for _, c := range []struct {
		off  int
		want Field
	}{
		{0, Field{"count", 0, 4}},
		{8, Field{"reserved", 4, 12}},
		{16, Field{"entries[0].eax_in", 16, 4}},
		{16 + 48 + 25, Field{"entries[1].eax", 16 + 48 + 24, 4}},
		{16 + 63*48 + 47, Field{"entries[63].reserved", 16 + 63*48 + 40, 8}},
		{16 + 64*48, Field{"reserved", 16 + 64*48, PageSize - 16 - 64*48}},
	} {
		got, ok := CPUIDPageField(c.off)
		if !ok || got != c.want {
			t.Errorf("CPUIDPageField(%d) = %+v, %v; want %+v", c.off, got, ok, c.want)
		}
	}
}

func TestSEVFeatureNames(t *testing.T) {
	got := SEVFeatureNames(1 | 1<<5 | 1<<11)
	want := []string{"SNP_ACTIVE", "DEBUG_SWAP", "BIT11"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
