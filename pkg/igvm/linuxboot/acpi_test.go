package linuxboot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func clhTables(t *testing.T) map[string][]byte {
	t.Helper()
	dir := filepath.Join(testdataDir, "acpi", "acpi-clh-aml")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		m[e.Name()] = readTestdata(t, filepath.Join("acpi", "acpi-clh-aml", e.Name()))
	}
	return m
}

// TestACPIFromDir: the acpi-clh tables give exactly the pages igvmgen put
// in the vector files (acpi-clh.pages), at the documented addresses.
func TestACPIFromDir(t *testing.T) {
	a, err := ACPIFromDir(filepath.Join(testdataDir, "acpi", "acpi-clh-aml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.WritePages(&buf); err != nil {
		t.Fatal(err)
	}
	if want := readTestdata(t, "acpi/acpi-clh.pages"); !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("pages differ from acpi-clh.pages (%d vs %d bytes)", buf.Len(), len(want))
	}
	if a.End() != 0x109000 {
		t.Errorf("end %#x, want 0x109000", a.End())
	}
	want := map[string]uint64{"RSD PTR ": 0xe0000, "XSDT": 0x100000, "APIC": 0x101000, "DSDT": 0x101050,
		"FACP": 0x108b02, "FACS": 0x108c16, "MCFG": 0x108c56, "TPM2": 0x108d22}
	for _, tb := range a.Tables {
		if want[tb.Signature] != uint64(tb.Address) {
			t.Errorf("%s at %#x, want %#x", tb.Signature, tb.Address, want[tb.Signature])
		}
	}
	if len(a.Tables) != len(want) {
		t.Errorf("%d tables, want %d", len(a.Tables), len(want))
	}
	// The pages file reads back to the same pages.
	b, err := ParseACPIPages(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Pages) != 10 || b.End() != a.End() {
		t.Errorf("read back %d pages ending %#x", len(b.Pages), b.End())
	}
}

func TestDefaultACPI(t *testing.T) {
	a := DefaultACPI()
	if len(a.Pages) != 34 || a.End() != 0x200000 || a.Pages[0].GPA != RSDPAddress {
		t.Errorf("default ACPI: %d pages, end %#x, first %#x", len(a.Pages), a.End(), a.Pages[0].GPA)
	}
	if string(a.Pages[0].Data[9:15]) != "VRTUAL" {
		t.Errorf("RSDP OEM %q", a.Pages[0].Data[9:15])
	}
}

func TestACPIErrors(t *testing.T) {
	with := func(edit func(m map[string][]byte)) map[string][]byte {
		m := clhTables(t)
		for k, v := range m {
			m[k] = bytes.Clone(v)
		}
		edit(m)
		return m
	}
	cases := []struct {
		name   string
		tables map[string][]byte
		want   string
	}{
		{"bad checksum", with(func(m map[string][]byte) { m["APIC_sample.aml"][20]++ }), "APIC_sample.aml: APIC checksum is bad"},
		{"bad RSDP checksum", with(func(m map[string][]byte) { m["rsdp.aml"][10]++ }), "rsdp.aml: RSDP checksum"},
		{"unknown signature", with(func(m map[string][]byte) {
			b := bytes.Clone(m["APIC_sample.aml"])
			copy(b, "HPET")
			fixChecksum(b, 9)
			m["hpet.aml"] = b
		}), `hpet.aml: unknown table signature "HPET"`},
		{"duplicate", with(func(m map[string][]byte) { m["zz.aml"] = m["MCFG_sample.aml"] }), "a second MCFG table"},
		{"no DSDT", with(func(m map[string][]byte) { delete(m, "DSDT_sample.aml") }), "no DSDT table"},
		{"no RSDP", with(func(m map[string][]byte) { delete(m, "rsdp.aml") }), "no RSDP table"},
		{"length mismatch", with(func(m map[string][]byte) { m["tpm2.aml"] = append(m["tpm2.aml"], 0) }), "length field 76 differs from the file size 77"},
		{"truncated", with(func(m map[string][]byte) { m["x.aml"] = []byte("APIC") }), "too short"},
		{"RSDP elsewhere", with(func(m map[string][]byte) {
			r := m["rsdp.aml"]
			binary.LittleEndian.PutUint64(r[24:], 0x200000)
			fixChecksum(r[:20], 8)
			fixChecksum(r, 32)
		}), "XSDT at 0x200000"},
	}
	for _, tc := range cases {
		_, err := ACPIFromTables(tc.tables)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := ACPIFromDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .aml files") {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := ACPIFromDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir accepted")
	}
}

