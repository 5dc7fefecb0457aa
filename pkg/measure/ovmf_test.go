package measure

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

const ovmfTestdata = "../../testdata/measure/ovmf"

// ovmfCase is one record of cases.json / rejections.json (see
// testdata/measure/ovmf/README.md).
type ovmfCase struct {
	Name                 string  `json:"name"`
	OVMF                 string  `json:"ovmf"`
	Kernel               *string `json:"kernel"`
	Initrd               *string `json:"initrd"`
	Append               *string `json:"append"`
	VCPUs                int     `json:"vcpus"`
	VCPUType             *string `json:"vcpu_type"`
	VCPUSig              *string `json:"vcpu_sig"`
	GuestFeatures        string  `json:"guest_features"`
	VMMType              string  `json:"vmm_type"`
	OutputFormat         string  `json:"output_format"`
	ExpectedOutput       string  `json:"expected_output"`
	ExpectedOVMFHash     string  `json:"expected_ovmf_hash"`
	ExpectedLaunchDigest string  `json:"expected_launch_digest"`
	ExpectedStderr       string  `json:"expected_stderr"`
}

func loadOVMFCases(t testing.TB, name string) []ovmfCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ovmfTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	var cs []ovmfCase
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// config turns a recorded sev-snp-measure invocation into an OVMFConfig.
func (tc ovmfCase) config(t testing.TB) OVMFConfig {
	t.Helper()
	vmm, err := ParseVMMType(tc.VMMType)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := strconv.ParseUint(tc.GuestFeatures, 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	cfg := OVMFConfig{VCPUs: tc.VCPUs, GuestFeatures: gf, VMM: vmm, Explain: true}
	if tc.VCPUType != nil {
		cpu, err := LookupCPU(*tc.VCPUType)
		if err != nil {
			t.Fatal(err)
		}
		sig := cpu.Signature
		if tc.VCPUSig != nil {
			if want, _ := strconv.ParseUint(*tc.VCPUSig, 0, 32); uint32(want) != sig {
				t.Fatalf("%s: signature %#x, vector says %s", *tc.VCPUType, sig, *tc.VCPUSig)
			}
		}
		cfg.VCPUSig = sig
	}
	if tc.Kernel != nil {
		k, err := os.Open(filepath.Join(ovmfTestdata, *tc.Kernel))
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		var initrd *os.File
		if tc.Initrd != nil {
			initrd, err = os.Open(filepath.Join(ovmfTestdata, *tc.Initrd))
			if err != nil {
				t.Fatal(err)
			}
			defer initrd.Close()
		}
		cmdline := ""
		if tc.Append != nil {
			cmdline = *tc.Append
		}
		var kh KernelHashes
		if initrd != nil {
			kh, err = HashKernel(context.Background(), k, initrd, cmdline)
		} else {
			kh, err = HashKernel(context.Background(), k, nil, cmdline)
		}
		if err != nil {
			t.Fatal(err)
		}
		cfg.Kernel = &kh
	}
	return cfg
}

func TestOVMFVectors(t *testing.T) {
	for _, tc := range loadOVMFCases(t, "cases.json") {
		t.Run(tc.Name, func(t *testing.T) {
			fw, err := ReadOVMF(filepath.Join(ovmfTestdata, tc.OVMF))
			if err != nil {
				t.Fatal(err)
			}
			oh, err := OVMFHash(context.Background(), fw)
			if err != nil {
				t.Fatal(err)
			}
			if oh.String() != tc.ExpectedOVMFHash {
				t.Errorf("ovmf hash %s, want %s", oh, tc.ExpectedOVMFHash)
			}
			cfg := tc.config(t)
			m, err := MeasureOVMF(context.Background(), fw, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if m.Digest.String() != tc.ExpectedLaunchDigest {
				t.Errorf("digest %s, want %s", m.Digest, tc.ExpectedLaunchDigest)
			}
			if m.OVMFHash != oh {
				t.Errorf("measurement's ovmf hash %s, want %s", m.OVMFHash, oh)
			}
			out := m.Digest.String()
			if tc.OutputFormat == "base64" {
				out = base64.StdEncoding.EncodeToString(m.Digest[:])
			}
			if out != tc.ExpectedOutput {
				t.Errorf("output %s, want %s", out, tc.ExpectedOutput)
			}
			if len(m.Warnings) != 0 {
				t.Errorf("unexpected warnings %q", m.Warnings)
			}
			if m.Regions[len(m.Regions)-1].Digest != m.Digest {
				t.Error("last region's digest is not the final digest")
			}
			// Starting from the precomputed firmware hash gives the same digest.
			cfg.OVMFHash = &oh
			m2, err := MeasureOVMF(context.Background(), fw, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if m2.Digest != m.Digest {
				t.Errorf("from ovmf hash: digest %s, want %s", m2.Digest, m.Digest)
			}
		})
	}
}

func TestOVMFRejections(t *testing.T) {
	for _, tc := range loadOVMFCases(t, "rejections.json") {
		t.Run(tc.Name, func(t *testing.T) {
			if !strings.Contains(tc.ExpectedStderr, "SNP_KERNEL_HASHES") {
				t.Fatalf("vector expects %q; this test only knows the kernel-hashes rejection", tc.ExpectedStderr)
			}
			fw, err := ReadOVMF(filepath.Join(ovmfTestdata, tc.OVMF))
			if err != nil {
				t.Fatal(err)
			}
			_, err = MeasureOVMF(context.Background(), fw, tc.config(t))
			if !errors.Is(err, ErrNoKernelHashesSection) {
				t.Fatalf("error %v, want %v", err, ErrNoKernelHashesSection)
			}
		})
	}
}

// A firmware without SEV metadata (the shape of Debian's OVMF_CODE_4M.fd:
// footer table with the SEV-ES reset block, no metadata entry) measures
// with a warning.
func TestOVMFWithoutSEVMetadata(t *testing.T) {
	data := synthOVMF(t, 8, false)
	fw, err := ParseOVMF(data)
	if err != nil {
		t.Fatal(err)
	}
	if fw.HasSEVMetadata() {
		t.Fatal("metadata found")
	}
	m, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 2, VCPUSig: 0xa00f11, GuestFeatures: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "cannot boot an SEV-SNP guest") {
		t.Errorf("warnings %q", m.Warnings)
	}
	// Firmware pages then two VMSAs, nothing else.
	c := NewChain(Digest{})
	must(t, c.AddRange(fw.GPA(), snp.PageNormal, data))
	must(t, c.AddPage(KVMVMSAGPA, snp.PageVMSA, ovmfVMSA(bspResetEIP, 1, 0xa00f11, VMMQEMU).Marshal()))
	must(t, c.AddPage(KVMVMSAGPA, snp.PageVMSA, ovmfVMSA(0x808004, 1, 0xa00f11, VMMQEMU).Marshal()))
	if c.Digest() != m.Digest {
		t.Errorf("digest %s, want %s", m.Digest, c.Digest())
	}
	if _, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 1, Kernel: &KernelHashes{}}); !errors.Is(err, ErrNoKernelHashesSection) {
		t.Errorf("kernel on firmware without metadata: %v", err)
	}
}

