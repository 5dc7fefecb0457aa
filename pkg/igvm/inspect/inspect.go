// Package inspect describes an IGVM file for people and programs: its
// headers with page ranges folded, the SEV-SNP guest policy and VMSA
// decoded, and what a Linux direct boot left in the measured pages (the
// boot_params found through the VMSA's rsi, the command line, the e820 map,
// the ACPI tables from the RSDP) plus the SNP ID block. It reads the file
// through pkg/igvm, so only the pages it looks at are read.
package inspect

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// Hex is a number shown in hexadecimal (also in JSON, as a "0x..."
// string): pkg/hexnum's type.
type Hex = hexnum.Uint64

// Report is the description of one IGVM file.
type Report struct {
	Size          int64      `json:"size"`
	FormatVersion uint32     `json:"format_version"`
	Checksum      Hex        `json:"checksum"`
	HeaderCount   int        `json:"header_count"`
	DataStart     Hex        `json:"file_data_offset"`
	Platforms     []Platform `json:"platforms"`
	Policies      []Policy   `json:"guest_policies"`
	Init          []Entry    `json:"initialization,omitempty"`
	Directives    []Entry    `json:"directives"`
	VMSAs         []VMSA     `json:"vmsas"`
	Linux         *Linux     `json:"linux,omitempty"`
	ACPI          *ACPI      `json:"acpi,omitempty"`
	IDBlock       *IDBlock   `json:"id_block,omitempty"`
	Notes         []string   `json:"notes,omitempty"`
}

// Platform is a SUPPORTED_PLATFORM header.
type Platform struct {
	Type              string `json:"type"`
	Mask              Hex    `json:"compatibility_mask"`
	HighestVTL        uint8  `json:"highest_vtl"`
	Version           uint16 `json:"platform_version"`
	SharedGPABoundary Hex    `json:"shared_gpa_boundary"`
}

// Policy is a GUEST_POLICY header, decoded for SEV-SNP.
type Policy struct {
	Mask     Hex      `json:"compatibility_mask"`
	Value    Hex      `json:"policy"`
	ABIMajor uint8    `json:"abi_major"`
	ABIMinor uint8    `json:"abi_minor"`
	Flags    []string `json:"flags"`
	Problem  string   `json:"problem,omitempty"`
}

// Entry is one directive, or a run of PAGE_DATA directives folded
// together: consecutive headers loading contiguous pages of the same data
// type, flags and mask, all with data or all zero.
type Entry struct {
	Index int    `json:"index"` // index of the (first) header
	Count int    `json:"headers"`
	Type  string `json:"type"`
	// For folded PAGE_DATA runs.
	Start    *Hex   `json:"gpa_start,omitempty"`
	End      *Hex   `json:"gpa_end,omitempty"` // exclusive
	Pages    int    `json:"pages,omitempty"`
	DataType string `json:"data_type,omitempty"`
	Flags    string `json:"flags,omitempty"`
	Mask     *Hex   `json:"compatibility_mask,omitempty"`
	Zero     *bool  `json:"zero,omitempty"`
	// Other headers: a one-line description.
	Detail string `json:"detail,omitempty"`
}

// Segment is a decoded VMSA segment register.
type Segment struct {
	Selector Hex `json:"selector"`
	Attrib   Hex `json:"attrib"`
	Limit    Hex `json:"limit"`
	Base     Hex `json:"base"`
}

// VMSA is a VP_CONTEXT's SEV-SNP save area, decoded.
type VMSA struct {
	Index       int                `json:"header_index"`
	VP          uint16             `json:"vp_index"`
	GPA         Hex                `json:"gpa"`
	Registers   map[string]Hex     `json:"registers"`
	Segments    map[string]Segment `json:"segments"`
	SEVFeatures []string           `json:"sev_features"`
}

// E820 is one e820 entry of boot_params.
type E820 struct {
	Addr Hex    `json:"addr"`
	Size Hex    `json:"size"`
	End  Hex    `json:"end"`
	Type uint32 `json:"type"`
	Name string `json:"type_name"`
}

