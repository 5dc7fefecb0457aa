package linuxboot

import (
	"bytes"
	"context"
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
