package measure

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// OVMF firmware images end with a table of GUID-tagged entries that the
// hypervisor reads (edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm):
//
//	... entryN ... entry1 | footer entry | 32 bytes (reset vector)
//
// Each entry is <data><size u16><GUID>, where size counts all three and the
// GUID is stored in the mixed-endian EFI_GUID layout. The table is read
// backwards from the footer entry (GUID 96b582de-...), whose size covers
// the whole table including itself. One entry points at the SEV metadata
// (edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm): "ASEV", size u32,
// version u32 = 1, count u32, then count descriptors of (GPA u32, size u32,
// type u32).

// GUIDs of the OVMF footer table entries that matter for SEV-SNP, in the
// EFI (mixed-endian) byte order as they are stored in the image.
var (
	guidOVMFTableFooter = mustGUID("96b582de-1fb2-45f7-baea-a366c55a082d")
	guidSEVHashTableRV  = mustGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
	guidSEVESResetBlock = mustGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
	guidOVMFSEVMetadata = mustGUID("dc886566-984a-4798-a75e-5585a7bf67cc")
)

// fourGiB is where the firmware image ends in guest physical memory.
const fourGiB = 1 << 32

// maxSectionBytes bounds the guest memory the SEV metadata sections cover,
// all of them together (16 MiB, 4096 pages). Each of their pages costs a
// PAGE_INFO record although the image holds none of their bytes, so
// without a bound a 12-byte descriptor could ask for a million records
// (4 GiB). Real firmware lists well under 1 MiB (edk2's OvmfPkg: the
// pre-validated pages around 0x800000, the secrets, CPUID and kernel
// hashes pages).
const maxSectionBytes = 16 << 20

// maxOVMFSize bounds the firmware images ParseOVMF accepts (real ones are
// 1 to 4 MiB; the flash region below 4 GiB is at most 16 MiB in QEMU).
const maxOVMFSize = 64 << 20

// OVMFFormatError reports a firmware image whose footer table or SEV
// metadata is malformed, with the file offset of what is wrong.
type OVMFFormatError struct {
	Offset int64 // file offset in the firmware image (-1: the image as a whole)
	Msg    string
}

func (e *OVMFFormatError) Error() string {
	if e.Offset < 0 {
		return "measure: OVMF: " + e.Msg
	}
	return fmt.Sprintf("measure: OVMF at offset %#x: %s", e.Offset, e.Msg)
}

func ovmfErr(off int64, format string, a ...any) error {
	return &OVMFFormatError{Offset: off, Msg: fmt.Sprintf(format, a...)}
}

// OVMFSectionType is the type of an SEV metadata section of OVMF.
type OVMFSectionType uint32

// SEV metadata section types (edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm).
const (
	SectionSNPSecMem       OVMFSectionType = 1    // memory pre-validated as zero pages
	SectionSNPSecrets      OVMFSectionType = 2    // SNP secrets page
	SectionCPUID           OVMFSectionType = 3    // SNP CPUID page
	SectionSVSMCAA         OVMFSectionType = 4    // SVSM calling area, measured as zero pages
	SectionSNPKernelHashes OVMFSectionType = 0x10 // page with the kernel/initrd/cmdline hashes
)

// String returns the edk2 name of the section type.
func (t OVMFSectionType) String() string {
	switch t {
	case SectionSNPSecMem:
		return "SNP_SEC_MEM"
	case SectionSNPSecrets:
		return "SNP_SECRETS"
	case SectionCPUID:
		return "CPUID"
	case SectionSVSMCAA:
		return "SVSM_CAA"
	case SectionSNPKernelHashes:
		return "SNP_KERNEL_HASHES"
	}
	return fmt.Sprintf("OVMFSectionType(%#x)", uint32(t))
}

// OVMFSection is one SEV metadata section descriptor.
type OVMFSection struct {
	GPA  uint32
	Size uint32
	Type OVMFSectionType
}

// OVMF is a parsed OVMF firmware image.
type OVMF struct {
	data     []byte
	table    map[[16]byte][]byte
	sections []OVMFSection
	hasMeta  bool
}

