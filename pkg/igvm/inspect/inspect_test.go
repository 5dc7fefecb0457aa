package inspect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/internal/testvectors"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

type vcase = testvectors.Case

func cases(t *testing.T) []vcase { return testvectors.Cases(t) }

func open(t testing.TB, path string) *igvm.File {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, _ := fh.Stat()
	f, err := igvm.Open(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// acpiAddrs are the table addresses the testvectors README documents.
var acpiAddrs = map[string]map[string]Hex{
	"acpi-clh": {"XSDT": 0x100000, "APIC": 0x101000, "DSDT": 0x101050, "FACP": 0x108B02, "FACS": 0x108C16, "MCFG": 0x108C56, "TPM2": 0x108D22},
	"default":  {"XSDT": 0x100000, "FACP": 0x101000, "OEM0": 0x101154, "APIC": 0x11F292, "FACS": 0x101114, "DSDT": 0x1011B8},
}

func TestInspectVectors(t *testing.T) {
	for _, c := range cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			f := open(t, c.IGVMPath())
			r, err := Inspect(f)
			if err != nil {
				t.Fatal(err)
			}
			eq := func(what string, got Hex, want string) {
				t.Helper()
				if got.String() != want {
					t.Errorf("%s = %v, want %s", what, got, want)
				}
			}
			if len(r.VMSAs) != 1 {
				t.Fatalf("%d VMSAs", len(r.VMSAs))
			}
			v := r.VMSAs[0]
			eq("rip", v.Registers["rip"], c.Layout.RIP)
			eq("rsp", v.Registers["rsp"], c.Layout.RSP)
			eq("cr3", v.Registers["cr3"], c.Layout.CR3)
			eq("efer", v.Registers["efer"], c.Layout.EFER)
			eq("sev_features", v.Registers["sev_features"], c.Layout.SEVFeatures)
			eq("rsi", v.Registers["rsi"], c.Layout.BootParams)
			// GDT and TSS sit at P+0x2000 (TSS) and P+0x2068 (GDT), P = cr3 without the C-bit.
			p := uint64(v.Registers["cr3"]) &^ (1 << 51)
			if v.Segments["tr"] != (Segment{0x28, 0x8b, 0x67, Hex(p + 0x2000)}) || v.Segments["gdtr"] != (Segment{0, 0, 0x37, Hex(p + 0x2068)}) {
				t.Errorf("tr %+v gdtr %+v", v.Segments["tr"], v.Segments["gdtr"])
			}
			if v.Segments["cs"] != (Segment{0x8, 0xa9b, 0xffffffff, 0}) || v.Registers["g_pat"] != 0x0007040600070406 || v.Registers["xcr0"] != 1 {
				t.Errorf("cs %+v g_pat %v xcr0 %v", v.Segments["cs"], v.Registers["g_pat"], v.Registers["xcr0"])
			}
			l := r.Linux
			if l == nil {
				t.Fatalf("no Linux boot data: %v", r.Notes)
			}
			if l.Cmdline != c.Append {
				t.Errorf("cmdline %q, want %q", l.Cmdline, c.Append)
			}
			eq("cmdline_gpa", l.CmdlineGPA, c.Layout.CmdlineGPA)
			eq("ramdisk", l.RamdiskGPA, c.Layout.RamdiskGPA)
			eq("cc_blob", l.CCBlob, c.Layout.CCBlob)
			eq("acpi_rsdp", l.ACPIRSDP, c.Layout.ACPIRSDP)
			if uint64(l.RamdiskSize) != c.Layout.RamdiskSize || l.CmdlineSize != c.Layout.CmdlineSize {
				t.Errorf("ramdisk size %v cmdline_size %d", l.RamdiskSize, l.CmdlineSize)
			}
			if l.TypeOfLoader != 0xff || l.CCBlobMagic != "0x45444d41" {
				t.Errorf("type_of_loader %v cc_blob magic %s", l.TypeOfLoader, l.CCBlobMagic)
			}
			if len(l.E820) != len(c.Layout.E820) {
				t.Fatalf("%d e820 entries, want %d", len(l.E820), len(c.Layout.E820))
			}
			for i, e := range c.Layout.E820 {
				got := fmt.Sprintf("%v %v %d", l.E820[i].Addr, l.E820[i].End, l.E820[i].Type)
				want := fmt.Sprintf("%v %v %v", e[0], e[1], e[2])
				if got != want {
					t.Errorf("e820[%d] = %s, want %s", i, got, want)
				}
			}
			if r.ACPI == nil || !r.ACPI.ChecksumOK {
				t.Fatalf("ACPI %+v notes %v", r.ACPI, r.Notes)
			}
			got := map[string]Hex{}
			for _, tb := range r.ACPI.Tables {
				if !tb.ChecksumOK || tb.Problem != "" {
					t.Errorf("table %s at %v: %s", tb.Signature, tb.Addr, tb.Problem)
				}
				got[tb.Signature] = tb.Addr
			}
			if fmt.Sprint(got) != fmt.Sprint(acpiAddrs[c.ACPI]) {
				t.Errorf("ACPI tables %v, want %v", got, acpiAddrs[c.ACPI])
			}
			if r.IDBlock == nil || r.IDBlock.LD != c.ExpectedLaunchDigest || r.IDBlock.SignatureValid == nil || !*r.IDBlock.SignatureValid {
				t.Errorf("ID block %+v, want ld %s and a valid signature", r.IDBlock, c.ExpectedLaunchDigest)
			}
			if len(r.Policies) != 1 || r.Policies[0].Value != 0x3001f || strings.Join(r.Policies[0].Flags, " ") != "SMT RESERVED_1" {
				t.Errorf("policy %+v", r.Policies)
			}
			var text, js bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), fmt.Sprintf("%q", c.Append)) {
				t.Error("text report lacks the command line")
			}
			if err := json.NewEncoder(&js).Encode(r); err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if lx, _ := back["linux"].(map[string]any); lx == nil || lx["boot_params_gpa"] != c.Layout.BootParams {
				t.Errorf("JSON linux.boot_params_gpa = %v", back["linux"])
			}
		})
	}
}

