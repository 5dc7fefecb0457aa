package inspect

import (
	"io"
	"os"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// fuzzPages are where FuzzInspect loads the fuzzed bytes: the RSDP page,
// XSDT and first table pages, and three pages of boot_params + cmdline.
var fuzzPages = []uint64{0xE0000, 0x100000, 0x101000, 0x10000, 0x11000, 0x12000}

// FuzzInspect runs Inspect over files whose guest memory (boot_params,
// command line, ACPI tables) and guest policy come from the fuzzer: it must
// never panic nor allocate without bound.
func FuzzInspect(f *testing.F) {
	ref, err := os.ReadFile("../../../testdata/igvm/d01_kata_clh_short.igvm")
	if err != nil {
		f.Fatal(err)
	}
	rf, err := igvm.Parse(ref)
	if err != nil {
		f.Fatal(err)
	}
	// Seed: d01's real pages (RSDP, XSDT, APIC, boot_params, cmdline).
	mem := rf.Memory()
	var seed []byte
	for _, g := range []uint64{0xE0000, 0x100000, 0x101000, 0x3470000, 0x3471000} {
		p := make([]byte, 4096)
		mem.ReadAt(p, int64(g))
		seed = append(seed, p...)
	}
	f.Add(uint64(0x3001f), uint64(0xa0), seed)
	f.Add(uint64(0), uint64(0xfff), []byte("RSD PTR "))
	f.Fuzz(func(t *testing.T, policy uint64, rsiOff uint64, data []byte) {
		var b igvm.Builder
		b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
		b.Add(&igvm.GuestPolicy{Policy: policy, CompatibilityMask: 1}, nil)
		for i, g := range fuzzPages {
			var d *io.SectionReader
			if lo := i * 4096; lo < len(data) {
				d = igvm.Bytes(data[lo:min(lo+4096, len(data))])
			}
			b.Add(&igvm.PageData{GPA: g, CompatibilityMask: 1}, d)
		}
		v := snp.VMSA{RSI: 0x10000 + rsiOff%0x2000, SEVFeatures: policy}
		b.Add(&igvm.VPContext{GPA: 0x803000, CompatibilityMask: 1}, igvm.Bytes(v.Marshal()))
		file := igvmtest.Reparse(t, &b)
		var r *Report
		var err error
		// Inspect reads what the guest memory points at (tables, command
		// line) in pieces: its memory does not follow the lengths and
		// pointers the guest memory claims.
		fuzzbound.Check(t, data, 16, 4<<20, func() { r, err = Inspect(file) })
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