// Linux is what a Linux direct boot left in measured memory.
type Linux struct {
	BootParams      Hex    `json:"boot_params_gpa"`
	Found           string `json:"found_via"`
	Protocol        string `json:"boot_protocol"`
	SetupSects      uint8  `json:"setup_sects"`
	TypeOfLoader    Hex    `json:"type_of_loader"`
	LoadFlags       Hex    `json:"loadflags"`
	Code32Start     Hex    `json:"code32_start"`
	PrefAddress     Hex    `json:"pref_address"`
	InitSize        Hex    `json:"init_size"`
	KernelAlignment Hex    `json:"kernel_alignment"`
	XLoadFlags      Hex    `json:"xloadflags"`
	CmdlineSize     uint32 `json:"cmdline_size"`
	CmdlineGPA      Hex    `json:"cmdline_gpa"`
	Cmdline         string `json:"cmdline"`
	RamdiskGPA      Hex    `json:"ramdisk_gpa"`
	RamdiskSize     Hex    `json:"ramdisk_size"`
	ACPIRSDP        Hex    `json:"acpi_rsdp_addr"`
	CCBlob          Hex    `json:"cc_blob_address"`
	CCBlobMagic     string `json:"cc_blob_magic,omitempty"`
	E820            []E820 `json:"e820"`
}

// ACPITable is one table reached from the RSDP.
type ACPITable struct {
	Signature  string `json:"signature"`
	Addr       Hex    `json:"addr"`
	Length     uint32 `json:"length"`
	Revision   uint8  `json:"revision"`
	OEMID      string `json:"oem_id"`
	OEMTableID string `json:"oem_table_id"`
	ChecksumOK bool   `json:"checksum_ok"`
	Via        string `json:"via"`
	Problem    string `json:"problem,omitempty"`
}

// ACPI is the table tree found from the RSDP.
type ACPI struct {
	RSDP       Hex         `json:"rsdp"`
	OEMID      string      `json:"oem_id"`
	Revision   uint8       `json:"revision"`
	ChecksumOK bool        `json:"checksum_ok"`
	RSDT       Hex         `json:"rsdt"`
	XSDT       Hex         `json:"xsdt"`
	Tables     []ACPITable `json:"tables"`
}

// IDBlock is the SNP_ID_BLOCK header.
type IDBlock struct {
	Index              int    `json:"header_index"`
	Mask               Hex    `json:"compatibility_mask"`
	LD                 string `json:"ld"`
	FamilyID           string `json:"family_id"`
	ImageID            string `json:"image_id"`
	Version            uint32 `json:"version"`
	GuestSVN           uint32 `json:"guest_svn"`
	IDKeyAlgorithm     uint32 `json:"id_key_algorithm"`
	IDKeyCurve         uint32 `json:"id_key_curve"`
	IDKeyDigest        string `json:"id_key_digest"`
	SignatureValid     *bool  `json:"signature_valid,omitempty"`
	Problem            string `json:"problem,omitempty"`
	AuthorKeyEnabled   uint8  `json:"author_key_enabled"`
	AuthorKeyAlgorithm uint32 `json:"author_key_algorithm"`
	AuthorKeyDigest    string `json:"author_key_digest,omitempty"`
}

// maxVMSAs bounds the VP contexts decoded (a hostile file can hold millions).
const maxVMSAs = 64