// TestFolding pins the folded view of d01: one line per run of pages.
func TestFolding(t *testing.T) {
	f := open(t, "../../../testdata/igvm/d01_kata_clh_short.igvm")
	r, err := Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range r.Directives {
		if e.Start != nil {
			lines = append(lines, fmt.Sprintf("%v-%v %d %s zero=%v", *e.Start, *e.End, e.Pages, e.DataType, *e.Zero))
		} else {
			lines = append(lines, e.Type)
		}
	}
	want := []string{
		"0xa0000-0xe0000 64 NORMAL zero=true",
		"0xe0000-0xe1000 1 NORMAL zero=false",
		"0xe1000-0x100000 31 NORMAL zero=true",
		"0x100000-0x109000 9 NORMAL zero=false",
		"0x800000-0x801000 1 CPUID_DATA zero=false",
		"0x801000-0x802000 1 SECRETS zero=true",
		"PARAMETER_AREA", "VP_COUNT_PARAMETER", "MEMORY_MAP", "PARAMETER_INSERT", "VP_CONTEXT",
		"0x1a10000-0x1a14000 4 NORMAL zero=true",
		"0x3467000-0x346e000 7 NORMAL zero=true",
		"0x346e000-0x3472000 4 NORMAL zero=false",
		"0x3472000-0x3473000 1 NORMAL zero=true",
		"0x3473000-0x3474000 1 NORMAL zero=false",
		"SNP_ID_BLOCK",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("folded directives:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestInspectCanonical: re-writing a vector canonically changes nothing
// inspect reports except the checksum.
func TestInspectCanonical(t *testing.T) {
	for _, c := range cases(t) {
		f := open(t, c.IGVMPath())
		var b igvm.Builder
		b.CopyFile(f)
		g := igvmtest.Reparse(t, &b)
		r1, err := Inspect(f)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Inspect(g)
		if err != nil {
			t.Fatal(err)
		}
		if r1.Checksum == r2.Checksum {
			t.Errorf("%s: checksum unchanged though the padding changed", c.Name)
		}
		r2.Checksum = r1.Checksum
		j1, _ := json.Marshal(r1)
		j2, _ := json.Marshal(r2)
		if !bytes.Equal(j1, j2) {
			t.Errorf("%s: report of the canonical file differs", c.Name)
		}
	}
}

// TestSecondIDBlockNoted: only the first ID block is decoded (and its
// signature checked); more are reported as a note.
func TestSecondIDBlockNoted(t *testing.T) {
	f := open(t, "../../../testdata/igvm/d01_kata_clh_short.igvm")
	var b igvm.Builder
	b.CopyFile(f)
	b.Add(&igvm.SNPIDBlock{CompatibilityMask: 1}, nil)
	g := igvmtest.Reparse(t, &b)
	r, err := Inspect(g)
	if err != nil {
		t.Fatal(err)
	}
	if r.IDBlock == nil || r.IDBlock.SignatureValid == nil || !*r.IDBlock.SignatureValid {
		t.Errorf("first ID block %+v", r.IDBlock)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "1 more SNP_ID_BLOCK") {
		t.Errorf("notes %q", r.Notes)
	}
}

// TestACPIBadChecksum: a changed byte in one ACPI table is reported as a
// bad checksum of that table only, in the report and in the text.
func TestACPIBadChecksum(t *testing.T) {
	f := open(t, "../../../testdata/igvm/d01_kata_clh_short.igvm")
	var b igvm.Builder
	for _, h := range f.Headers {
		p, ok := h.(*igvm.PageData)
		if !ok || p.GPA != 0x101000 {
			var d *io.SectionReader
			if igvm.HasData(h) {
				d = f.DataReader(h)
			}
			b.Add(h, d)
			continue
		}
		data, err := f.Data(h)
		if err != nil {
			t.Fatal(err)
		}
		data[0x30] ^= 0xff // inside the APIC table at 0x101000 (80 bytes)
		b.AddBytes(h, data)
	}
	r, err := Inspect(igvmtest.Reparse(t, &b))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{}
	for _, tb := range r.ACPI.Tables {
		if !tb.ChecksumOK {
			bad[tb.Signature] = true
			if tb.Problem != "bad checksum" {
				t.Errorf("%s: problem %q", tb.Signature, tb.Problem)
			}
		}
	}
	if len(bad) != 1 || !bad["APIC"] {
		t.Errorf("tables with a bad checksum: %v, want only APIC", bad)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "APIC at 0x101000   length 80      rev 4  OEM VRTUAL   MICROSFT   via XSDT PROBLEM: bad checksum") {
		t.Errorf("text report:\n%s", text.String())
	}
}
