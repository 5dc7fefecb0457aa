package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

const testdata = "../../testdata"

// buildIGVM lays out the synthetic kernel with opts (Kata settings and a
// command line unless given), lets edit change the image, and writes it.
func buildIGVM(t testing.TB, opts linuxboot.Options, edit func(*linuxboot.Image)) []byte {
	t.Helper()
	kernel, err := os.ReadFile(filepath.Join(testdata, "igvm/inputs/synthetic-bzImage"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := linuxboot.ParseBzImage(kernel)
	if err != nil {
		t.Fatal(err)
	}
	img, err := linuxboot.Build(context.Background(), k, opts)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(img)
	}
	var buf bytes.Buffer
	if _, err := img.Write(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func kata(cmdline string, initrdData []byte, acpi *linuxboot.ACPI) linuxboot.Options {
	o := linuxboot.Kata()
	o.Cmdline, o.Initrd, o.ACPI = cmdline, initrdData, acpi
	return o
}

// acpiTables reads the acpi-clh tables; edit may change them (their
// checksums are fixed afterwards).
func acpiTables(t testing.TB, edit func(map[string][]byte)) *linuxboot.ACPI {
	t.Helper()
	dir := filepath.Join(testdata, "igvm/acpi/acpi-clh-aml")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	if edit != nil {
		edit(m)
		for name, b := range m {
			if len(b) >= 36 && !strings.HasPrefix(name, "rsdp") && !strings.HasPrefix(name, "FACS") {
				b[9] = 0
				var sum byte
				for _, c := range b {
					sum += c
				}
				b[9] = -sum
			}
		}
	}
	a, err := linuxboot.ACPIFromTables(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestIGVM(t *testing.T) {
	cpio := mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.Gzip})
	acpi := acpiTables(t, nil)
	a := buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpi), nil)
	for _, tc := range []struct {
		name string
		b    []byte
		want []string
		// derived must be among the derived differences.
		derived []string
	}{
		{"identical", buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpi), nil), nil, nil},
		{"guest features", buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpi), func(img *linuxboot.Image) {
			v := img.VMSA
			v.SEVFeatures |= 1 << 5 // DEBUG_SWAP
			for i := range img.Pages {
				if img.Pages[i].Kind == linuxboot.PageVMSA {
					img.Pages[i].Data = v.Marshal()
				}
			}
		}), []string{"vmsa vp 0 sev_features: 0x9 -> 0x29 (B sets DEBUG_SWAP)"},
			[]string{"launch_digest mshv: "}},
		{"acpi table", buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpiTables(t, func(m map[string][]byte) {
			m["APIC_sample.aml"][44] ^= 1 // a byte of the first MADT entry
		})), nil), []string{"acpi APIC content: 80 bytes -> 80 bytes (first difference at byte 44, and the checksum)"},
			[]string{"pages 0x101000-0x102000 content differs (1 page, ACPI APIC, first difference at 0x101009 (ACPI APIC + 0x9))", "launch_digest mshv: "}},
		{"command line", buildIGVM(t, kata("console=ttyS0 panic=-1 quiet", cpio, acpi), nil),
			[]string{`cmdline kernel command line: "console=ttyS0 panic=-1" -> "console=ttyS0 panic=-1 quiet" (+quiet)`},
			[]string{"boot_params hdr.cmdline_size: 0x16 -> 0x1c",
				"pages 0x3002000-0x3003000 content differs (1 page, boot_params, first difference at 0x30022d8 (boot_params + 0x238))",
				"pages 0x3003000-0x3004000 content differs (1 page, kernel command line, first difference at 0x30030b6 (kernel command line + 0x16))"}},
		{"cpuid page", buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpi), func(img *linuxboot.Image) {
			for i := range img.Pages {
				if img.Pages[i].Kind == linuxboot.PageCPUID {
					p := append([]byte(nil), img.Pages[i].Data...)
					p[16+48*2] = 0x7 // entry 2: leaf 1 -> leaf 7
					img.Pages[i].Data = p
				}
			}
		}), []string{"cpuid entries[2].eax_in: 0x1 -> 0x7 (A: leaf 0x1 subleaf 0x0; B: leaf 0x7 subleaf 0x0)"},
			[]string{"pages 0x800000-0x801000 content differs (1 page, CPUID page, first difference at 0x800070 (CPUID page + 0x70))"}},
		{"kernel", buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpi), func(img *linuxboot.Image) {
			for i := range img.Pages {
				if p := &img.Pages[i]; p.GPA == 0x1001000 && p.Data != nil {
					p.Data = append([]byte(nil), p.Data...)
					p.Data[0x10] ^= 0xff
				}
			}
		}), []string{"pages 0x1001000-0x1002000 content differs (1 page, kernel, first difference at 0x1001010 (kernel + 0x1010))"},
			[]string{"launch_digest mshv: "}},
		{"initrd grows", buildIGVM(t, kata("console=ttyS0 panic=-1", mkInitrd(t, editInitrd(func(e *initrd.Entry) bool { return true },
			initrd.Entry{Path: "etc/added", Mode: initrd.TypeReg | 0o644, Data: []byte(strings.Repeat("x", 5000))}),
			initrd.WriteOptions{Compression: initrd.Gzip, Level: 1}), acpi), nil),
			[]string{"initrd etc/added: added: regular file 0644 0:0, 5000 bytes"},
			// The stack and the cc_blob sit after the initrd: they move.
			[]string{"vmsa vp 0 rsp: 0x3005144 -> 0x3005199 (moved with the end of the initrd (+0x55))",
				"boot_params cc_blob_address: 0x3005144 -> 0x3005199 (moved with the end of the initrd (+0x55))",
				"boot_params hdr.ramdisk_size: 0x144 -> 0x199", "pages 0x3005000-0x3006000 content differs (1 page, cc_blob, "}},
		{"initrd", buildIGVM(t, kata("console=ttyS0 panic=-1", mkInitrd(t, editInitrd(func(e *initrd.Entry) bool {
			if e.Path == "etc/hostname" {
				e.Data = []byte("pod\n\n")
			}
			return true
		}), initrd.WriteOptions{Compression: initrd.Gzip}), acpi), nil),
			[]string{`initrd etc/hostname content: 4 bytes -> 5 bytes (B continues after A's 4 bytes)`},
			[]string{"pages 0x3004000-0x3005000 content differs (1 page, initrd, first difference at "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compareBytes(t, a, tc.b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != KindIGVM {
				t.Fatalf("kind %s", res.Kind)
			}
			got := primaryLines(res)
			ok := (len(tc.want) == 0) == res.Identical && len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tc.want[i])
			}
			all := lines(res)
			for _, d := range tc.derived {
				ok = ok && strings.Contains(all, "~ "+d)
			}
			if !ok {
				t.Errorf("got\n%s\nwant\n%s\nand derived\n%s", all, strings.Join(tc.want, "\n"), strings.Join(tc.derived, "\n"))
			}
			t.Logf("\n%s", text(t, res))
		})
	}
}

