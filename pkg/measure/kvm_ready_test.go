package measure

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/golden"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

const goldenDir = "../../testdata/measure"

// kvmReadyIGVM re-encodes vector d03 the way igvmmeasure --check-kvm
// wanted a KVM file: every directive but the VP context in the same order,
// then the VP context moved to 0xFFFFFFFFF000 as the last directive, with
// CR0 0x31, SNP_ACTIVE only, and the MXCSR/FCW that KVM_SEV_INIT2 writes.
func kvmReadyIGVM(t testing.TB) []byte {
	t.Helper()
	var c vectorCase
	for _, vc := range vectorCases(t) {
		if vc.Name == "d03_clh_empty_cpio" {
			c = vc
		}
	}
	f := openVector(t, c)
	var b igvm.Builder
	var ctx *igvm.VPContext
	var vmsa []byte
	for _, h := range f.Headers {
		if x, ok := h.(*igvm.VPContext); ok {
			page, err := f.Data(x)
			if err != nil {
				t.Fatal(err)
			}
			cp := *x
			cp.GPA = KVMVMSAGPA
			ctx, vmsa = &cp, page
			continue
		}
		if _, ok := h.(*igvm.SNPIDBlock); ok {
			continue // its LD would be stale
		}
		if igvm.HasData(h) {
			b.Add(h, f.DataReader(h))
		} else {
			b.Add(h, nil)
		}
	}
	binary.LittleEndian.PutUint64(vmsa[0x158:], 0x31)   // CR0
	binary.LittleEndian.PutUint64(vmsa[0x3b0:], 0x1)    // sev_features
	binary.LittleEndian.PutUint32(vmsa[0x408:], 0x1f80) // MXCSR
	binary.LittleEndian.PutUint16(vmsa[0x410:], 0x37f)  // FCW
	b.Add(ctx, igvm.Bytes(vmsa))
	return igvmtest.Write(t, &b)
}

// TestKVMReadyFixture: testdata/measure/kvm-ready.igvm, an input of the
// model's vectors (kvm-model.json), is still the file built from d03. It
// was meant as "KVM-ready" under the rules of igvmmeasure --check-kvm (CR0
// 0x31 in long mode); the QEMU and Linux sources say KVM refuses it (EFER.LMA
// and CS.L without CR0.PG), so the kvm profile names those rules.
func TestKVMReadyFixture(t *testing.T) {
	ready := kvmReadyIGVM(t)
	golden.Check(t, filepath.Join(goldenDir, "kvm-ready.igvm"), ready)
	_, err := MeasureIGVMFile(context.Background(), bytes.NewReader(ready), int64(len(ready)), Options{Profile: ProfileKVM})
	var ce *KVMCheckError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a KVMCheckError", err)
	}
	for _, v := range ce.Violations {
		if v.Rule != "kvm:kvm_is_valid_sregs" {
			t.Errorf("violation %v", v)
		}
	}
	if len(ce.Violations) != 2 {
		t.Errorf("violations %v, want LMA and CS.L without paging", ce.Violations)
	}
}
