package igvm_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// A parameter area larger than any guest uses is a format error (the
// recipe of the 37-minute kvm measurement), named at its header.
func TestParameterAreaBound(t *testing.T) {
	data, err := os.ReadFile("../../testdata/measure/kvm-ready.igvm")
	if err != nil {
		t.Fatal(err)
	}
	_, err = igvm.Parse(igvmtest.HugeParameterArea(data))
	var fe *igvm.FormatError
	if !errors.As(err, &fe) || fe.Type != igvm.TypeParameterArea || !strings.Contains(fe.Msg, "MaxParameterAreaBytes") {
		t.Fatalf("Parse: %v, want a FormatError at the PARAMETER_AREA", err)
	}

	// The bound holds for all areas together; up to it, files are valid.
	build := func(sizes ...uint64) error {
		var b igvm.Builder
		b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
		b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte{1}))
		for i, n := range sizes {
			b.Add(&igvm.ParameterArea{NumberOfBytes: n, ParameterAreaIndex: uint32(i)}, nil)
			b.Add(&igvm.ParameterInsert{GPA: 0x100000 * uint64(i+1), CompatibilityMask: 1, ParameterAreaIndex: uint32(i)}, nil)
		}
		_, err := b.WriteTo(discard{})
		return err
	}
	if err := build(igvm.MaxParameterAreaBytes/2, igvm.MaxParameterAreaBytes/2); err != nil {
		t.Errorf("areas totalling the bound: %v", err)
	}
	if err := build(igvm.MaxParameterAreaBytes/2, igvm.MaxParameterAreaBytes/2, 0x1000); !errors.As(err, &fe) {
		t.Errorf("areas over the bound: %v", err)
	}
	if err := build(1 << 63); !errors.As(err, &fe) {
		t.Errorf("area of 2^63 bytes: %v", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