// ReadOVMF reads and parses the firmware image at path.
func ReadOVMF(path string) (*OVMF, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	if fi.Size() > maxOVMFSize {
		return nil, fmt.Errorf("measure: OVMF %s: %d bytes, more than the %d a firmware image can have", path, fi.Size(), maxOVMFSize)
	}
	// Bounded again while reading: the size of a FIFO or a growing file
	// says nothing.
	data, err := io.ReadAll(io.LimitReader(f, maxOVMFSize+1))
	if err != nil {
		return nil, fmt.Errorf("measure: OVMF %s: %w", path, err)
	}
	if len(data) > maxOVMFSize {
		return nil, fmt.Errorf("measure: OVMF %s: more than the %d bytes a firmware image can have", path, maxOVMFSize)
	}
	o, err := ParseOVMF(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return o, nil
}

// ParseOVMF parses the footer table and SEV metadata of a firmware image.
// An image without the footer table, or whose table has no SEV metadata
// entry, parses without sections (as sev-snp-measure treats it); a table
// or metadata that is present but broken is an error. data is kept, not
// copied.
func ParseOVMF(data []byte) (*OVMF, error) {
	if len(data) == 0 {
		return nil, ovmfErr(-1, "empty firmware image")
	}
	if len(data) > maxOVMFSize {
		return nil, ovmfErr(-1, "%d bytes, more than the %d a firmware image can have", len(data), maxOVMFSize)
	}
	if len(data)%4096 != 0 {
		return nil, ovmfErr(-1, "size %d is not a multiple of 4096", len(data))
	}
	o := &OVMF{data: data, table: map[[16]byte][]byte{}}
	if err := o.parseFooterTable(); err != nil {
		return nil, err
	}
	if err := o.parseSEVMetadata(); err != nil {
		return nil, err
	}
	return o, nil
}

const footerEntryHeader = 2 + 16 // size u16 + GUID

func (o *OVMF) parseFooterTable() error {
	n := len(o.data)
	footerStart := n - 32 - footerEntryHeader
	if footerStart < 0 {
		return nil
	}
	var guid [16]byte
	copy(guid[:], o.data[footerStart+2:footerStart+footerEntryHeader])
	if guid != guidOVMFTableFooter {
		return nil // not an OVMF with a GUIDed table
	}
	size := int(binary.LittleEndian.Uint16(o.data[footerStart:]))
	tableSize := size - footerEntryHeader
	if tableSize < 0 {
		return ovmfErr(int64(footerStart), "footer table: size %d is smaller than its own header", size)
	}
	if tableSize > footerStart {
		return ovmfErr(int64(footerStart), "footer table: size %d runs past the start of the image", size)
	}
	tableStart := footerStart - tableSize
	table := o.data[footerStart-tableSize : footerStart]
	for len(table) >= footerEntryHeader {
		h := len(table) - footerEntryHeader
		esize := int(binary.LittleEndian.Uint16(table[h:]))
		copy(guid[:], table[h+2:])
		if esize < footerEntryHeader {
			return ovmfErr(int64(tableStart+h), "footer table: entry %s has size %d, smaller than its header", guidString(guid), esize)
		}
		if esize > len(table) {
			return ovmfErr(int64(tableStart+h), "footer table: entry %s has size %d, more than the %d bytes left in the table", guidString(guid), esize, len(table))
		}
		o.table[guid] = table[len(table)-esize : h]
		table = table[:len(table)-esize]
	}
	return nil
}

const sevMetadataHeader = 16

func (o *OVMF) parseSEVMetadata() error {
	entry, ok := o.table[guidOVMFSEVMetadata]
	if !ok {
		return nil
	}
	if len(entry) < 4 {
		return ovmfErr(-1, "SEV metadata entry has %d bytes, want at least 4", len(entry))
	}
	off := int64(binary.LittleEndian.Uint32(entry))
	start := int64(len(o.data)) - off
	if off == 0 || start < 0 || start+sevMetadataHeader > int64(len(o.data)) {
		return ovmfErr(-1, "SEV metadata offset %#x from the end is outside the %d-byte image", off, len(o.data))
	}
	h := o.data[start:]
	if string(h[:4]) != "ASEV" {
		return ovmfErr(start, "SEV metadata: signature %q, want \"ASEV\"", h[:4])
	}
	size := int64(binary.LittleEndian.Uint32(h[4:]))
	version := binary.LittleEndian.Uint32(h[8:])
	count := int64(binary.LittleEndian.Uint32(h[12:]))
	if version != 1 {
		return ovmfErr(start, "SEV metadata: version %d, want 1", version)
	}
	if size < sevMetadataHeader || start+size > int64(len(o.data)) {
		return ovmfErr(start, "SEV metadata: size %d does not fit the image", size)
	}
	if sevMetadataHeader+count*12 > size {
		return ovmfErr(start, "SEV metadata: %d sections do not fit its size of %d bytes", count, size)
	}
	o.hasMeta = true
	total := uint64(0)
	for i := int64(0); i < count; i++ {
		d := h[sevMetadataHeader+12*i:]
		s := OVMFSection{
			GPA:  binary.LittleEndian.Uint32(d),
			Size: binary.LittleEndian.Uint32(d[4:]),
			Type: OVMFSectionType(binary.LittleEndian.Uint32(d[8:])),
		}
		doff := start + sevMetadataHeader + 12*i
		switch s.Type {
		case SectionSNPSecMem, SectionSNPSecrets, SectionCPUID, SectionSVSMCAA, SectionSNPKernelHashes:
		default:
			return ovmfErr(doff, "SEV metadata section %d: unknown type %#x", i, uint32(s.Type))
		}
		if s.GPA%4096 != 0 || s.Size%4096 != 0 {
			return ovmfErr(doff, "SEV metadata section %d (%v): GPA %#x size %#x not 4 KiB aligned", i, s.Type, s.GPA, s.Size)
		}
		if uint64(s.GPA)+uint64(s.Size) > fourGiB {
			return ovmfErr(doff, "SEV metadata section %d (%v): GPA %#x size %#x runs past 4 GiB", i, s.Type, s.GPA, s.Size)
		}
		if total += uint64(s.Size); total > maxSectionBytes {
			return ovmfErr(doff, "SEV metadata sections cover more than %d bytes of guest memory, more than a firmware pre-validates", uint64(maxSectionBytes))
		}
		o.sections = append(o.sections, s)
	}
	return nil
}

// Data returns the firmware image bytes.
func (o *OVMF) Data() []byte { return o.data }

// GPA returns the guest physical address of the first byte of the image,
// which QEMU maps so that it ends at 4 GiB.
func (o *OVMF) GPA() uint64 { return fourGiB - uint64(len(o.data)) }

// Sections returns the SEV metadata sections in table order.
func (o *OVMF) Sections() []OVMFSection { return o.sections }

// HasSEVMetadata reports whether the image lists SEV metadata. A firmware
// without it does not pre-validate its memory and cannot boot an SNP guest.
func (o *OVMF) HasSEVMetadata() bool { return o.hasMeta }

// HasSection reports whether the SEV metadata lists a section of type t.
func (o *OVMF) HasSection(t OVMFSectionType) bool {
	for _, s := range o.sections {
		if s.Type == t {
			return true
		}
	}
	return false
}

func (o *OVMF) tableU32(guid [16]byte, what string) (uint32, error) {
	e, ok := o.table[guid]
	if !ok && len(o.table) == 0 {
		return 0, fmt.Errorf("measure: OVMF has no footer table (GUID %s, 32 bytes before the end of the image), so no %s entry: not an OVMF image, or its footer is broken", guidString(guidOVMFTableFooter), what)
	}
	if !ok {
		return 0, fmt.Errorf("measure: OVMF footer table has no %s entry (GUID %s)", what, guidString(guid))
	}
	if len(e) < 4 {
		return 0, fmt.Errorf("measure: OVMF %s entry has %d bytes, want at least 4", what, len(e))
	}
	return binary.LittleEndian.Uint32(e), nil
}

// ResetEIP returns the address where the application processors start,
// from the SEV-ES reset block of the footer table.
func (o *OVMF) ResetEIP() (uint32, error) {
	return o.tableU32(guidSEVESResetBlock, "SEV-ES reset block")
}

// KernelHashesGPA returns the GPA of the kernel-hashes table (SEV hash
// table reserved area), where QEMU writes the SHA-256 of kernel, initrd and
// command line.
func (o *OVMF) KernelHashesGPA() (uint32, error) {
	return o.tableU32(guidSEVHashTableRV, "SEV hash table")
}

// mustGUID encodes a textual GUID in the EFI mixed-endian layout.
func mustGUID(s string) [16]byte {
	g, err := parseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

func parseGUID(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("measure: bad GUID %q", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if err != nil {
		return g, fmt.Errorf("measure: bad GUID %q", s)
	}
	// time_low, time_mid and time_hi are little-endian in EFI_GUID.
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

func guidString(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}
