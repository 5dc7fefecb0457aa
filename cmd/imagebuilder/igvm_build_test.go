package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/internal/kvmmodel"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

// testBzImage makes a small bzImage (protocol 2.15) with a payload.
func testBzImage(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 4*512+10000)
	b[0x1f1] = 3
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	b[0x211] = 1
	binary.LittleEndian.PutUint32(b[0x22c:], 0x3100000) // initrd_addr_max
	binary.LittleEndian.PutUint32(b[0x230:], 0x200000)
	binary.LittleEndian.PutUint16(b[0x236:], 0x3)
	binary.LittleEndian.PutUint32(b[0x238:], 100) // cmdline_size
	binary.LittleEndian.PutUint64(b[0x258:], 0x1000000)
	binary.LittleEndian.PutUint32(b[0x260:], 0x2000000)
	for i := 4 * 512; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	p := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIgvmBuildCLI(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, bytes.Repeat([]byte("initrd"), 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	bigInitrd := filepath.Join(dir, "big-initrd")
	if err := os.WriteFile(bigInitrd, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	notKernel := filepath.Join(dir, "notkernel")
	if err := os.WriteFile(notKernel, bytes.Repeat([]byte{0x7f}, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	oldKernel := filepath.Join(dir, "old")
	kb, _ := os.ReadFile(kernel)
	kb = bytes.Clone(kb)
	binary.LittleEndian.PutUint16(kb[0x206:], 0x0204)
	if err := os.WriteFile(oldKernel, kb, 0o644); err != nil {
		t.Fatal(err)
	}
	acpiDir := "../../testdata/igvm/acpi/acpi-clh-aml"
	acpiPages := "../../testdata/igvm/acpi/acpi-clh.pages"
	out := filepath.Join(dir, "out.igvm")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ok", []string{"--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0", "--pvalidate-opt", "--encrypted-page", "--svme", "--acpi-dir", acpiDir}, exitOK, ""},
		{"ok pages", []string{"--kernel", kernel, "--cmdline", "console=ttyS0", "--acpi-pages", acpiPages}, exitOK, ""},
		{"ok default acpi json", []string{"--kernel", kernel, "--json"}, exitOK, ""},
		{"missing kernel", []string{"--kernel", filepath.Join(dir, "nope")}, exitFailure, "no such file"},
		{"missing initrd", []string{"--kernel", kernel, "--initrd", filepath.Join(dir, "nope")}, exitFailure, "igvm build: --initrd " + filepath.Join(dir, "nope") + ": no such file"},
		{"not a bzImage", []string{"--kernel", notKernel}, exitFailure, "not a bzImage"},
		{"protocol too old", []string{"--kernel", oldKernel}, exitFailure, "boot protocol 2.04 is too old"},
		{"cmdline too long", []string{"--kernel", kernel, "--cmdline", strings.Repeat("x", 101)}, exitFailure, "at most 100 (cmdline_size)"},
		{"initrd too high", []string{"--kernel", kernel, "--initrd", bigInitrd}, exitFailure, "initrd_addr_max 0x3100000"},
		{"bad acpi", []string{"--kernel", kernel, "--acpi-dir", dir}, exitFailure, "acpi: "},
		{"bad pages", []string{"--kernel", kernel, "--acpi-pages", kernel}, exitFailure, "acpi pages"},
		{"both acpi", []string{"--kernel", kernel, "--acpi-dir", acpiDir, "--acpi-pages", acpiPages}, exitUsage, "exclude each other"},
		{"no kernel", []string{}, exitUsage, "--kernel is required"},
		{"bad policy", []string{"--kernel", kernel, "--policy", "x"}, exitUsage, "--policy"},
		{"policy without bit 17", []string{"--kernel", kernel, "--policy", "0"}, exitUsage, "bit 17"},
		{"ok kvm layout", []string{"--kernel", kernel, "--initrd", initrd, "--kata", "--layout", "kvm"}, exitOK, ""},
		{"bad layout", []string{"--kernel", kernel, "--layout", "xen"}, exitUsage, `invalid argument "xen" for "--layout" flag: unknown layout "xen" (want mshv or kvm)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			args := append([]string{"igvm", "build", "-o", out}, tc.args...)
			code, _, stderr := runCaptured(t, args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if tc.want != "" && !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
			_, statErr := os.Stat(out)
			if code == exitOK {
				if statErr != nil {
					t.Fatal(statErr)
				}
				data, _ := os.ReadFile(out)
				if _, err := igvm.Parse(data); err != nil {
					t.Errorf("output does not parse: %v", err)
				}
				return
			}
			if statErr == nil {
				t.Error("a failed build left an output file")
			}
			if strings.Count(strings.TrimSpace(strings.SplitN(stderr, "Run '", 2)[0]), "\n") != 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

// TestIgvmBuildReproducible: repeated builds give the same bytes, and the
// acpi-clh tables as .aml files or as a pages file give the same file.
func TestIgvmBuildReproducible(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	var sums []string
	for i, acpi := range [][]string{
		{"--acpi-dir", "../../testdata/igvm/acpi/acpi-clh-aml"},
		{"--acpi-pages", "../../testdata/igvm/acpi/acpi-clh.pages"},
		{"--acpi-dir", "../../testdata/igvm/acpi/acpi-clh-aml"},
	} {
		out := filepath.Join(dir, strings.Repeat("x", i+1)+".igvm")
		args := append([]string{"igvm", "build", "--kernel", kernel, "--initrd", "../../testdata/igvm/inputs/initrd-tiny.cpio.gz",
			"--cmdline", "console=ttyS0 panic=-1", "--pvalidate-opt", "--encrypted-page", "--svme", "-o", out}, acpi...)
		code, _, stderr := runCaptured(t, args...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sums = append(sums, hex.EncodeToString(s[:]))
	}
	if sums[0] != sums[1] || sums[0] != sums[2] {
		t.Errorf("outputs differ: %v", sums)
	}
}

// TestIgvmBuildVectorD03 reproduces vector case d03 (igvmgen with acpi-clh,
// the tiny cpio, an empty command line, all three options) with the CLI and
// compares every directive and its page contents with igvmgen's file.
func TestIgvmBuildVectorD03(t *testing.T) {
	out := filepath.Join(t.TempDir(), "d03.igvm")
	args := []string{"igvm", "build", "--kernel", "../../testdata/igvm/inputs/test_bzImage", "--allow-truncated",
		"--initrd", "../../testdata/igvm/inputs/initrd-tiny.cpio.gz", "--cmdline", "",
		"--acpi-dir", "../../testdata/igvm/acpi/acpi-clh-aml", "--pvalidate-opt", "--encrypted-page", "--svme", "-o", out}
	code, _, stderr := runCaptured(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	load := func(p string) *igvm.File {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := igvm.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ours, ref := load(out), load("../../testdata/igvm/d03_clh_empty_cpio.igvm")
	type item struct {
		desc string
		data []byte
	}
	items := func(f *igvm.File) []item {
		var r []item
		for _, h := range f.Directives() {
			var desc string
			switch x := h.(type) {
			case *igvm.SNPIDBlock:
				continue
			case *igvm.PageData:
				c := *x
				c.FileOffset = 0
				desc = fmt.Sprintf("%+v", c)
			case *igvm.VPContext:
				c := *x
				c.FileOffset = 0
				desc = fmt.Sprintf("%+v", c)
			default:
				desc = fmt.Sprintf("%v %+v", h.Type(), h)
			}
			var data []byte
			if igvm.HasData(h) {
				d, err := f.Data(h)
				if err != nil {
					t.Fatal(err)
				}
				data = d
			}
			if bytes.Count(data, []byte{0}) == len(data) {
				data = nil
			}
			r = append(r, item{desc, data})
		}
		return r
	}
	a, b := items(ours), items(ref)
	if len(a) != len(b) {
		t.Fatalf("%d directives, igvmgen has %d", len(a), len(b))
	}
	for i := range a {
		if a[i].desc != b[i].desc || !bytes.Equal(a[i].data, b[i].data) {
			t.Fatalf("directive %d: %s differs from igvmgen's %s (or its contents do)", i, a[i].desc, b[i].desc)
		}
	}
}

// The Debian kernel fixture with an initrd, laid out with --layout kvm:
// the file passes QEMU's and KVM's checks with no override (measure igvm
// --profile kvm says nothing on stderr, and KVM measures the file's own
// VMSA), reference-values lists its kvm digests for 1 to 8 vCPUs, and the
// independent model (scripts/measure/kvm_model.py) computes the same
// digests for the file.
func TestIgvmBuildKVMDebian(t *testing.T) {
	k := fixtures.DebianKernel(t)
	file := filepath.Join(t.TempDir(), "debian-kvm.igvm")
	code, _, stderr := runCaptured(t, "igvm", "build", "--layout", "kvm", "--kata", "--kernel", k.Vmlinuz,
		"--initrd", "../../testdata/igvm/inputs/initrd-tiny.cpio.gz", "--cmdline", "console=ttyS0 panic=-1", "-o", file)
	if code != exitOK {
		t.Fatalf("igvm build: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCaptured(t, "measure", "igvm", file, "--profile", "kvm", "--explain")
	if code != exitOK || stderr != "" || !strings.Contains(stdout, "vCPU 0 VMSA: KVM measures the file's values") {
		t.Fatalf("measure igvm --profile kvm: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	code, stdout, stderr = runCaptured(t, "measure", "reference-values", file, "--profile", "kvm", "--cpu", "EPYC-Milan",
		"--vcpus", "1,2,3,4,5,6,7,8", "-o", "-")
	if code != exitOK || stderr != "" {
		t.Fatalf("reference-values: exit %d, stderr %q", code, stderr)
	}
	var rv measure.ReferenceValues
	if err := json.Unmarshal([]byte(stdout), &rv); err != nil {
		t.Fatal(err)
	}
	if len(rv.Entries) != 1 || len(rv.Entries[0].ByVCPUs) != 8 || rv.Entries[0].Hypothetical {
		t.Fatalf("reference values %s", stdout)
	}
	m := kvmmodel.Measure(t, file, 8, "EPYC-Milan")
	if m.Hypothetical || m.Digest == nil {
		t.Fatalf("the model refuses the file: %v", m.Violations)
	}
	want := m.VMSADigests()
	for i, e := range rv.Entries[0].ByVCPUs {
		if e.VCPUs != i+1 || e.Digest.String() != want[i] {
			t.Errorf("%d vCPUs: reference-values %s, the model %s", e.VCPUs, e.Digest, want[i])
		}
	}
}
