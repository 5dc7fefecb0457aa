package diff

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/inspect"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// igvmSide is one IGVM file being compared.
type igvmSide struct {
	in      *input
	f       *igvm.File
	mem     *igvm.Memory
	report  *inspect.Report
	regions []inspect.Region
}

type igvmCompare struct {
	ctx  context.Context
	a, b *igvmSide
	rep  *report
	// initrdShift is how far the end of B's initrd is from A's (0 when
	// they end at one address): addresses that moved by it follow.
	initrdShift uint64
	// explained are the regions of guest memory whose differences a
	// section names in their own terms (boot_params fields, command line,
	// ACPI tables, CPUID entries, initrd entries): their page runs are
	// derived.
	explained map[string]bool
}

// compareIGVM compares two IGVM files: the fixed header, platforms,
// policies and initialization headers, the directives other than pages,
// the VMSAs register by register, what a Linux boot left in guest memory
// (boot_params field by field, the command line, ACPI tables by signature,
// the CPUID page entry by entry, the initrd entry by entry), then the
// pages by GPA with the region each belongs to, the ID block and the
// launch digest under each profile.
func compareIGVM(ctx context.Context, a, b *input, rep *report) error {
	c := &igvmCompare{ctx: ctx, rep: rep, explained: map[string]bool{}}
	var sides [2]*igvmSide
	for i, in := range []*input{a, b} {
		f, err := igvm.Open(in.r, in.size)
		if err != nil {
			return in.fail(err)
		}
		r, err := inspect.Inspect(f)
		if err != nil {
			return in.fail(err)
		}
		sides[i] = &igvmSide{in: in, f: f, mem: f.Memory(), report: r, regions: r.Regions()}
	}
	c.a, c.b = sides[0], sides[1]
	if la, lb := c.a.report.Linux, c.b.report.Linux; la != nil && lb != nil {
		// A direct boot puts the boot stack and the cc_blob after the
		// initrd: they move with its end.
		c.initrdShift = uint64(lb.RamdiskGPA+lb.RamdiskSize) - uint64(la.RamdiskGPA+la.RamdiskSize)
	}
	for _, step := range []func() error{c.header, c.platforms, c.directives, c.vmsas, c.bootParams,
		c.cmdline, c.acpi, c.cpuid, c.initrd, c.pages, c.idBlock, c.digests} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (c *igvmCompare) add(d Difference) error { return c.rep.add(d) }

// diffValues compares two Go values as JSON documents, each difference
// going to section (derived when derived says so for its path).
func (c *igvmCompare) diffValues(section, prefix string, x, y any, derived func(path string) bool) error {
	va, err := toJSONValue(x)
	if err != nil {
		return err
	}
	vb, err := toJSONValue(y)
	if err != nil {
		return err
	}
	return diffJSON("", va, vb, func(path string, k Change, p, q string) error {
		d := Difference{Section: section, Kind: k, Path: strings.TrimPrefix(prefix+path, "."), A: p, B: q}
		if derived != nil && derived(path) {
			return c.rep.consequence(d)
		}
		return c.rep.add(d)
	})
}

func (c *igvmCompare) header() error {
	type hdr struct {
		FormatVersion uint32 `json:"format_version"`
		Size          int64  `json:"size"`
		HeaderCount   int    `json:"header_count"`
		DataStart     uint64 `json:"file_data_offset"`
		Checksum      string `json:"checksum"`
	}
	pick := func(r *inspect.Report) hdr {
		return hdr{r.FormatVersion, r.Size, r.HeaderCount, uint64(r.DataStart), hexText(uint64(r.Checksum))}
	}
	return c.diffValues(SectionHeader, "", pick(c.a.report), pick(c.b.report), func(path string) bool { return path != ".format_version" })
}

func (c *igvmCompare) platforms() error {
	type plat struct {
		Platforms []inspect.Platform `json:"platforms"`
		Policies  []inspect.Policy   `json:"guest_policies"`
		Init      []inspect.Entry    `json:"initialization"`
	}
	pick := func(r *inspect.Report) plat {
		p := plat{r.Platforms, r.Policies, append([]inspect.Entry(nil), r.Init...)}
		for i := range p.Init {
			p.Init[i].Index = 0 // header positions follow from the rest
		}
		return p
	}
	return c.diffValues(SectionPlatform, "", pick(c.a.report), pick(c.b.report), nil)
}

// directives compares the directives other than pages, VP contexts and
// the ID block (their own sections), by type and occurrence.
func (c *igvmCompare) directives() error {
	group := func(r *inspect.Report) (map[string][]string, []string) {
		m := map[string][]string{}
		var types []string
		for _, e := range r.Directives {
			switch e.Type {
			case igvm.TypePageData.String(), igvm.TypeSNPIDBlock.String():
				continue
			}
			if _, ok := m[e.Type]; !ok {
				types = append(types, e.Type)
			}
			m[e.Type] = append(m[e.Type], e.Detail)
		}
		return m, types
	}
	ma, ta := group(c.a.report)
	mb, tb := group(c.b.report)
	for _, t := range tb {
		if _, ok := ma[t]; !ok {
			ta = append(ta, t)
		}
	}
	for _, t := range ta {
		xa, xb := ma[t], mb[t]
		for i := 0; i < max(len(xa), len(xb)); i++ {
			path := fmt.Sprintf("%s[%d]", t, i)
			var err error
			switch {
			case i >= len(xa):
				err = c.add(Difference{Section: SectionDirectives, Kind: Added, Path: path, B: xb[i]})
			case i >= len(xb):
				err = c.add(Difference{Section: SectionDirectives, Kind: Removed, Path: path, A: xa[i]})
			case xa[i] != xb[i]:
				err = c.add(Difference{Section: SectionDirectives, Kind: Changed, Path: path, A: xa[i], B: xb[i]})
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// vpContexts returns a file's VP_CONTEXT headers in order.
func vpContexts(f *igvm.File) []*igvm.VPContext {
	var out []*igvm.VPContext
	for _, h := range f.Directives() {
		if v, ok := h.(*igvm.VPContext); ok {
			out = append(out, v)
		}
	}
	return out
}

// vmsas compares the VMSA of each VP context, register by register.
func (c *igvmCompare) vmsas() error {
	va, vb := vpContexts(c.a.f), vpContexts(c.b.f)
	for i := 0; i < max(len(va), len(vb)); i++ {
		switch {
		case i >= len(va):
			if err := c.add(Difference{Section: SectionVMSA, Kind: Added, Path: fmt.Sprintf("vp %d", vb[i].VPIndex), B: fmt.Sprintf("at %#x", vb[i].GPA)}); err != nil {
				return err
			}
			continue
		case i >= len(vb):
			if err := c.add(Difference{Section: SectionVMSA, Kind: Removed, Path: fmt.Sprintf("vp %d", va[i].VPIndex), A: fmt.Sprintf("at %#x", va[i].GPA)}); err != nil {
				return err
			}
			continue
		}
		pa, err := c.a.f.Data(va[i])
		if err != nil {
			return c.a.in.fail(err)
		}
		pb, err := c.b.f.Data(vb[i])
		if err != nil {
			return c.b.in.fail(err)
		}
		path := fmt.Sprintf("vp %d", va[i].VPIndex)
		err = diffFields(pa, pb, func(off int) (string, int, int) {
			f, _ := snp.VMSAField(off)
			return f.Name, f.Offset, f.Size
		}, func(name, x, y string) error {
			d := Difference{Section: SectionVMSA, Kind: Changed, Path: path, Field: name, A: x, B: y}
			switch name {
			case "sev_features":
				d.Detail = bitChange(parseHex(x), parseHex(y), snp.SEVFeatureNames)
			case "efer":
				d.Detail = bitChange(parseHex(x), parseHex(y), eferBits)
			}
			if c.moved(x, y) {
				if name == "rsp" {
					c.explained["boot stack"] = true
				}
				d.Detail = joinDetail(d.Detail, c.movedText())
				return c.rep.consequence(d)
			}
			return c.add(d)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func parseHex(s string) uint64 {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	return v
}

// moved says two field values (hex) are one address moved with the end of
// the initrd.
func (c *igvmCompare) moved(x, y string) bool {
	if c.initrdShift == 0 || !strings.HasPrefix(x, "0x") || !strings.HasPrefix(y, "0x") {
		return false
	}
	return parseHex(y)-parseHex(x) == c.initrdShift
}

func (c *igvmCompare) movedText() string {
	if int64(c.initrdShift) < 0 {
		return fmt.Sprintf("moved with the end of the initrd (-%#x)", -c.initrdShift)
	}
	return fmt.Sprintf("moved with the end of the initrd (+%#x)", c.initrdShift)
}

// bitChange names the bits B sets and clears against A.
func bitChange(a, b uint64, names func(uint64) []string) string {
	var parts []string
	if set := names(b &^ a); len(set) > 0 {
		parts = append(parts, "B sets "+strings.Join(set, ", "))
	}
	if cleared := names(a &^ b); len(cleared) > 0 {
		parts = append(parts, "B clears "+strings.Join(cleared, ", "))
	}
	return strings.Join(parts, "; ")
}

// eferBits names the bits of EFER (AMD APM vol. 2, "Extended Feature
// Enable Register").
func eferBits(v uint64) []string {
	names := map[int]string{0: "SCE", 8: "LME", 10: "LMA", 11: "NXE", 12: "SVME", 13: "LMSLE", 14: "FFXSR", 15: "TCE"}
	var out []string
	for b := 0; b < 64; b++ {
		if v&(1<<b) == 0 {
			continue
		}
		if n, ok := names[b]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("BIT%d", b))
		}
	}
	return out
}

// bootParamsConsequence are the zero page fields that follow from the
// command line and the initrd (their place and size).
var bootParamsConsequence = map[string]bool{
	"hdr.cmd_line_ptr": true, "hdr.cmdline_size": true, "ext_cmd_line_ptr": true,
	"hdr.ramdisk_image": true, "hdr.ramdisk_size": true, "ext_ramdisk_image": true, "ext_ramdisk_size": true,
}

// bootParams compares the Linux zero pages field by field.
func (c *igvmCompare) bootParams() error {
	la, lb := c.a.report.Linux, c.b.report.Linux
	switch {
	case la == nil && lb == nil:
		return nil
	case la == nil:
		return c.add(Difference{Section: SectionBootParams, Kind: Added, Path: "boot_params", B: fmt.Sprintf("at %#x", uint64(lb.BootParams))})
	case lb == nil:
		return c.add(Difference{Section: SectionBootParams, Kind: Removed, Path: "boot_params", A: fmt.Sprintf("at %#x", uint64(la.BootParams))})
	}
	pa, pb := make([]byte, bootparams.Size), make([]byte, bootparams.Size)
	if _, err := c.a.mem.ReadAt(pa, int64(la.BootParams)); err != nil {
		return c.a.in.fail(err)
	}
	if _, err := c.b.mem.ReadAt(pb, int64(lb.BootParams)); err != nil {
		return c.b.in.fail(err)
	}
	n := len(c.rep.diffs)
	if la.BootParams != lb.BootParams {
		if err := c.add(Difference{Section: SectionBootParams, Kind: Changed, Path: "address",
			A: hexText(uint64(la.BootParams)), B: hexText(uint64(lb.BootParams)), Detail: "VMSA rsi"}); err != nil {
			return err
		}
	}
	err := diffFields(pa, pb, func(off int) (string, int, int) {
		return fieldOf(bootparams.FieldName, off, bootparams.Size)
	}, func(name, x, y string) error {
		d := Difference{Section: SectionBootParams, Kind: Changed, Path: name, A: x, B: y}
		switch {
		case bootParamsConsequence[name]:
			return c.rep.consequence(d)
		case c.moved(x, y):
			if name == "cc_blob_address" {
				c.explained["cc_blob"] = true
			}
			d.Detail = c.movedText()
			return c.rep.consequence(d)
		case strings.HasPrefix(name, "e820_table[") || name == "e820_entries":
			// The builder derives the memory map from the layout (the
			// ACPI pages, the initrd's end).
			d.Detail = "the memory map follows the layout"
			return c.rep.consequence(d)
		}
		return c.add(d)
	})
	if len(c.rep.diffs) > n {
		c.explained["boot_params"] = true
	}
	return err
}

func (c *igvmCompare) cmdline() error {
	la, lb := c.a.report.Linux, c.b.report.Linux
	if la == nil || lb == nil || la.Cmdline == lb.Cmdline {
		return nil
	}
	c.explained["kernel command line"] = true
	return c.add(Difference{Section: SectionCmdline, Kind: Changed, Path: "kernel command line",
		A: strconv.Quote(la.Cmdline), B: strconv.Quote(lb.Cmdline), Detail: cmdlineChange(la.Cmdline, lb.Cmdline)})
}

// cmdlineChange names the parameters only one command line has.
func cmdlineChange(a, b string) string {
	fa, fb := strings.Fields(a), strings.Fields(b)
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, p := range fa {
		inA[p] = true
	}
	for _, p := range fb {
		inB[p] = true
	}
	var parts []string
	for _, p := range fa {
		if !inB[p] {
			parts = append(parts, "-"+p)
		}
	}
	for _, p := range fb {
		if !inA[p] {
			parts = append(parts, "+"+p)
		}
	}
	switch {
	case len(parts) == 0:
		return "the same parameters in another order"
	case len(parts) > 8:
		return ""
	}
	return strings.Join(parts, " ")
}

// acpi compares the ACPI tables by signature: their header fields and
// contents.
func (c *igvmCompare) acpi() error {
	aa, ab := c.a.report.ACPI, c.b.report.ACPI
	switch {
	case aa == nil && ab == nil:
		return nil
	case aa == nil:
		return c.add(Difference{Section: SectionACPI, Kind: Added, Path: "RSDP", B: fmt.Sprintf("at %#x", uint64(ab.RSDP))})
	case ab == nil:
		return c.add(Difference{Section: SectionACPI, Kind: Removed, Path: "RSDP", A: fmt.Sprintf("at %#x", uint64(aa.RSDP))})
	}
	type rsdp struct {
		RSDP       inspect.Hex `json:"address"`
		OEMID      string      `json:"oem_id"`
		Revision   uint8       `json:"revision"`
		ChecksumOK bool        `json:"checksum_ok"`
		RSDT       inspect.Hex `json:"rsdt"`
		XSDT       inspect.Hex `json:"xsdt"`
	}
	n := len(c.rep.diffs)
	err := c.diffValues(SectionACPI, "RSDP", rsdp{aa.RSDP, aa.OEMID, aa.Revision, aa.ChecksumOK, aa.RSDT, aa.XSDT},
		rsdp{ab.RSDP, ab.OEMID, ab.Revision, ab.ChecksumOK, ab.RSDT, ab.XSDT}, nil)
	if err != nil {
		return err
	}
	if len(c.rep.diffs) > n {
		c.explained["ACPI RSDP"] = true
	}
	// Tables by signature; a signature met again is SIG#2, SIG#3...
	key := func(ts []inspect.ACPITable) (map[string]inspect.ACPITable, []string) {
		m := map[string]inspect.ACPITable{}
		var keys []string
		count := map[string]int{}
		for _, t := range ts {
			count[t.Signature]++
			k := t.Signature
			if count[k] > 1 {
				k = fmt.Sprintf("%s#%d", k, count[k])
			}
			m[k] = t
			keys = append(keys, k)
		}
		return m, keys
	}
	ma, ka := key(aa.Tables)
	mb, kb := key(ab.Tables)
	for _, k := range kb {
		if _, ok := ma[k]; !ok {
			ka = append(ka, k)
		}
	}
	for _, k := range ka {
		ta, okA := ma[k]
		tb, okB := mb[k]
		region := "ACPI " + strings.SplitN(k, "#", 2)[0]
		switch {
		case !okA:
			c.explained[region] = true
			err = c.add(Difference{Section: SectionACPI, Kind: Added, Path: k, B: tableText(tb)})
		case !okB:
			c.explained[region] = true
			err = c.add(Difference{Section: SectionACPI, Kind: Removed, Path: k, A: tableText(ta)})
		default:
			err = c.compareTable(k, region, ta, tb)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func tableText(t inspect.ACPITable) string {
	return fmt.Sprintf("%d bytes at %#x, OEM %q %q, revision %d", t.Length, uint64(t.Addr), t.OEMID, t.OEMTableID, t.Revision)
}

// compareTable compares one ACPI table of both files: header fields and
// contents (its first differing byte).
func (c *igvmCompare) compareTable(k, region string, ta, tb inspect.ACPITable) error {
	n := len(c.rep.diffs)
	type hdr struct {
		Length     uint32      `json:"length"`
		Revision   uint8       `json:"revision"`
		OEMID      string      `json:"oem_id"`
		OEMTableID string      `json:"oem_table_id"`
		ChecksumOK bool        `json:"checksum_ok"`
		Address    inspect.Hex `json:"address"`
	}
	err := c.diffValues(SectionACPI, k, hdr{ta.Length, ta.Revision, ta.OEMID, ta.OEMTableID, ta.ChecksumOK, ta.Addr},
		hdr{tb.Length, tb.Revision, tb.OEMID, tb.OEMTableID, tb.ChecksumOK, tb.Addr},
		func(path string) bool { return path == ".address" })
	if err != nil {
		return err
	}
	if ta.Problem == "" && tb.Problem == "" {
		ra := io.NewSectionReader(c.a.mem, int64(ta.Addr), int64(ta.Length))
		rb := io.NewSectionReader(c.b.mem, int64(tb.Addr), int64(tb.Length))
		d, errA, errB := compareStreams(c.ctx, ra, rb, newBuffers())
		if errA != nil {
			return c.a.in.fail(errA)
		}
		if errB != nil {
			return c.b.in.fail(errB)
		}
		if d.Offset >= 0 {
			d.Line = 0
			detail := d.describe(int64(ta.Length), int64(tb.Length))
			if d.Offset == acpiChecksumOffset {
				// The checksum follows from the rest: name the byte
				// that made it change.
				next, errA, errB := compareStreams(c.ctx, io.NewSectionReader(ra, acpiChecksumOffset+1, 1<<62),
					io.NewSectionReader(rb, acpiChecksumOffset+1, 1<<62), newBuffers())
				if errA != nil {
					return c.a.in.fail(errA)
				}
				if errB != nil {
					return c.b.in.fail(errB)
				}
				if next.Offset >= 0 {
					next.Offset += acpiChecksumOffset + 1
					next.Line = 0
					detail = next.describe(int64(ta.Length), int64(tb.Length))
					if next.Offset < 36 {
						detail += " (" + acpiHeaderField(int(next.Offset)) + ")"
					}
					detail += ", and the checksum"
				}
			} else if d.Offset < 36 {
				detail += " (" + acpiHeaderField(int(d.Offset)) + ")"
			}
			if err := c.add(Difference{Section: SectionACPI, Kind: Changed, Path: k, Field: "content",
				A: sizeText(int64(ta.Length)), B: sizeText(int64(tb.Length)), Detail: detail}); err != nil {
				return err
			}
		}
	}
	if len(c.rep.diffs) > n {
		c.explained[region] = true
	}
	return nil
}

// acpiChecksumOffset is where an ACPI table's checksum byte is.
const acpiChecksumOffset = 9

// acpiHeaderField names a byte of the 36-byte ACPI table header.
func acpiHeaderField(off int) string {
	switch {
	case off < 4:
		return "signature"
	case off < 8:
		return "length"
	case off < 9:
		return "revision"
	case off < 10:
		return "checksum"
	case off < 16:
		return "oem_id"
	case off < 24:
		return "oem_table_id"
	case off < 28:
		return "oem_revision"
	case off < 32:
		return "creator_id"
	}
	return "creator_revision"
}

// cpuidPage returns a file's first CPUID page header.
func cpuidPage(f *igvm.File) *igvm.PageData {
	for _, h := range f.Directives() {
		if p, ok := h.(*igvm.PageData); ok && (p.DataType == igvm.DataCPUID || p.DataType == igvm.DataCPUIDXF) {
			return p
		}
	}
	return nil
}

// cpuid compares the CPUID pages entry by entry.
func (c *igvmCompare) cpuid() error {
	pa, pb := cpuidPage(c.a.f), cpuidPage(c.b.f)
	if pa == nil || pb == nil {
		return nil // the page runs show a CPUID page on one side only
	}
	da, err := c.a.f.Data(pa)
	if err != nil {
		return c.a.in.fail(err)
	}
	db, err := c.b.f.Data(pb)
	if err != nil {
		return c.b.in.fail(err)
	}
	da, db = da[:snp.PageSize], db[:snp.PageSize]
	n := len(c.rep.diffs)
	err = diffFields(da, db, func(off int) (string, int, int) {
		f, _ := snp.CPUIDPageField(off)
		return f.Name, f.Offset, f.Size
	}, func(name, x, y string) error {
		d := Difference{Section: SectionCPUID, Kind: Changed, Path: name, A: x, B: y}
		var e int
		if _, err := fmt.Sscanf(name, "entries[%d]", &e); err == nil {
			base := snp.CPUIDPageHeaderSize + e*snp.CPUIDEntrySize
			d.Detail = fmt.Sprintf("A: leaf %#x subleaf %#x; B: leaf %#x subleaf %#x",
				binary.LittleEndian.Uint32(da[base:]), binary.LittleEndian.Uint32(da[base+4:]),
				binary.LittleEndian.Uint32(db[base:]), binary.LittleEndian.Uint32(db[base+4:]))
		}
		return c.add(d)
	})
	if len(c.rep.diffs) > n {
		c.explained["CPUID page"] = true
	}
	return err
}

// initrd compares the initrds the boot_params point to, entry by entry.
// An initrd that is not one (any blob can be loaded there) is left to the
// page runs.
func (c *igvmCompare) initrd() error {
	la, lb := c.a.report.Linux, c.b.report.Linux
	if la == nil || lb == nil || la.RamdiskSize == 0 || lb.RamdiskSize == 0 {
		return nil
	}
	ia := &input{name: c.a.in.name + " initrd", kind: KindInitrd}
	ib := &input{name: c.b.in.name + " initrd", kind: KindInitrd}
	ra := io.NewSectionReader(c.a.mem, int64(la.RamdiskGPA), int64(la.RamdiskSize))
	rb := io.NewSectionReader(c.b.mem, int64(lb.RamdiskGPA), int64(lb.RamdiskSize))
	sub := &report{}
	err := compareInitrds(c.ctx, ra, rb, ia, ib, sub, SectionInitrd)
	var ie *InputError
	switch {
	case errors.As(err, &ie):
		return nil
	case err != nil:
		return err
	}
	for _, d := range sub.diffs {
		if err := c.rep.add(d); err != nil {
			return err
		}
	}
	if len(sub.diffs) > 0 {
		c.explained["initrd"] = true
	}
	return nil
}

// pageState is how one 4 KiB page compares.
type pageState struct {
	what   string // "" equal, "added", "removed", "content", "data type", "flags", "compatibility mask"
	a, b   string // values for data type, flags, mask
	region inspect.Region
}

// pageRun is a run of consecutive pages in one state and region.
type pageRun struct {
	state      pageState
	start, end uint64
	first      uint64 // GPA of the first differing byte (content)
}

// pages compares the pages both files load, by GPA, in runs of one state
// and region.
func (c *igvmCompare) pages() error {
	spans := mergeSpans(append(pageSpans(c.a.f), pageSpans(c.b.f)...))
	bufA, bufB := make([]byte, igvm.PageSize4K), make([]byte, igvm.PageSize4K)
	var run *pageRun
	flush := func() error {
		if run == nil {
			return nil
		}
		r := run
		run = nil
		return c.emitRun(r)
	}
	count := 0
	for _, s := range spans {
		for g := s[0]; g < s[1]; g += igvm.PageSize4K {
			if count++; count%4096 == 0 {
				if err := c.ctx.Err(); err != nil {
					return err
				}
			}
			st, first, err := c.comparePage(g, bufA, bufB)
			if err != nil {
				return err
			}
			if run != nil && (st.what != run.state.what || st.a != run.state.a || st.b != run.state.b ||
				st.region.Name != run.state.region.Name || g != run.end) {
				if err := flush(); err != nil {
					return err
				}
			}
			if st.what == "" {
				continue
			}
			if run == nil {
				run = &pageRun{state: st, start: g, first: first}
			}
			run.end = g + igvm.PageSize4K
		}
	}
	return flush()
}

// pageSpans are the GPA ranges a file's PAGE_DATA headers load.
func pageSpans(f *igvm.File) [][2]uint64 {
	var out [][2]uint64
	for _, h := range f.Directives() {
		if p, ok := h.(*igvm.PageData); ok {
			out = append(out, [2]uint64{p.GPA, p.GPA + p.PageSize()})
		}
	}
	return out
}

// mergeSpans sorts ranges and merges those that overlap or touch.
func mergeSpans(s [][2]uint64) [][2]uint64 {
	sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] })
	var out [][2]uint64
	for _, x := range s {
		if n := len(out); n > 0 && x[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

// regionAt names the region of guest memory [g, end) belongs to: the
// special page types, else the first of A's regions (B's for a page only
// B loads) that overlaps it.
func (c *igvmCompare) regionAt(g, end uint64, ha, hb *igvm.PageData) inspect.Region {
	h, side := ha, c.a
	if h == nil {
		h, side = hb, c.b
	}
	switch h.DataType {
	case igvm.DataCPUID, igvm.DataCPUIDXF:
		return inspect.Region{Start: inspect.Hex(h.GPA), End: inspect.Hex(h.GPA + h.PageSize()), Name: "CPUID page"}
	case igvm.DataSecrets:
		return inspect.Region{Start: inspect.Hex(h.GPA), End: inspect.Hex(h.GPA + h.PageSize()), Name: "secrets page"}
	}
	overlaps := func(r inspect.Region) bool { return uint64(r.Start) < end && g < uint64(r.End) }
	for _, r := range side.regions {
		if overlaps(r) {
			return r
		}
	}
	if ha != nil && hb != nil {
		for _, r := range c.b.regions {
			if overlaps(r) {
				return r
			}
		}
	}
	return inspect.Region{}
}

func pageFlags(fl uint32) string {
	if s := igvm.PageFlagNames(fl); s != "" {
		return s
	}
	return "none"
}

// comparePage compares the 4 KiB page at g; for a content difference it
// also returns the GPA of the first differing byte.
func (c *igvmCompare) comparePage(g uint64, bufA, bufB []byte) (pageState, uint64, error) {
	ha, okA := c.a.mem.Page(g)
	hb, okB := c.b.mem.Page(g)
	if !okA {
		ha = nil
	}
	if !okB {
		hb = nil
	}
	if ha == nil && hb == nil {
		return pageState{}, 0, nil
	}
	st := pageState{region: c.regionAt(g, g+igvm.PageSize4K, ha, hb)}
	switch {
	case ha == nil:
		st.what = "added"
		return st, 0, nil
	case hb == nil:
		st.what = "removed"
		return st, 0, nil
	case ha.DataType != hb.DataType:
		st.what, st.a, st.b = "data type", ha.DataType.String(), hb.DataType.String()
		return st, 0, nil
	case ha.Flags != hb.Flags:
		st.what, st.a, st.b = "flags", pageFlags(ha.Flags), pageFlags(hb.Flags)
		return st, 0, nil
	case ha.CompatibilityMask != hb.CompatibilityMask:
		st.what, st.a, st.b = "compatibility mask", hexText(uint64(ha.CompatibilityMask)), hexText(uint64(hb.CompatibilityMask))
		return st, 0, nil
	case ha.FileOffset == 0 && hb.FileOffset == 0:
		return pageState{}, 0, nil
	}
	if _, err := c.a.mem.ReadAt(bufA, int64(g)); err != nil {
		return st, 0, c.a.in.fail(err)
	}
	if _, err := c.b.mem.ReadAt(bufB, int64(g)); err != nil {
		return st, 0, c.b.in.fail(err)
	}
	if i := mismatch(bufA, bufB); i >= 0 {
		st.what = "content"
		// The region of the first differing byte: a page can hold
		// several (the GDT, the TSS and boot_params).
		first := g + uint64(i)
		st.region = c.regionAt(first, first+1, ha, hb)
		return st, first, nil
	}
	return pageState{}, 0, nil
}

func (c *igvmCompare) emitRun(r *pageRun) error {
	name := r.state.region.Name
	pages := (r.end - r.start) / igvm.PageSize4K
	detail := fmt.Sprintf("%d pages", pages)
	if pages == 1 {
		detail = "1 page"
	}
	if name != "" {
		detail += ", " + name
	}
	if r.state.what == "content" {
		detail += fmt.Sprintf(", first difference at %#x", r.first)
		if name != "" {
			detail += fmt.Sprintf(" (%s + %#x)", name, r.first-uint64(r.state.region.Start))
		}
	}
	d := Difference{Section: SectionPages, Kind: Changed, Path: fmt.Sprintf("%#x-%#x", r.start, r.end),
		Field: r.state.what, A: r.state.a, B: r.state.b, Detail: detail}
	switch r.state.what {
	case "added":
		d.Kind, d.Field = Added, ""
	case "removed":
		d.Kind, d.Field = Removed, ""
	}
	if c.explained[name] {
		return c.rep.consequence(d)
	}
	return c.add(d)
}

func (c *igvmCompare) idBlock() error {
	ia, ib := c.a.report.IDBlock, c.b.report.IDBlock
	switch {
	case ia == nil && ib == nil:
		return nil
	case ia == nil:
		return c.add(Difference{Section: SectionIDBlock, Kind: Added, Path: "SNP_ID_BLOCK", B: "ld " + ib.LD})
	case ib == nil:
		return c.add(Difference{Section: SectionIDBlock, Kind: Removed, Path: "SNP_ID_BLOCK", A: "ld " + ia.LD})
	}
	x, y := *ia, *ib
	x.Index, y.Index = 0, 0
	// The launch digest the block expects follows from the rest.
	return c.diffValues(SectionIDBlock, "", x, y, func(path string) bool { return path == ".ld" })
}

// profiles are the launch digests compared.
var profiles = []measure.Profile{measure.ProfileMSHV, measure.ProfileKVM}

// digests compares the launch digest under each profile (one vCPU for
// kvm). They follow from the differences above.
func (c *igvmCompare) digests() error {
	for _, p := range profiles {
		var vals [2]string
		for i, s := range []*igvmSide{c.a, c.b} {
			res, err := measure.MeasureIGVM(c.ctx, s.f, measure.Options{Profile: p})
			if err != nil {
				if c.ctx.Err() != nil {
					return c.ctx.Err()
				}
				vals[i] = "not measured: " + oneLine(err.Error())
				continue
			}
			vals[i] = res.Digest.String()
		}
		if vals[0] != vals[1] {
			if err := c.rep.consequence(Difference{Section: SectionLaunchDigest, Kind: Changed, Path: string(p), A: vals[0], B: vals[1]}); err != nil {
				return err
			}
		}
	}
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
