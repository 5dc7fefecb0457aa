package linuxboot

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/testvectors"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

var testdataDir = testvectors.Dir()

type vectorCase = testvectors.Case

func loadCases(t testing.TB) []vectorCase { return testvectors.Cases(t) }

func readTestdata(t testing.TB, rel string) []byte { return testvectors.Read(t, rel) }

// buildCase builds the image of a vector case from its inputs (copied to
// testdata/igvm/inputs and testdata/igvm/acpi).
func buildCase(t testing.TB, c vectorCase) *Image {
	t.Helper()
	k, err := BzImageOptions{AllowTruncated: true}.Parse(readTestdata(t, filepath.Join("inputs", filepath.Base(c.Kernel))))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Cmdline:       c.Append,
		PvalidateOpt:  c.Options.PvalidateOpt == 1,
		EncryptedPage: c.Options.EncryptedPage == 1,
		SVME:          c.Options.SVME == 1,
	}
	if c.Initrd != nil {
		opts.Initrd = readTestdata(t, filepath.Join("inputs", filepath.Base(*c.Initrd)))
	}
	switch c.ACPI {
	case "acpi-clh":
		a, err := ACPIFromDir(filepath.Join(testdataDir, "acpi", "acpi-clh-aml"))
		if err != nil {
			t.Fatal(err)
		}
		opts.ACPI = a
	case "default":
	default:
		t.Fatalf("unknown acpi %q", c.ACPI)
	}
	img, err := Build(context.Background(), k, opts)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// directive is one measured item of an IGVM file, independent of file
// offsets and of how the data is stored.
type directive struct {
	Type igvm.HeaderType
	Desc string // the header with FileOffset cleared
	Data []byte // page/VMSA contents, zeros when the header has none
}

func directives(t testing.TB, f *igvm.File) []directive {
	t.Helper()
	var out []directive
	for _, h := range f.Directives() {
		d := directive{Type: h.Type()}
		switch x := h.(type) {
		case *igvm.PageData:
			c := *x
			c.FileOffset = 0
			d.Desc = fmt.Sprintf("%+v", c)
		case *igvm.VPContext:
			c := *x
			c.FileOffset = 0
			d.Desc = fmt.Sprintf("%+v", c)
		case *igvm.ParameterArea:
			c := *x
			c.FileOffset = 0
			d.Desc = fmt.Sprintf("%+v", c)
		case *igvm.SNPIDBlock:
			continue // signed by another step, not measured
		default:
			d.Desc = describe([]igvm.Header{h})
		}
		switch h.(type) {
		case *igvm.PageData, *igvm.VPContext:
			data, err := f.Data(h)
			if err != nil {
				t.Fatal(err)
			}
			full := make([]byte, pageSize)
			copy(full, data)
			d.Data = full
		}
		out = append(out, d)
	}
	return out
}

func describe(hs []igvm.Header) string {
	var s string
	for _, h := range hs {
		s += fmt.Sprintf("%v%+v ", h.Type(), reflect.ValueOf(h).Elem().Interface())
	}
	return s
}

func writeImage(t testing.TB, img *Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := img.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// launchDigest computes igvmgen's SNP launch digest of an IGVM file (the
// vectors README: PAGE_INFO chain in directive order, no-data pages as
// NORMAL zeros, CPUID 6, SECRETS 5, parameter pages UNMEASURED, VMSA 2).
func launchDigest(t testing.TB, f *igvm.File) []byte {
	t.Helper()
	ld := make([]byte, 48)
	zero := sha512.Sum384(make([]byte, pageSize))
	extend := func(gpa uint64, typ byte, contents []byte) {
		info := make([]byte, 0, 0x70)
		info = append(info, ld...)
		if contents == nil {
			contents = make([]byte, 48)
		}
		info = append(info, contents...)
		info = binary.LittleEndian.AppendUint16(info, 0x70)
		info = append(info, typ, 0, 0, 0, 0, 0)
		info = binary.LittleEndian.AppendUint64(info, gpa)
		s := sha512.Sum384(info)
		ld = s[:]
	}
	areas := map[uint32]uint64{}
	for _, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.PageData:
			switch x.DataType {
			case igvm.DataCPUID:
				extend(x.GPA, 6, nil)
			case igvm.DataSecrets:
				extend(x.GPA, 5, nil)
			default:
				if x.Flags&igvm.PageFlagUnmeasured != 0 {
					extend(x.GPA, 4, nil)
					continue
				}
				data, err := f.Data(h)
				if err != nil {
					t.Fatal(err)
				}
				full := make([]byte, pageSize)
				copy(full, data)
				s := sha512.Sum384(full)
				if !igvm.HasData(h) {
					s = zero
				}
				extend(x.GPA, 1, s[:])
			}
		case *igvm.ParameterArea:
			areas[x.ParameterAreaIndex] = x.NumberOfBytes
		case *igvm.ParameterInsert:
			for off := uint64(0); off < areas[x.ParameterAreaIndex]; off += pageSize {
				extend(x.GPA+off, 4, nil)
			}
		case *igvm.VPContext:
			data, err := f.Data(h)
			if err != nil {
				t.Fatal(err)
			}
			full := make([]byte, pageSize)
			copy(full, data)
			s := sha512.Sum384(full)
			extend(x.GPA, 2, s[:])
		}
	}
	return ld
}