// synthOVMF builds a firmware image of pages pages whose footer table has
// an SEV-ES reset block (AP entry 0x808004) and, if meta, SEV metadata.
func synthOVMF(t testing.TB, pages int, meta bool) []byte {
	t.Helper()
	data := make([]byte, pages*snp.PageSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var table []byte
	entry := func(guid [16]byte, payload []byte) {
		e := append([]byte{}, payload...)
		e = binary.LittleEndian.AppendUint16(e, uint16(len(payload)+footerEntryHeader))
		e = append(e, guid[:]...)
		table = append(table, e...)
	}
	entry(guidSEVESResetBlock, []byte{0x04, 0x80, 0x80, 0x00})
	if meta {
		// Metadata 0x1000 bytes before the end: one SNP_SEC_MEM section.
		md := data[len(data)-0x1000:]
		copy(md, "ASEV")
		binary.LittleEndian.PutUint32(md[4:], 16+12)
		binary.LittleEndian.PutUint32(md[8:], 1)
		binary.LittleEndian.PutUint32(md[12:], 1)
		binary.LittleEndian.PutUint32(md[16:], 0x800000)
		binary.LittleEndian.PutUint32(md[20:], 0x2000)
		binary.LittleEndian.PutUint32(md[24:], 1)
		entry(guidOVMFSEVMetadata, []byte{0x00, 0x10, 0x00, 0x00})
	}
	entry(guidOVMFTableFooter, nil)
	binary.LittleEndian.PutUint16(table[len(table)-footerEntryHeader:], uint16(len(table)))
	copy(data[len(data)-32-len(table):], table)
	return data
}

func TestParseOVMFErrors(t *testing.T) {
	good := synthOVMF(t, 2, true)
	if fw, err := ParseOVMF(good); err != nil || len(fw.Sections()) != 1 {
		t.Fatalf("synthetic firmware: %v", err)
	}
	footer := len(good) - 32 - footerEntryHeader
	metaEntry := footer - footerEntryHeader - 4
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"empty", func(b []byte) []byte { return nil }, "empty"},
		{"not page multiple", func(b []byte) []byte { return b[:len(b)-1] }, "multiple of 4096"},
		{"footer size too small", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[footer:], 3); return b }, "smaller than its own header"},
		{"footer size too large", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[footer:], 0xffff); return b }, "runs past the start"},
		{"entry size zero", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[footer-footerEntryHeader:], 0); return b }, "smaller than its header"},
		{"entry size too large", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[footer-footerEntryHeader:], 0x1000); return b }, "bytes left in the table"},
		{"metadata offset outside", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[metaEntry:], 0x100000); return b }, "outside"},
		{"metadata signature", func(b []byte) []byte { b[len(b)-0x1000] = 'X'; return b }, "signature"},
		{"metadata version", func(b []byte) []byte { b[len(b)-0x1000+8] = 2; return b }, "version 2"},
		{"metadata count", func(b []byte) []byte { b[len(b)-0x1000+12] = 200; return b }, "do not fit"},
		{"section type", func(b []byte) []byte { b[len(b)-0x1000+24] = 9; return b }, "unknown type 0x9"},
		{"section unaligned", func(b []byte) []byte { b[len(b)-0x1000+16] = 1; return b }, "not 4 KiB aligned"},
		// 16 MiB + 4 KiB of zero pages declared by one 12-byte descriptor.
		{"sections too large", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[len(b)-0x1000+16:], 0x1000000)
			binary.LittleEndian.PutUint32(b[len(b)-0x1000+20:], 0x1001000)
			return b
		}, "more than a firmware pre-validates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), good...))
			_, err := ParseOVMF(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var fe *OVMFFormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not an OVMFFormatError", err)
			}
		})
	}
	// No footer at all: parses, but has no reset block to measure with.
	fw, err := ParseOVMF(make([]byte, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 1}); err == nil || !strings.Contains(err.Error(), "no footer table") || !strings.Contains(err.Error(), "SEV-ES reset block") {
		t.Errorf("firmware without table: %v", err)
	}
}