// Inspect builds the report of a file. Problems found in the guest payload
// (a missing page, a bad ACPI checksum) are recorded in the report, not
// returned as errors: the file itself is valid once igvm.Open accepted it.
func Inspect(f *igvm.File) (*Report, error) {
	r := &Report{
		Size:          f.Size(),
		FormatVersion: f.Fixed.FormatVersion,
		Checksum:      Hex(f.Fixed.Checksum),
		HeaderCount:   len(f.Headers),
		DataStart:     Hex(f.Fixed.VariableHeaderOffset + f.Fixed.VariableHeaderSize),
	}
	for _, h := range f.Platforms() {
		if p, ok := h.(*igvm.SupportedPlatform); ok {
			r.Platforms = append(r.Platforms, Platform{igvm.PlatformName(p.PlatformType), Hex(p.CompatibilityMask), p.HighestVTL, p.PlatformVersion, Hex(p.SharedGPABoundary)})
		}
	}
	snpMask := uint32(0)
	for _, h := range f.Platforms() {
		if p, ok := h.(*igvm.SupportedPlatform); ok && p.PlatformType == igvm.PlatformSEVSNP {
			snpMask = p.CompatibilityMask
		}
	}
	var snpPolicy *snp.GuestPolicy
	for i, h := range f.Initialization() {
		switch x := h.(type) {
		case *igvm.GuestPolicy:
			gp := snp.GuestPolicy(x.Policy)
			p := Policy{Mask: Hex(x.CompatibilityMask), Value: Hex(x.Policy), ABIMajor: gp.ABIMajor(), ABIMinor: gp.ABIMinor(), Flags: gp.Flags()}
			if p.Flags == nil {
				p.Flags = []string{}
			}
			if x.CompatibilityMask&snpMask != 0 {
				if err := gp.Validate(); err != nil {
					p.Problem = err.Error()
				}
				snpPolicy = &gp
			}
			r.Policies = append(r.Policies, p)
		default:
			r.Init = append(r.Init, Entry{Index: len(f.Platforms()) + i, Count: 1, Type: h.Type().String(), Detail: describe(h)})
		}
	}
	r.Directives = fold(f)

	mem := f.Memory()
	moreVMSAs, moreIDBlocks := 0, 0
	for i, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.VPContext:
			if x.CompatibilityMask != snpMask {
				continue
			}
			if len(r.VMSAs) >= maxVMSAs {
				moreVMSAs++
				continue
			}
			page, err := f.Data(x)
			if err != nil {
				return nil, err
			}
			v, err := snp.UnmarshalVMSA(page)
			if err != nil {
				return nil, err
			}
			r.VMSAs = append(r.VMSAs, decodeVMSA(f.DirectiveIndex(i), x, v))
		case *igvm.SNPIDBlock:
			if r.IDBlock != nil {
				moreIDBlocks++
				continue
			}
			r.IDBlock = decodeIDBlock(f.DirectiveIndex(i), x, snpPolicy)
		}
	}
	if moreVMSAs > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d more SEV-SNP VP contexts not decoded", moreVMSAs))
	}
	if moreIDBlocks > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d more SNP_ID_BLOCK headers after the first (cloud-hypervisor accepts one)", moreIDBlocks))
	}
	if len(r.VMSAs) > 0 {
		rsi := uint64(r.VMSAs[0].Registers["rsi"])
		if l, err := decodeLinux(mem, rsi); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("no Linux boot_params at VMSA rsi %#x: %v", rsi, err))
		} else {
			r.Linux = l
		}
	}
	rsdp := uint64(0xE0000)
	if r.Linux != nil && r.Linux.ACPIRSDP != 0 {
		rsdp = uint64(r.Linux.ACPIRSDP)
	}
	if a, err := decodeACPI(mem, rsdp); err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("no ACPI tables: %v", err))
	} else {
		r.ACPI = a
	}
	return r, nil
}

// fold groups the directives.
func fold(f *igvm.File) []Entry {
	var out []Entry
	var run *Entry
	var last *igvm.PageData
	for i, h := range f.Directives() {
		idx := f.DirectiveIndex(i)
		p, ok := h.(*igvm.PageData)
		if ok && run != nil && last != nil &&
			p.GPA == last.GPA+last.PageSize() && p.DataType == last.DataType && p.Flags == last.Flags &&
			p.CompatibilityMask == last.CompatibilityMask && (p.FileOffset == 0) == (last.FileOffset == 0) {
			run.Count++
			run.Pages += int(p.PageSize() / igvm.PageSize4K)
			end := Hex(p.GPA + p.PageSize())
			run.End = &end
			last = p
			continue
		}
		if run != nil {
			out = append(out, *run)
			run, last = nil, nil
		}
		if ok {
			start, end, mask, zero := Hex(p.GPA), Hex(p.GPA+p.PageSize()), Hex(p.CompatibilityMask), p.FileOffset == 0
			run = &Entry{Index: idx, Count: 1, Type: h.Type().String(), Start: &start, End: &end,
				Pages: int(p.PageSize() / igvm.PageSize4K), DataType: p.DataType.String(), Flags: igvm.PageFlagNames(p.Flags), Mask: &mask, Zero: &zero}
			last = p
			continue
		}
		out = append(out, Entry{Index: idx, Count: 1, Type: h.Type().String(), Detail: describe(h)})
	}
	if run != nil {
		out = append(out, *run)
	}
	return out
}

