package linuxboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func TestLayoutKindText(t *testing.T) {
	for _, k := range LayoutKinds {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var back LayoutKind
		if err := json.Unmarshal(b, &back); err != nil || back != k {
			t.Errorf("%s: %s round-trips to %v (%v)", k, b, back, err)
		}
	}
	if k, err := ParseLayoutKind("KVM"); err != nil || k != LayoutKVM {
		t.Errorf("KVM: %v %v", k, err)
	}
	for _, bad := range []string{"", "xen", "mshv "} {
		if _, err := ParseLayoutKind(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := json.Marshal(LayoutKind(9)); err == nil {
		t.Error("kind 9 marshalled")
	}
}

// The kvm layout: the same guest memory as igvmgen's layout without the
// parameter and VMSA pages at 0x802000/0x803000; the VP context last, at
// KVMVMSAGPA; no parameter directives; the VMSA with the values KVM
// measures.
func TestKVMLayout(t *testing.T) {
	k, err := ParseBzImage(syntheticBzImage())
	if err != nil {
		t.Fatal(err)
	}
	initrd := bytes.Repeat([]byte{9}, 4097)
	for _, kata := range []bool{false, true} {
		opts := Options{Cmdline: "console=ttyS0", Initrd: initrd}
		if kata {
			opts = Kata()
			opts.Cmdline, opts.Initrd = "console=ttyS0", initrd
		}
		mshv, err := Build(context.Background(), k, opts)
		if err != nil {
			t.Fatal(err)
		}
		opts.Layout = LayoutKVM
		img, err := Build(context.Background(), k, opts)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		res, err := img.Write(context.Background(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		if res.Layout != LayoutKVM || uint64(res.VMSAGPA) != KVMVMSAGPA || img.Layout.VMSA != KVMVMSAGPA {
			t.Errorf("result layout %v at %v", res.Layout, res.VMSAGPA)
		}
		checkBoot(t, k, img, buf.Bytes(), "console=ttyS0", initrd)

		// The pages: igvmgen's without 0x802000 and 0x803000, then the VMSA.
		var want []Page
		for _, p := range mshv.Pages {
			if p.Kind != PageParameter && p.Kind != PageVMSA {
				want = append(want, p)
			}
		}
		got := img.Pages[:len(img.Pages)-1]
		if len(got) != len(want) {
			t.Fatalf("kata %v: %d pages, igvmgen's layout has %d besides its parameter and VMSA pages", kata, len(got), len(want))
		}
		for i := range want {
			if got[i].GPA != want[i].GPA || got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("kata %v: page %d at %#x differs from igvmgen's layout", kata, i, got[i].GPA)
			}
		}

		f, err := igvm.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ds := f.Directives()
		last, ok := ds[len(ds)-1].(*igvm.VPContext)
		if !ok || last.GPA != KVMVMSAGPA || last.VPIndex != 0 {
			t.Fatalf("last directive %v, want vCPU 0's VP context at %#x", ds[len(ds)-1].Type(), uint64(KVMVMSAGPA))
		}
		for _, h := range ds {
			switch h.(type) {
			case *igvm.PageData, *igvm.VPContext:
			default:
				t.Errorf("directive %v: QEMU needs only pages and the VP context", h.Type())
			}
		}
		page, err := f.Data(last)
		if err != nil {
			t.Fatal(err)
		}
		v, err := snp.UnmarshalVMSA(page)
		if err != nil {
			t.Fatal(err)
		}
		m := mshv.VMSA
		wantV := m
		wantV.EFER, wantV.CR0, wantV.CR4 = 0x1d01, m.CR0|0x10, m.CR4|0x40
		wantV.LDTR.Base = m.TR.Base
		wantV.DR6, wantV.DR7, wantV.X87FCW, wantV.MXCSR, wantV.SEVFeatures = 0xffff0ff0, 0x400, 0x37f, 0x1f80, 1
		if *v != wantV {
			t.Errorf("kata %v: VMSA\n got %+v\nwant %+v", kata, *v, wantV)
		}
		if v.TR.Base != v.LDTR.Base || v.TR.Base != img.Layout.TSS {
			t.Errorf("TR.base %#x, LDTR.base %#x, TSS %#x", v.TR.Base, v.LDTR.Base, img.Layout.TSS)
		}
		checkCPUState(t, memoryOf(t, buf.Bytes()), v, kata)
	}
}

// checkCPUState walks the image as the CPU would at the first
// instruction: the page tables at CR3 map RIP, RSP and boot_params to
// themselves (with the C-bit when the layout sets it), and the GDT holds
// the descriptors the segment registers and TR name, with their bases and
// attributes.
func checkCPUState(t *testing.T, m guestMemory, v *snp.VMSA, cbit bool) {
	t.Helper()
	const c = uint64(1) << 51
	if (v.CR3&c != 0) != cbit {
		t.Errorf("CR3 %#x: C-bit %v, want %v", v.CR3, v.CR3&c != 0, cbit)
	}
	u64 := func(gpa uint64) uint64 { return binary.LittleEndian.Uint64(m.read(t, gpa, 8)) }
	for _, va := range []uint64{v.RIP, v.RSP - 8, v.RSI} {
		pml4e := u64(v.CR3&^c&^0xfff + (va>>39&0x1ff)*8)
		if pml4e&1 == 0 || (pml4e&c != 0) != cbit {
			t.Fatalf("%#x: PML4 entry %#x", va, pml4e)
		}
		pdpte := u64(pml4e&^c&0x000ffffffffff000 + (va>>30&0x1ff)*8)
		if pdpte&0x81 != 0x81 || (pdpte&c != 0) != cbit {
			t.Fatalf("%#x: PDPT entry %#x is not a present 1 GiB page", va, pdpte)
		}
		if pa := pdpte&^c&0x000fffffc0000000 | va&0x3fffffff; pa != va {
			t.Errorf("%#x maps to %#x, not to itself", va, pa)
		}
	}
	gdt := m.read(t, v.GDTR.Base, int(v.GDTR.Limit)+1)
	desc := func(sel uint16) uint64 { return binary.LittleEndian.Uint64(gdt[sel&^7:]) }
	attrib := func(d uint64) uint16 { return uint16(d>>40&0xff) | uint16(d>>52&0xf)<<8 }
	for _, s := range []struct {
		name string
		seg  snp.Segment
	}{{"cs", v.CS}, {"ds", v.DS}, {"es", v.ES}, {"ss", v.SS}} {
		if d := desc(s.seg.Selector); attrib(d) != s.seg.Attrib {
			t.Errorf("%s selector %#x: GDT attributes %#x, register %#x", s.name, s.seg.Selector, attrib(d), s.seg.Attrib)
		}
	}
	d := desc(v.TR.Selector)
	base := d>>16&0xffffff | (d>>56&0xff)<<24 | uint64(binary.LittleEndian.Uint32(gdt[v.TR.Selector+8:]))<<32
	if base != v.TR.Base || attrib(d)&0xff != v.TR.Attrib {
		t.Errorf("TR: GDT descriptor base %#x attrib %#x, register base %#x attrib %#x", base, attrib(d), v.TR.Base, v.TR.Attrib)
	}
}

func TestBuildUnknownLayout(t *testing.T) {
	k, err := ParseBzImage(syntheticBzImage())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), k, Options{Layout: LayoutKind(2)})
	var le *LayoutError
	if !errors.As(err, &le) || le.Field != "Layout" {
		t.Errorf("error %v, want a LayoutError for Layout", err)
	}
}