func hexU(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVectors builds every vector case from its inputs and compares the
// measured pages, page for page, with igvmgen's file, and the launch digest
// with the recorded one.
func TestVectors(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			img := buildCase(t, c)
			ours, err := igvm.Parse(writeImage(t, img))
			if err != nil {
				t.Fatalf("our file does not parse: %v", err)
			}
			ref, err := igvm.Parse(readTestdata(t, filepath.Base(c.IGVMFile)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := describe(ours.Platforms()), describe(ref.Platforms()); got != want {
				t.Errorf("platforms %s, want %s", got, want)
			}
			if got, want := describe(ours.Initialization()), describe(ref.Initialization()); got != want {
				t.Errorf("initialization %s, want %s", got, want)
			}
			a, b := directives(t, ours), directives(t, ref)
			if len(a) != len(b) {
				t.Errorf("%d directives, reference has %d", len(a), len(b))
			}
			bad := 0
			for i := 0; i < len(a) && i < len(b) && bad < 10; i++ {
				if a[i].Type != b[i].Type || a[i].Desc != b[i].Desc {
					t.Errorf("directive %d: %v %s, want %v %s", i, a[i].Type, a[i].Desc, b[i].Type, b[i].Desc)
					bad++
					continue
				}
				if !bytes.Equal(a[i].Data, b[i].Data) {
					var offs []string
					for j := range a[i].Data {
						if a[i].Data[j] != b[i].Data[j] && len(offs) < 12 {
							offs = append(offs, fmt.Sprintf("%#x:%02x/%02x", j, a[i].Data[j], b[i].Data[j]))
						}
					}
					t.Errorf("directive %d %s: contents differ at %v (ours/ref)", i, a[i].Desc, offs)
					bad++
				}
			}
			got := hex.EncodeToString(launchDigest(t, ours))
			if got != c.ExpectedLaunchDigest {
				t.Errorf("launch digest %s, want %s", got, c.ExpectedLaunchDigest)
			}
			t.Logf("%d directives (%d layout pages) equal to igvmgen's, launch digest %s", len(a), len(img.Pages), got)
			if got := hex.EncodeToString(launchDigest(t, ref)); got != c.ExpectedLaunchDigest {
				t.Errorf("test digest of the reference %s, want %s (test helper wrong)", got, c.ExpectedLaunchDigest)
			}

			L := img.Layout
			for _, chk := range []struct {
				name      string
				got, want uint64
			}{
				{"boot_params", L.BootParams, hexU(t, c.Layout.BootParams)},
				{"cmdline", L.Cmdline, hexU(t, c.Layout.CmdlineGPA)},
				{"ramdisk", L.Ramdisk, hexU(t, c.Layout.RamdiskGPA)},
				{"ramdisk_size", L.RamdiskSize, c.Layout.RamdiskSize},
				{"cc_blob", L.CCBlob, hexU(t, c.Layout.CCBlob)},
				{"rsp", img.VMSA.RSP, hexU(t, c.Layout.RSP)},
				{"rip", img.VMSA.RIP, hexU(t, c.Layout.RIP)},
				{"cr3", img.VMSA.CR3, hexU(t, c.Layout.CR3)},
				{"efer", img.VMSA.EFER, hexU(t, c.Layout.EFER)},
				{"highest_gpa", img.Pages[len(img.Pages)-1].GPA, hexU(t, c.Layout.HighestGPA)},
			} {
				if chk.got != chk.want {
					t.Errorf("%s = %#x, want %#x", chk.name, chk.got, chk.want)
				}
			}
			if len(L.E820) != len(c.Layout.E820) {
				t.Errorf("%d e820 entries, want %d", len(L.E820), len(c.Layout.E820))
			} else {
				for i, e := range c.Layout.E820 {
					start, end := hexU(t, e[0].(string)), hexU(t, e[1].(string))
					typ := uint32(e[2].(float64))
					if L.E820[i].Addr != start || L.E820[i].Addr+L.E820[i].Size != end || L.E820[i].Type != typ {
						t.Errorf("e820[%d] = %+v, want [%#x,%#x) type %d", i, L.E820[i], start, end, typ)
					}
				}
			}
		})
	}
}

// TestReproducible: identical inputs give identical bytes.
func TestReproducible(t *testing.T) {
	for _, c := range loadCases(t) {
		a := writeImage(t, buildCase(t, c))
		b := writeImage(t, buildCase(t, c))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two builds differ", c.Name)
		}
	}
}