func TestMeasureOVMFConfigErrors(t *testing.T) {
	fw, err := ParseOVMF(synthOVMF(t, 2, true))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, MaxVCPUs + 1} {
		if _, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: n}); err == nil {
			t.Errorf("%d vCPUs accepted", n)
		}
	}
	if _, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: MaxVCPUs}); err != nil {
		t.Errorf("%d vCPUs: %v", MaxVCPUs, err)
	}
	if _, err := MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 1, VMM: VMMType(7)}); err == nil {
		t.Error("unknown VMM accepted")
	}
}

func TestOVMFCPUSignature(t *testing.T) {
	for _, tc := range []struct{ f, m, s, want uint32 }{
		{23, 1, 2, 0x800f12}, {23, 49, 0, 0x830f10}, {25, 1, 1, 0xa00f11}, {25, 17, 0, 0xa10f10}, {26, 0, 0, 0xb00f00}, {6, 0x55, 4, 0x50654},
	} {
		if got := CPUSignature(tc.f, tc.m, tc.s); got != tc.want {
			t.Errorf("family %d model %d stepping %d: %#x, want %#x", tc.f, tc.m, tc.s, got, tc.want)
		}
	}
}

func FuzzParseOVMF(f *testing.F) {
	for _, name := range []string{"ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin"} {
		b, err := os.ReadFile(filepath.Join(ovmfTestdata, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(synthOVMF(f, 1, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Keep the image page aligned so the parser gets past the size check.
		if n := len(data) % snp.PageSize; n != 0 {
			data = append(make([]byte, snp.PageSize-n), data...)
		}
		fw, err := ParseOVMF(data)
		if err != nil {
			return
		}
		for _, s := range fw.Sections() {
			if s.GPA%snp.PageSize != 0 {
				t.Fatalf("unaligned section accepted: %+v", s)
			}
		}
		var total uint64
		for _, s := range fw.Sections() {
			total += uint64(s.Size)
		}
		if total > 16<<20 {
			return // valid but slow to measure; the parser is what is fuzzed
		}
		kh := KernelHashes{}
		for _, vmm := range []VMMType{VMMQEMU, VMMEC2, VMMGCE} {
			_, _ = MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 2, VMM: vmm})
			_, _ = MeasureOVMF(context.Background(), fw, OVMFConfig{VCPUs: 1, VMM: vmm, Kernel: &kh})
		}
	})
}

// TestParseGUID: the EFI mixed-endian layout, its inverse and bad input.
func TestParseGUID(t *testing.T) {
	const s = "96b582de-1fb2-45f7-baea-a366c55a082d" // OVMF table footer
	g, err := parseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	if g != guidOVMFTableFooter || g[0] != 0xde || g[3] != 0x96 || g[8] != 0xba {
		t.Errorf("parseGUID(%s) = %x", s, g)
	}
	if got := guidString(g); got != s {
		t.Errorf("guidString = %s", got)
	}
	for _, bad := range []string{"", "96b582de-1fb2-45f7-baea-a366c55a082", "96b582de-1fb2-45f7-baea-a366c55a082g", "96b582de+1fb2-45f7-baea-a366c55a082d"} {
		if _, err := parseGUID(bad); err == nil {
			t.Errorf("parseGUID(%q) accepted", bad)
		}
	}
}

// FuzzOVMFStructured builds firmware images whose footer table and SEV
// metadata are well formed around fuzzed contents (the table's sizes and
// GUIDs repaired, the metadata's signature, version and size consistent
// with the fuzzed section descriptors), so mutations reach the section
// checks and the measurement behind them. Memory and the pages measured
// stay proportional to the image (the sections are bounded by
// maxSectionBytes).
func FuzzOVMFStructured(f *testing.F) {
	desc := func(gpa, size, typ uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, gpa)
		b = binary.LittleEndian.AppendUint32(b, size)
		return binary.LittleEndian.AppendUint32(b, typ)
	}
	f.Add(uint8(2), uint32(0x808004), uint32(0x80c000), slices.Concat(desc(0x800000, 0x2000, 1), desc(0x802000, 0x1000, 2), desc(0x803000, 0x1000, 3), desc(0x80c000, 0x1000, 0x10)), []byte("extra"))
	f.Add(uint8(1), uint32(0), uint32(0), desc(0, 0xfffff000, 1), []byte{})
	f.Fuzz(func(t *testing.T, pages uint8, resetEIP, hashGPA uint32, descs, extra []byte) {
		n := int(pages%16) + 2
		img := make([]byte, n*snp.PageSize)
		// SEV metadata one page before the end: "ASEV", size, version 1,
		// count, the descriptors (those that fit the page).
		descs = descs[:min(len(descs)/12*12, snp.PageSize-16-64)]
		md := img[len(img)-2*snp.PageSize:]
		copy(md, "ASEV")
		binary.LittleEndian.PutUint32(md[4:], uint32(16+len(descs)))
		binary.LittleEndian.PutUint32(md[8:], 1)
		binary.LittleEndian.PutUint32(md[12:], uint32(len(descs)/12))
		copy(md[16:], descs)
		var table []byte
		entry := func(guid [16]byte, payload []byte) {
			table = append(table, payload...)
			table = binary.LittleEndian.AppendUint16(table, uint16(len(payload)+footerEntryHeader))
			table = append(table, guid[:]...)
		}
		entry(guidSEVESResetBlock, binary.LittleEndian.AppendUint32(nil, resetEIP))
		entry(guidSEVHashTableRV, binary.LittleEndian.AppendUint32(nil, hashGPA))
		entry(guidOVMFSEVMetadata, binary.LittleEndian.AppendUint32(nil, uint32(2*snp.PageSize)))
		if len(extra) > 0 {
			var g [16]byte
			copy(g[:], extra)
			entry(g, extra[min(len(extra), 16):min(len(extra), 200)])
		}
		entry(guidOVMFTableFooter, nil)
		binary.LittleEndian.PutUint16(table[len(table)-footerEntryHeader:], uint16(len(table)))
		copy(img[len(img)-32-len(table):], table)

		var fw *OVMF
		var err error
		fuzzbound.Check(t, img, 2, 1<<20, func() { fw, err = ParseOVMF(img) })
		if err != nil {
			var fe *OVMFFormatError
			if !errors.As(err, &fe) {
				t.Fatalf("parse error %v is not an OVMFFormatError", err)
			}
			return
		}
		maxPages := uint64(len(img))/snp.PageSize + 2*maxSectionBytes/snp.PageSize + 4
		kh := KernelHashes{}
		for _, cfg := range []OVMFConfig{{VCPUs: 4, VMM: VMMQEMU, Explain: true}, {VCPUs: 1, VMM: VMMEC2}, {VCPUs: 2, VMM: VMMGCE, Kernel: &kh}} {
			var m *OVMFMeasurement
			fuzzbound.Check(t, img, 4, 4<<20, func() { m, err = MeasureOVMF(context.Background(), fw, cfg) })
			if err != nil {
				continue
			}
			var total uint64
			for _, r := range m.Regions {
				total += r.Pages
			}
			if total > maxPages {
				t.Fatalf("%d pages measured for a %d-byte image", total, len(img))
			}
		}
	})
}