// describe is a one-line summary of a non-page header.
func describe(h igvm.Header) string {
	if p, ok := igvm.ParameterOf(h); ok {
		return fmt.Sprintf("area %d offset %#x", p.ParameterAreaIndex, p.ByteOffset)
	}
	switch x := h.(type) {
	case *igvm.ParameterArea:
		init := "zero"
		if x.FileOffset != 0 {
			init = fmt.Sprintf("data at file offset %#x", x.FileOffset)
		}
		return fmt.Sprintf("area %d: %#x bytes, initially %s", x.ParameterAreaIndex, x.NumberOfBytes, init)
	case *igvm.ParameterInsert:
		return fmt.Sprintf("area %d at gpa %#x (unmeasured), mask %#x", x.ParameterAreaIndex, x.GPA, x.CompatibilityMask)
	case *igvm.VPContext:
		return fmt.Sprintf("vp %d at gpa %#x, mask %#x", x.VPIndex, x.GPA, x.CompatibilityMask)
	case *igvm.RequiredMemory:
		return fmt.Sprintf("gpa %#x, %#x bytes, flags %#x, mask %#x", x.GPA, x.NumberOfBytes, x.Flags, x.CompatibilityMask)
	case *igvm.ErrorRange:
		return fmt.Sprintf("gpa %#x, %#x bytes, mask %#x", x.GPA, x.SizeBytes, x.CompatibilityMask)
	case *igvm.SNPIDBlock:
		return fmt.Sprintf("mask %#x, ld %s", x.CompatibilityMask, hex.EncodeToString(x.LD[:]))
	case *igvm.VBSMeasurement:
		return fmt.Sprintf("mask %#x, version %d, product %d, module %d, svn %d", x.CompatibilityMask, x.Version, x.ProductID, x.ModuleID, x.SecurityVersion)
	case *igvm.RelocatableRegion:
		return fmt.Sprintf("gpa %#x, %#x bytes, alignment %#x, range [%#x, %#x], vp %d vtl %d flags %#x, mask %#x",
			x.RelocationRegionGPA, x.RelocationRegionSize, x.RelocationAlignment, x.MinimumRelocationGPA, x.MaximumRelocationGPA, x.VPIndex, x.VTL, x.Flags, x.CompatibilityMask)
	case *igvm.PageTableRelocation:
		return fmt.Sprintf("gpa %#x, %#x bytes (%#x used), vp %d vtl %d, mask %#x", x.GPA, x.Size, x.UsedSize, x.VPIndex, x.VTL, x.CompatibilityMask)
	case *igvm.Unknown:
		return fmt.Sprintf("%d bytes (optional, ignored)", len(x.Body))
	}
	return ""
}

func seg(s snp.Segment) Segment {
	return Segment{Hex(s.Selector), Hex(s.Attrib), Hex(s.Limit), Hex(s.Base)}
}

func decodeVMSA(idx int, x *igvm.VPContext, v *snp.VMSA) VMSA {
	return VMSA{
		Index: idx, VP: x.VPIndex, GPA: Hex(x.GPA),
		Registers: map[string]Hex{
			"rip": Hex(v.RIP), "rsp": Hex(v.RSP), "rsi": Hex(v.RSI), "rdi": Hex(v.RDI),
			"rax": Hex(v.RAX), "rbx": Hex(v.RBX), "rcx": Hex(v.RCX), "rdx": Hex(v.RDX), "rbp": Hex(v.RBP),
			"rflags": Hex(v.RFLAGS), "cr0": Hex(v.CR0), "cr3": Hex(v.CR3), "cr4": Hex(v.CR4),
			"efer": Hex(v.EFER), "xcr0": Hex(v.XCR0), "g_pat": Hex(v.GPAT), "dr6": Hex(v.DR6), "dr7": Hex(v.DR7),
			"sev_features": Hex(v.SEVFeatures), "vmpl": Hex(v.VMPL), "cpl": Hex(v.CPL), "mxcsr": Hex(v.MXCSR), "x87_fcw": Hex(v.X87FCW),
			"virtual_tom": Hex(v.VirtualTOM),
		},
		Segments: map[string]Segment{
			"es": seg(v.ES), "cs": seg(v.CS), "ss": seg(v.SS), "ds": seg(v.DS), "fs": seg(v.FS), "gs": seg(v.GS),
			"gdtr": seg(v.GDTR), "ldtr": seg(v.LDTR), "idtr": seg(v.IDTR), "tr": seg(v.TR),
		},
		SEVFeatures: snp.SEVFeatureNames(v.SEVFeatures),
	}
}

// maxCmdlineBytes bounds the command line read from guest memory.
const maxCmdlineBytes = 1 << 16

