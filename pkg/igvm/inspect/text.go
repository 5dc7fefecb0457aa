package inspect

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteText writes the report for people: one section per topic, page
// runs folded into one line each.
func (r *Report) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("IGVM version %d, %d bytes, %d headers, file data from %v, checksum %v (valid)", r.FormatVersion, r.Size, r.HeaderCount, r.DataStart, r.Checksum)
	p("")
	p("Platforms:")
	for _, pl := range r.Platforms {
		p("  %-13s mask %v  highest VTL %d  shared GPA boundary %v", pl.Type, pl.Mask, pl.HighestVTL, pl.SharedGPABoundary)
	}
	for _, po := range r.Policies {
		p("Guest policy (mask %v): %v  ABI >= %d.%d  flags: %s", po.Mask, po.Value, po.ABIMajor, po.ABIMinor, strings.Join(po.Flags, " "))
		if po.Problem != "" {
			p("  WARNING: %s", po.Problem)
		}
	}
	for _, e := range r.Init {
		p("[%4d] %s %s", e.Index, e.Type, e.Detail)
	}
	p("")
	p("Directives:")
	iw := len(fmt.Sprint(r.HeaderCount - 1))
	iw = max(iw, 4)
	for _, e := range r.Directives {
		if e.Start != nil {
			kind := "data"
			if *e.Zero {
				kind = "zero"
			}
			fl := ""
			if e.Flags != "" {
				fl = " " + e.Flags
			}
			pages := "pages"
			if e.Pages == 1 {
				pages = "page "
			}
			p("  [%*d] %-23s %5d %s %s %s%s", iw, e.Index, fmt.Sprintf("%v-%v", *e.Start, *e.End), e.Pages, pages, e.DataType, kind, fl)
			continue
		}
		p("  [%*d] %s %s", iw, e.Index, e.Type, e.Detail)
	}
	for _, v := range r.VMSAs {
		p("")
		p("VMSA (header %d, vp %d at %v):", v.Index, v.VP, v.GPA)
		regs := []string{"rip", "rsp", "rsi", "rdi", "rax", "rbx", "rcx", "rdx", "rbp", "rflags", "cr0", "cr3", "cr4", "efer", "xcr0", "g_pat", "dr6", "dr7", "vmpl", "cpl", "mxcsr", "x87_fcw", "virtual_tom"}
		var line []string
		for i, name := range regs {
			line = append(line, fmt.Sprintf("%-11s %-18v", name, v.Registers[name]))
			if len(line) == 3 || i == len(regs)-1 {
				p("  %s", strings.TrimRight(strings.Join(line, "  "), " "))
				line = nil
			}
		}
		for _, name := range []string{"cs", "ds", "es", "ss", "fs", "gs", "gdtr", "idtr", "ldtr", "tr"} {
			s := v.Segments[name]
			p("  %-4s selector %-6v attrib %-6v limit %-10v base %v", name, s.Selector, s.Attrib, s.Limit, s.Base)
		}
		p("  sev_features %v: %s", v.Registers["sev_features"], strings.Join(v.SEVFeatures, " "))
	}
	if l := r.Linux; l != nil {
		p("")
		p("Linux boot_params at %v (found via %s):", l.BootParams, l.Found)
		p("  boot protocol %s, setup_sects %d, type_of_loader %v, loadflags %v, xloadflags %v", l.Protocol, l.SetupSects, l.TypeOfLoader, l.LoadFlags, l.XLoadFlags)
		p("  code32_start %v, pref_address %v, init_size %v, kernel_alignment %v", l.Code32Start, l.PrefAddress, l.InitSize, l.KernelAlignment)
		p("  cmdline at %v (cmdline_size %d): %q", l.CmdlineGPA, l.CmdlineSize, l.Cmdline)
		p("  ramdisk at %v, %v bytes", l.RamdiskGPA, l.RamdiskSize)
		magic := ""
		if l.CCBlobMagic != "" {
			magic = " (magic " + l.CCBlobMagic + ")"
		}
		p("  acpi_rsdp_addr %v, cc_blob_address %v%s", l.ACPIRSDP, l.CCBlob, magic)
		p("  e820 (%d entries):", len(l.E820))
		for _, e := range l.E820 {
			p("    %-12v - %-12v %-10v %s", e.Addr, e.End, e.Size, e.Name)
		}
	}
	if a := r.ACPI; a != nil {
		p("")
		ok := "ok"
		if !a.ChecksumOK {
			ok = "BAD"
		}
		p("ACPI: RSDP at %v, OEM %q, revision %d, checksum %s, RSDT %v, XSDT %v", a.RSDP, a.OEMID, a.Revision, ok, a.RSDT, a.XSDT)
		tables := append([]ACPITable(nil), a.Tables...)
		sort.SliceStable(tables, func(i, j int) bool { return tables[i].Addr < tables[j].Addr })
		for _, t := range tables {
			ok := "checksum ok"
			if t.Signature == "FACS" {
				ok = "(no checksum)"
			}
			if t.Problem != "" {
				ok = "PROBLEM: " + t.Problem
			}
			p("  %-4s at %-10v length %-7d rev %d  OEM %-8s %-10s via %-4s %s", t.Signature, t.Addr, t.Length, t.Revision, t.OEMID, t.OEMTableID, t.Via, ok)
		}
	}
	if id := r.IDBlock; id != nil {
		p("")
		p("SNP ID block (header %d, mask %v):", id.Index, id.Mask)
		p("  ld         %s", id.LD)
		p("  family_id  %s  image_id %s", id.FamilyID, id.ImageID)
		p("  version %d, guest_svn %d", id.Version, id.GuestSVN)
		sig := "not checked"
		if id.SignatureValid != nil {
			sig = "INVALID"
			if *id.SignatureValid {
				sig = "valid (ECDSA P-384 over the ID block with the GUEST_POLICY)"
			}
		}
		p("  id key: algorithm %d, curve %d, digest %s", id.IDKeyAlgorithm, id.IDKeyCurve, id.IDKeyDigest)
		p("  signature %s", sig)
		if id.Problem != "" {
			p("  problem: %s", id.Problem)
		}
		if id.AuthorKeyEnabled != 0 {
			p("  author key: algorithm %d, digest %s", id.AuthorKeyAlgorithm, id.AuthorKeyDigest)
		} else {
			p("  author key: none")
		}
	}
	for _, n := range r.Notes {
		p("")
		p("Note: %s", n)
	}
	return b.Flush()
}