// Different ACPI tables altogether: the tables are named by signature.
func TestIGVMDefaultACPI(t *testing.T) {
	a := buildIGVM(t, kata("", nil, acpiTables(t, nil)), nil)
	b := buildIGVM(t, kata("", nil, nil), nil) // igvm-tooling's default tables
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(res)
	for _, w := range []string{"acpi DSDT content: ", "acpi MCFG: removed: ", "acpi FACP "} {
		if !strings.Contains(all, w) {
			t.Errorf("no %q in\n%s", w, all)
		}
	}
}

// The igvmgen vector files: d02 and d05 differ in the page-table C-bit and
// EFER.SVME, which the VMSA shows register by register.
func TestIGVMVectors(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(testdata, "igvm", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	res, err := compareBytes(t, read("d02_default_acpi_short.igvm"), read("d05_default_enc0_svme0_long.igvm"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(res)
	for _, w := range []string{"vmsa vp 0 efer: ", "vmsa vp 0 cr3: ", "cmdline kernel command line: "} {
		if !strings.Contains(all, w) {
			t.Errorf("no %q in\n%s", w, all)
		}
	}
	t.Logf("\n%s", text(t, res))
}

// A file the kvm profile measures (the kvm layout): its digest differs too.
func TestIGVMKVMDigest(t *testing.T) {
	opts := kata("console=ttyS0", nil, nil)
	opts.Layout = linuxboot.LayoutKVM
	a := buildIGVM(t, opts, nil)
	f, err := igvm.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), a...)
	for _, h := range f.Directives() {
		if v, ok := h.(*igvm.VPContext); ok {
			b[int(v.FileOffset)+0x178] ^= 0x10 // rip
		}
	}
	// The header section's checksum covers no file data: the file stays valid.
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(res)
	if got := primaryLines(res); len(got) != 1 || !strings.HasPrefix(got[0], "vmsa vp 0 rip: ") ||
		!strings.Contains(all, "~ launch_digest mshv: ") || !strings.Contains(all, "~ launch_digest kvm: ") {
		t.Errorf("got\n%s", all)
	}
}

func TestIGVMHostile(t *testing.T) {
	a := buildIGVM(t, kata("console=ttyS0", nil, nil), nil)
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }},
		{"header crc", func(b []byte) []byte { b[40] ^= 1; return b }},
		{"header type repaired crc", func(b []byte) []byte { b[24] = 0x77; igvmtest.FixChecksum(b); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(append([]byte(nil), a...))
			res, err := compareBytes(t, a, b, Options{})
			var ie *InputError
			var fe *igvm.FormatError
			if res != nil || !errors.As(err, &ie) || ie.Name != "b" || !errors.As(err, &fe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, %v", res, err)
			}
			t.Log(err)
		})
	}
}