func decodeLinux(mem *igvm.Memory, gpa uint64) (*Linux, error) {
	page := make([]byte, bootparams.Size)
	if _, err := mem.ReadAt(page, int64(gpa)); err != nil {
		return nil, err
	}
	bp, err := bootparams.Unmarshal(page)
	if err != nil {
		return nil, err
	}
	h := &bp.Hdr
	if !h.HasMagic() {
		return nil, fmt.Errorf("setup header magic %q, want \"HdrS\"", page[0x202:0x206])
	}
	ramdisk, ramdiskSize := bp.Ramdisk()
	l := &Linux{
		BootParams:      Hex(gpa),
		Found:           "VMSA rsi",
		Protocol:        h.Protocol(),
		SetupSects:      h.SetupSects,
		TypeOfLoader:    Hex(h.TypeOfLoader),
		LoadFlags:       Hex(h.LoadFlags),
		Code32Start:     Hex(h.Code32Start),
		PrefAddress:     Hex(h.PrefAddress),
		InitSize:        Hex(h.InitSize),
		KernelAlignment: Hex(h.KernelAlignment),
		XLoadFlags:      Hex(h.XLoadFlags),
		CmdlineSize:     h.CmdlineSize,
		CmdlineGPA:      Hex(bp.CmdLine()),
		RamdiskGPA:      Hex(ramdisk),
		RamdiskSize:     Hex(ramdiskSize),
		ACPIRSDP:        Hex(bp.ACPIRSDPAddr),
		CCBlob:          Hex(bp.CCBlobAddress),
		E820:            []E820{},
	}
	if l.CmdlineGPA != 0 {
		l.Cmdline = readCString(mem, uint64(l.CmdlineGPA), maxCmdlineBytes)
	}
	if l.CCBlob != 0 {
		var m [4]byte
		if _, err := mem.ReadAt(m[:], int64(l.CCBlob)); err == nil {
			l.CCBlobMagic = fmt.Sprintf("%#x", binary.LittleEndian.Uint32(m[:]))
		}
	}
	for _, e := range bp.E820() {
		l.E820 = append(l.E820, E820{Hex(e.Addr), Hex(e.Size), Hex(e.End()), e.Type, bootparams.E820TypeName(e.Type)})
	}
	return l, nil
}

// readCString reads a NUL-terminated string at gpa, stopping at max bytes
// or at the first page not loaded.
func readCString(mem *igvm.Memory, gpa uint64, max int) string {
	var out []byte
	buf := make([]byte, 256)
	for len(out) < max {
		n, _ := mem.ReadAt(buf, int64(gpa)+int64(len(out)))
		if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
			return string(append(out, buf[:i]...))
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			break
		}
	}
	return string(out)
}

func checksumOK(b []byte) bool {
	var s byte
	for _, c := range b {
		s += c
	}
	return s == 0
}

// Bounds on what inspect reads of ACPI: table length and number of tables.
const (
	maxACPITable  = 16 << 20
	maxACPITables = 256
	maxACPIBytes  = 64 << 20
)

// tablePrefix is how much of a table decodeACPI looks at: the header and
// the root table's entries (maxACPITables of 8 bytes), or the FADT's
// DSDT/FACS pointers.
const tablePrefix = 36 + 8*maxACPITables

// readTable reads the table at addr: its header, its checksum (summed in
// page-sized pieces, so a table that claims 16 MiB costs no 16 MiB of
// memory) and the first tablePrefix bytes, which it returns. It returns a
// nil prefix for a table it could not read.
func readTable(mem *igvm.Memory, addr uint64, via string) (ACPITable, []byte) {
	t := ACPITable{Addr: Hex(addr), Via: via}
	var hdr [36]byte
	if _, err := mem.ReadAt(hdr[:8], int64(addr)); err != nil {
		t.Problem = err.Error()
		return t, nil
	}
	t.Signature = printable(hdr[:4])
	t.Length = binary.LittleEndian.Uint32(hdr[4:])
	facs := t.Signature == "FACS" // no checksum, a shorter header
	minLen := uint32(36)
	if facs {
		minLen = 8
	}
	if t.Length < minLen || t.Length > maxACPITable {
		t.Problem = fmt.Sprintf("length %d out of range", t.Length)
		return t, nil
	}
	prefix := make([]byte, min(t.Length, tablePrefix))
	var buf [igvm.PageSize4K]byte
	var sum byte
	for off := uint32(0); off < t.Length; {
		chunk := buf[:min(uint32(len(buf)), t.Length-off)]
		if _, err := mem.ReadAt(chunk, int64(addr)+int64(off)); err != nil {
			t.Problem = err.Error()
			return t, nil
		}
		if off < uint32(len(prefix)) {
			copy(prefix[off:], chunk)
		}
		for _, c := range chunk {
			sum += c
		}
		off += uint32(len(chunk))
	}
	if facs {
		t.ChecksumOK = true
		return t, prefix
	}
	t.Revision = prefix[8]
	t.OEMID = printable(prefix[10:16])
	t.OEMTableID = printable(prefix[16:24])
	t.ChecksumOK = sum == 0
	if !t.ChecksumOK {
		t.Problem = "bad checksum"
	}
	return t, prefix
}

