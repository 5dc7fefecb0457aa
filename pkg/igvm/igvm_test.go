package igvm

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/testvectors"
)

type vectorCase = testvectors.Case

func loadCases(t testing.TB) []vectorCase { return testvectors.Cases(t) }

func readCase(t testing.TB, c vectorCase) []byte { return c.ReadIGVM(t) }

func TestReferenceFiles(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			b := readCase(t, c)
			f, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Headers) != c.Layout.VariableHeaders {
				t.Errorf("%d headers, want %d", len(f.Headers), c.Layout.VariableHeaders)
			}
			pages := 0
			var vp *VPContext
			for _, h := range f.Directives() {
				switch x := h.(type) {
				case *PageData:
					pages++
				case *VPContext:
					vp = x
				}
			}
			if pages != c.Layout.PageDataHeaders {
				t.Errorf("%d PAGE_DATA, want %d", pages, c.Layout.PageDataHeaders)
			}
			if len(f.Platforms()) != 1 || len(f.Initialization()) != 1 {
				t.Errorf("sections: %d platform, %d initialization", len(f.Platforms()), len(f.Initialization()))
			}
			if p, ok := f.Platforms()[0].(*SupportedPlatform); !ok || p.PlatformType != PlatformSEVSNP {
				t.Errorf("platform %+v", f.Platforms()[0])
			}
			if g, ok := f.Initialization()[0].(*GuestPolicy); !ok || g.Policy != 0x3001f {
				t.Errorf("policy %+v", f.Initialization()[0])
			}
			if vp == nil {
				t.Fatal("no VP_CONTEXT")
			}
			if got := hex(vp.GPA); got != c.Layout.VMSAGPA {
				t.Errorf("VMSA gpa %s, want %s", got, c.Layout.VMSAGPA)
			}
			if _, ok := f.Directives()[len(f.Directives())-1].(*SNPIDBlock); !ok {
				t.Errorf("last directive is %v, want SNP_ID_BLOCK", f.Directives()[len(f.Directives())-1].Type())
			}
		})
	}
}

func hex(v uint64) string { return "0x" + fmtHex(v) }

func fmtHex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{digits[v&15]}, b...)
		v >>= 4
	}
	return string(b)
}

// sameContents compares the headers (file offsets aside) and every
// header's data of two files.
func sameContents(t *testing.T, a, b *File) {
	t.Helper()
	if len(a.Headers) != len(b.Headers) {
		t.Fatalf("%d headers vs %d", len(a.Headers), len(b.Headers))
	}
	for i := range a.Headers {
		ha, hb := withFileOffset(a.Headers[i], 0), withFileOffset(b.Headers[i], 0)
		if !reflect.DeepEqual(ha, hb) {
			t.Fatalf("header %d: %+v vs %+v", i, ha, hb)
		}
		da, err := a.Data(a.Headers[i])
		if err != nil {
			t.Fatal(err)
		}
		db, err := b.Data(b.Headers[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Fatalf("header %d (%v): data differs", i, a.Headers[i].Type())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			orig, err := Parse(readCase(t, c))
			if err != nil {
				t.Fatal(err)
			}
			var b Builder
			b.CopyFile(orig)
			var out bytes.Buffer
			n, err := b.WriteTo(&out)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(out.Len()) {
				t.Errorf("WriteTo returned %d, wrote %d", n, out.Len())
			}
			canon, err := Parse(out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			sameContents(t, orig, canon)
			// igvmgen stores each page once and zero pages as offset 0,
			// so the canonical file differs only in the padding after the
			// 20-byte VP_CONTEXT body ('0' -> NUL) and in the CRC.
			ref := readCase(t, c)
			if out.Len() != len(ref) {
				t.Fatalf("canonical file %d bytes, igvmgen's %d", out.Len(), len(ref))
			}
			var diffs []int
			for i := range ref {
				if ref[i] != out.Bytes()[i] {
					diffs = append(diffs, i)
				}
			}
			vpOff := -1
			for i, h := range canon.Headers {
				if h.Type() == TypeVPContext {
					vpOff = int(canon.Offsets[i])
				}
			}
			for _, d := range diffs {
				inCRC := d >= 20 && d < 24
				inPad := d >= vpOff+28 && d < vpOff+32 && out.Bytes()[d] == 0 && ref[d] == '0'
				if !inCRC && !inPad {
					t.Fatalf("byte %#x differs from igvmgen's file (%#x vs %#x)", d, out.Bytes()[d], ref[d])
				}
			}
			// Canonical form is a fixed point.
			var b2 Builder
			b2.CopyFile(canon)
			var out2 bytes.Buffer
			if _, err := b2.WriteTo(&out2); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), out2.Bytes()) {
				t.Error("re-writing a canonical file changed it")
			}
		})
	}
}