func TestParseACPIPagesErrors(t *testing.T) {
	good := readTestdata(t, "acpi/acpi-clh.pages")
	rec := func(gpa uint64, fill byte) []byte {
		b := binary.LittleEndian.AppendUint64(nil, gpa)
		return append(b, bytes.Repeat([]byte{fill}, pageSize)...)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "whole number"},
		{"ragged", good[:100], "whole number"},
		{"unaligned", append(bytes.Clone(good), rec(0x109001, 0)...), "not 4 KiB aligned"},
		{"descending", append(bytes.Clone(good), rec(0x100000, 0)...), "does not ascend"},
		{"too high", append(bytes.Clone(good), rec(0x800000, 0)...), "outside"},
		{"no RSDP", good[pagesRecordBytes:], "no RSDP"},
		{"no XSDT page", good[:pagesRecordBytes], "no page at or above 0x100000"},
		// Tables in the pages: APIC at 0x101000 (record 2, 80 bytes), DSDT
		// from 0x101050 over pages 0x101000-0x108000.
		{"bad table checksum", editPage(good, 0x101000, func(p []byte) { p[0x30]++ }), "APIC at 0x101000: APIC checksum is bad"},
		{"bad RSDP checksum", editPage(good, 0xe0000, func(p []byte) { p[9]++ }), "RSDP at 0xe0000: checksum"},
		{"unknown signature", editPage(good, 0x101000, func(p []byte) { copy(p, "HPET"); fixChecksum(p[:80], 9) }), `XSDT entry 0: table at 0x101000 has an unknown signature "HPET"`},
		{"bad DSDT checksum", editPage(good, 0x104000, func(p []byte) { p[0]++ }), "FACP's DSDT: DSDT at 0x101050: DSDT checksum is bad"},
		{"table page missing", dropPage(good, 0x103000), "DSDT at 0x101050: [0x101050, 0x108b02) needs page 0x103000"},
	}
	for _, tc := range cases {
		_, err := ParseACPIPages(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParseACPIPages: never panics on arbitrary pages files.
func FuzzParseACPIPages(f *testing.F) {
	f.Add(binary.LittleEndian.AppendUint64(nil, 0xe0000))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseACPIPages(data)
		if err == nil && (a.End() <= XSDTAddress || a.End() > SNPPagesAddress) {
			t.Fatalf("accepted pages ending at %#x", a.End())
		}
	})
}

// FuzzACPIFromTables: arbitrary bytes as one of the tables (or as an extra
// one) never make the layout panic, and what is accepted ends in range.
func FuzzACPIFromTables(f *testing.F) {
	dir := filepath.Join(testdataDir, "acpi", "acpi-clh-aml")
	ents, err := os.ReadDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	base := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		base[e.Name()] = b
		f.Add(e.Name(), b)
	}
	f.Add("extra.aml", []byte("RSD PTR "))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		m := map[string][]byte{}
		for k, v := range base {
			m[k] = v
		}
		m[name] = data
		a, err := ACPIFromTables(m)
		if err != nil {
			return
		}
		if a.End() > SNPPagesAddress || a.Pages[0].GPA != RSDPAddress {
			t.Fatalf("accepted layout: first page %#x, end %#x", a.Pages[0].GPA, a.End())
		}
	})
}

// editPage returns a copy of a pages file with the page at gpa edited.
func editPage(pages []byte, gpa uint64, edit func(p []byte)) []byte {
	out := bytes.Clone(pages)
	for off := 0; off < len(out); off += pagesRecordBytes {
		if binary.LittleEndian.Uint64(out[off:]) == gpa {
			edit(out[off+8 : off+pagesRecordBytes])
		}
	}
	return out
}

// dropPage returns a copy of a pages file without the page at gpa.
func dropPage(pages []byte, gpa uint64) []byte {
	var out []byte
	for off := 0; off < len(pages); off += pagesRecordBytes {
		if binary.LittleEndian.Uint64(pages[off:]) != gpa {
			out = append(out, pages[off:off+pagesRecordBytes]...)
		}
	}
	return out
}

// minimalACPIPages is a two-page pages file that ParseACPIPages accepts:
// RSDP at 0xE0000; XSDT, FACP, DSDT and FACS in the page at 0x100000.
func minimalACPIPages() []byte {
	le := binary.LittleEndian
	rsdp := make([]byte, pageSize)
	copy(rsdp, "RSD PTR ")
	rsdp[15] = 2
	le.PutUint32(rsdp[20:], rsdpV2Size)
	le.PutUint64(rsdp[24:], XSDTAddress)
	fixChecksum(rsdp[:rsdpV1Size], 8)
	fixChecksum(rsdp[:rsdpV2Size], 32)
	pg := make([]byte, pageSize)
	table := func(off int, sig string, n int) []byte {
		t := pg[off : off+n]
		copy(t, sig)
		le.PutUint32(t[4:], uint32(n))
		return t
	}
	table(0x300, "FACS", 64)
	table(0x200, "DSDT", 36)
	fixChecksum(pg[0x200:0x224], 9)
	facp := table(0x40, "FACP", 276)
	le.PutUint64(facp[facpXFacsOff:], XSDTAddress+0x300)
	le.PutUint64(facp[facpXDsdtOff:], XSDTAddress+0x200)
	fixChecksum(facp, 9)
	xsdt := table(0, "XSDT", 44)
	le.PutUint64(xsdt[36:], XSDTAddress+0x40)
	fixChecksum(xsdt, 9)
	out := le.AppendUint64(nil, RSDPAddress)
	out = append(out, rsdp...)
	out = le.AppendUint64(out, XSDTAddress)
	return append(out, pg...)
}

// FuzzACPIPageTables fuzzes the table walk of ParseACPIPages: the input
// is the start of the page at 0x100000 (XSDT, FACP, DSDT, FACS in the
// seed) behind a fixed RSDP page. A whole pages file as a seed (8 KiB)
// stalls the fuzzer's mutator; this keeps the input small.
func FuzzACPIPageTables(f *testing.F) {
	full := minimalACPIPages()
	rsdpRecord, xsdtPage := full[:pagesRecordBytes], full[pagesRecordBytes+8:]
	f.Add(bytes.Clone(xsdtPage[:0x340]))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > pageSize {
			return
		}
		file := binary.LittleEndian.AppendUint64(bytes.Clone(rsdpRecord), XSDTAddress)
		file = append(file, data...)
		file = append(file, make([]byte, pageSize-len(data))...)
		_, _ = ParseACPIPages(file) // must not panic
	})
}

func TestMinimalACPIPages(t *testing.T) {
	if _, err := ParseACPIPages(minimalACPIPages()); err != nil {
		t.Fatal(err)
	}
}