func printable(b []byte) string {
	return strings.TrimRight(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, string(b)), " .")
}

func decodeACPI(mem *igvm.Memory, rsdp uint64) (*ACPI, error) {
	var b [36]byte
	if _, err := mem.ReadAt(b[:20], int64(rsdp)); err != nil {
		return nil, err
	}
	if string(b[:8]) != "RSD PTR " {
		return nil, fmt.Errorf("no RSDP signature at %#x", rsdp)
	}
	a := &ACPI{RSDP: Hex(rsdp), OEMID: printable(b[9:15]), Revision: b[15], RSDT: Hex(binary.LittleEndian.Uint32(b[16:]))}
	a.ChecksumOK = checksumOK(b[:20])
	if a.Revision >= 2 {
		if _, err := mem.ReadAt(b[:], int64(rsdp)); err != nil {
			return nil, err
		}
		a.XSDT = Hex(binary.LittleEndian.Uint64(b[24:]))
		a.ChecksumOK = a.ChecksumOK && checksumOK(b[:36])
	}
	seen := map[uint64]bool{}
	budget := int64(maxACPIBytes)
	add := func(addr uint64, via string) []byte {
		if addr == 0 || seen[addr] || budget <= 0 {
			return nil
		}
		seen[addr] = true
		t, body := readTable(mem, addr, via)
		if body != nil {
			budget -= int64(t.Length)
		}
		a.Tables = append(a.Tables, t)
		return body
	}
	root, entry := uint64(a.XSDT), 8
	if root == 0 {
		root, entry = uint64(a.RSDT), 4
	}
	body := add(root, "RSDP")
	if body == nil {
		return a, nil
	}
	rootSig := a.Tables[0].Signature
	var children []uint64
	for o := 36; o+entry <= len(body) && len(children) < maxACPITables; o += entry {
		if entry == 8 {
			children = append(children, binary.LittleEndian.Uint64(body[o:]))
		} else {
			children = append(children, uint64(binary.LittleEndian.Uint32(body[o:])))
		}
	}
	for _, c := range children {
		tb := add(c, rootSig)
		if len(tb) >= 148 && string(tb[:4]) == "FACP" {
			facs, dsdt := uint64(binary.LittleEndian.Uint32(tb[36:])), uint64(binary.LittleEndian.Uint32(tb[40:]))
			if x := binary.LittleEndian.Uint64(tb[132:]); x != 0 {
				facs = x
			}
			if x := binary.LittleEndian.Uint64(tb[140:]); x != 0 {
				dsdt = x
			}
			add(dsdt, "FACP")
			add(facs, "FACP")
		}
	}
	return a, nil
}

func decodeIDBlock(idx int, x *igvm.SNPIDBlock, policy *snp.GuestPolicy) *IDBlock {
	auth := x.IDAuth()
	id := &IDBlock{
		Index: idx, Mask: Hex(x.CompatibilityMask),
		LD: hex.EncodeToString(x.LD[:]), FamilyID: hex.EncodeToString(x.FamilyID[:]), ImageID: hex.EncodeToString(x.ImageID[:]),
		Version: x.Version, GuestSVN: x.GuestSVN,
		IDKeyAlgorithm: x.IDKeyAlgorithm, IDKeyCurve: x.IDPublicKey.Curve,
		IDKeyDigest:      auth.IDKey.Digest().String(),
		AuthorKeyEnabled: x.AuthorKeyEnabled, AuthorKeyAlgorithm: x.AuthorKeyAlgorithm,
	}
	if auth.HasAuthorKey() {
		id.AuthorKeyDigest = auth.AuthorKey.Digest().String()
	}
	if policy == nil {
		return id
	}
	// The signatures are checked once the structure is one the firmware
	// takes (algorithms, curves, keys on the curve); otherwise the problem
	// is the structure.
	err := auth.Verify(x.IDBlock(*policy))
	var fe *snp.IDFormatError
	switch {
	case err == nil:
		ok := true
		id.SignatureValid = &ok
	case errors.As(err, &fe):
		id.Problem = err.Error()
	default:
		ok := false
		id.SignatureValid = &ok
		id.Problem = err.Error()
	}
	return id
}
