package inspect

import "github.com/imagebuilder/imagebuilder/pkg/bootparams"

// Region is a range of guest memory and what it holds, for people.
type Region struct {
	Start Hex    `json:"start"`
	End   Hex    `json:"end"` // exclusive
	Name  string `json:"name"`
}

// Contains says whether gpa lies in the region.
func (g Region) Contains(gpa uint64) bool { return gpa >= uint64(g.Start) && gpa < uint64(g.End) }

// Regions names the ranges of guest memory the report found, most specific
// first (a GPA in several ranges belongs to the first that holds it): each
// ACPI table by signature ("ACPI DSDT") and the RSDP, then the Linux
// boot_params ("boot_params"), "kernel command line" (with its NUL),
// "cc_blob", the "GDT" and "TSS" (the BSP's gdtr and tr), "boot stack"
// (the page below the BSP's rsp), "page tables"
// (two pages at cr3, as a direct boot builds them), "initrd" and
// "kernel" (pref_address to pref_address+init_size), then the e820 map's
// ranges other than RAM ("e820 ACPI"). Pages the directives
// type (CPUID, secrets) and VMSAs are not memory the report reads: see the
// directives for those.
func (r *Report) Regions() []Region {
	var out []Region
	add := func(start, end uint64, name string) {
		if end > start {
			out = append(out, Region{Hex(start), Hex(end), name})
		}
	}
	if a := r.ACPI; a != nil {
		add(uint64(a.RSDP), uint64(a.RSDP)+36, "ACPI RSDP")
		for _, t := range a.Tables {
			add(uint64(t.Addr), uint64(t.Addr)+uint64(t.Length), "ACPI "+t.Signature)
		}
	}
	var rsp, cr3 uint64
	paging := false
	if len(r.VMSAs) > 0 {
		regs := r.VMSAs[0].Registers
		rsp = uint64(regs["rsp"])
		const cbit = uint64(1) << 51
		cr3 = uint64(regs["cr3"]) &^ cbit &^ 0xfff
		paging = regs["efer"]&0x400 != 0 || regs["cr0"]&0x80000000 != 0
	}
	if l := r.Linux; l != nil {
		add(uint64(l.BootParams), uint64(l.BootParams)+4096, "boot_params")
		if l.CmdlineGPA != 0 {
			add(uint64(l.CmdlineGPA), uint64(l.CmdlineGPA)+uint64(max(len(l.Cmdline), int(l.CmdlineSize)))+1, "kernel command line")
		}
		if l.CCBlob != 0 {
			add(uint64(l.CCBlob), uint64(l.CCBlob)+4096, "cc_blob")
		}
	}
	if len(r.VMSAs) > 0 {
		segs := r.VMSAs[0].Segments
		if g := segs["gdtr"]; g.Base != 0 {
			add(uint64(g.Base), uint64(g.Base)+uint64(g.Limit)+1, "GDT")
		}
		if tr := segs["tr"]; tr.Base != 0 {
			add(uint64(tr.Base), uint64(tr.Base)+uint64(tr.Limit)+1, "TSS")
		}
	}
	if rsp >= 4096 {
		add(rsp-4096, rsp, "boot stack")
	}
	if paging && cr3 != 0 {
		add(cr3, cr3+2*4096, "page tables")
	}
	if l := r.Linux; l != nil {
		add(uint64(l.RamdiskGPA), uint64(l.RamdiskGPA)+uint64(l.RamdiskSize), "initrd")
		add(uint64(l.PrefAddress), uint64(l.PrefAddress)+uint64(l.InitSize), "kernel")
		// Last, what the memory map says of the rest ("e820 ACPI").
		for _, e := range l.E820 {
			if e.Type != bootparams.E820RAM {
				add(uint64(e.Addr), uint64(e.End), "e820 "+e.Name)
			}
		}
	}
	return out
}

// RegionOf returns the name of the first region holding gpa, or "".
func RegionOf(regions []Region, gpa uint64) string {
	for _, g := range regions {
		if g.Contains(gpa) {
			return g.Name
		}
	}
	return ""
}
