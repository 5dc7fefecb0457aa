package inspect

import (
	"os"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// The regions of an igvmgen vector case: its ACPI tables, Linux boot
// structures and kernel, at the addresses the vector's index records.
func TestRegions(t *testing.T) {
	b, err := os.ReadFile("../../../testdata/igvm/d02_default_acpi_short.igvm")
	if err != nil {
		t.Fatal(err)
	}
	f, err := igvm.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	regions := r.Regions()
	for _, g := range regions {
		t.Logf("%#x-%#x %s", uint64(g.Start), uint64(g.End), g.Name)
	}
	l := r.Linux
	for _, c := range []struct {
		gpa  uint64
		want string
	}{
		{0xE0000, "ACPI RSDP"},
		{uint64(r.ACPI.XSDT), "ACPI XSDT"},
		{uint64(l.BootParams) + 0x228, "boot_params"},
		{uint64(l.CmdlineGPA), "kernel command line"},
		{uint64(l.PrefAddress) + 0x1000, "kernel"},
		{0x10, ""},
		{0x1ff000, "e820 ACPI"}, // the default ACPI pages past the tables
	} {
		if got := RegionOf(regions, c.gpa); got != c.want {
			t.Errorf("RegionOf(%#x) = %q, want %q", c.gpa, got, c.want)
		}
	}
	for _, tb := range r.ACPI.Tables {
		if got := RegionOf(regions, uint64(tb.Addr)); got != "ACPI "+tb.Signature {
			t.Errorf("table %s at %#x: region %q", tb.Signature, uint64(tb.Addr), got)
		}
	}
}