func TestParameterAreaLookup(t *testing.T) {
	f, err := Parse(valid(nil))
	if err != nil {
		t.Fatal(err)
	}
	if a := f.ParameterArea(0); a == nil || a.NumberOfBytes != 0x1000 {
		t.Errorf("ParameterArea(0) = %+v", a)
	}
	if a := f.ParameterArea(1); a != nil {
		t.Errorf("ParameterArea(1) = %+v", a)
	}
}

func TestMemory(t *testing.T) {
	f, err := Parse(valid(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := f.Memory()
	if got := m.Pages(); len(got) != 2 || got[0] != 0x1000 || got[1] != 0x2000 {
		t.Fatalf("pages %#x", got)
	}
	// A read spanning the data page and the zero page.
	p := make([]byte, 8)
	if _, err := m.ReadAt(p, 0x1ffc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, []byte{0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0, 0}) {
		t.Errorf("read %x", p)
	}
	n, err := m.ReadAt(p, 0x2ffc)
	if err == nil || n != 4 || !strings.Contains(err.Error(), "gpa 0x3000 is not loaded") {
		t.Errorf("read past loaded memory: n=%d err=%v", n, err)
	}
	if !m.Loaded(0x1fff) || m.Loaded(0x3000) {
		t.Error("Loaded wrong")
	}
}

func TestMemory2MPages(t *testing.T) {
	var b Builder
	b.Add(snpPlatform(1), nil)
	b.Add(&PageData{GPA: 0x200000, CompatibilityMask: 1, Flags: PageFlag2MB}, Bytes(bytes.Repeat([]byte{7}, PageSize2M)))
	b.Add(page(0x201000, 0), Bytes([]byte{9})) // later 4 KiB page overrides part of it
	b.Add(&VPContext{GPA: 0x1000, CompatibilityMask: 1}, Bytes([]byte{1}))
	f := reparse(t, &b)
	m := f.Memory()
	if n := len(m.Pages()); n != 512 {
		t.Errorf("%d pages, want 512", n)
	}
	p := make([]byte, 2)
	for _, tc := range []struct {
		gpa  int64
		want []byte
	}{{0x200000, []byte{7, 7}}, {0x201000, []byte{9, 0}}, {0x3fffff - 1, []byte{7, 7}}} {
		if _, err := m.ReadAt(p, tc.gpa); err != nil || !bytes.Equal(p, tc.want) {
			t.Errorf("at %#x: %x %v, want %x", tc.gpa, p, err, tc.want)
		}
	}
	if m.Loaded(0x400000) {
		t.Error("0x400000 loaded")
	}
}

// withFileOffset returns a copy of h with its file_offset set to off.
func withFileOffset(h Header, off uint32) Header {
	switch x := h.(type) {
	case *PageData:
		c := *x
		c.FileOffset = off
		return &c
	case *VPContext:
		c := *x
		c.FileOffset = off
		return &c
	case *ParameterArea:
		c := *x
		c.FileOffset = off
		return &c
	}
	return h
}

// reparse writes the file b builds and parses it back.
func reparse(t testing.TB, b *Builder) *File {
	t.Helper()
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}
