package igvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
)

// FormatError reports the first violation of the IGVM format found in a
// file (or in the headers given to a Builder).
type FormatError struct {
	Index  int        // variable header index, -1 for the fixed header
	Type   HeaderType // type of that header (0 for the fixed header)
	Offset int64      // file offset of the header (or of the fixed-header field)
	Msg    string
}

// Error formats the violation as
// "igvm: header N (TYPE) at offset 0x...: what is wrong".
func (e *FormatError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("igvm: fixed header at offset %#x: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("igvm: header %d (%v) at offset %#x: %s", e.Index, e.Type, e.Offset, e.Msg)
}

// MaxHeaderSection bounds the variable header section the reader accepts
// (64 MiB, about two million PAGE_DATA headers: 8 GiB of pages).
const MaxHeaderSection = 64 << 20

// MaxParameterAreaBytes bounds the parameter areas of a file, all of them
// together (16 MiB, 4096 pages). A parameter area is what the loader fills
// in for the guest (vCPU count, memory map, command line, device tree,
// ACPI tables): real files use one to a few pages (igvmgen one, COCONUT's
// and OVMF's a few). A loader, and a measurement, spends work on every
// page of an inserted area although the file holds none of its bytes, so
// without this bound a 24-byte header could declare 2^64 bytes of work.
const MaxParameterAreaBytes = 16 << 20

// File is a parsed, validated IGVM file. Only the fixed header and the
// variable headers are held in memory; file data (page contents, VMSAs,
// parameter area contents) is read on demand from the underlying ReaderAt.
type File struct {
	Fixed FixedHeader
	// Headers are all variable headers in file order: the platform
	// section, then initialization, then directives.
	Headers []Header
	// Offsets[i] is the file offset of Headers[i]'s type field.
	Offsets []int64

	nPlatform, nInit int
	r                io.ReaderAt
	size             int64
}

// Platforms returns the platform headers (SUPPORTED_PLATFORM).
func (f *File) Platforms() []Header { return f.Headers[:f.nPlatform] }

// Initialization returns the initialization headers (GUEST_POLICY, ...).
func (f *File) Initialization() []Header { return f.Headers[f.nPlatform : f.nPlatform+f.nInit] }

// Directives returns the directive headers in file order.
func (f *File) Directives() []Header { return f.Headers[f.nPlatform+f.nInit:] }

// DirectiveIndex returns the index in Headers of Directives()[i].
func (f *File) DirectiveIndex(i int) int { return f.nPlatform + f.nInit + i }

// Size is the file size.
func (f *File) Size() int64 { return f.size }

// Open reads and validates the IGVM file in r (size bytes). It reads the
// fixed header and the variable header section and checks every rule of the
// format (see the package doc); page data is not read.
func Open(r io.ReaderAt, size int64) (*File, error) {
	if size < FixedHeaderSize {
		return nil, &FormatError{Index: -1, Msg: fmt.Sprintf("file of %d bytes is shorter than the %d-byte fixed header", size, FixedHeaderSize)}
	}
	var fh [FixedHeaderSize]byte
	if _, err := r.ReadAt(fh[:], 0); err != nil {
		return nil, fmt.Errorf("igvm: read fixed header: %w", err)
	}
	f := &File{r: r, size: size}
	if _, err := binary.Decode(fh[:], binary.LittleEndian, &f.Fixed); err != nil {
		return nil, fmt.Errorf("igvm: fixed header: %w", err)
	}
	x := &f.Fixed
	ferr := func(off int64, format string, a ...any) error {
		return &FormatError{Index: -1, Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	if x.Magic != Magic {
		return nil, ferr(0, "magic %#x, want %#x (\"IGVM\")", x.Magic, Magic)
	}
	if x.FormatVersion != FormatVersion1 {
		return nil, ferr(4, "format version %d not supported (want 1)", x.FormatVersion)
	}
	if int64(x.TotalFileSize) != size {
		return nil, ferr(16, "total_file_size %d differs from the file size %d", x.TotalFileSize, size)
	}
	vo, vs := int64(x.VariableHeaderOffset), int64(x.VariableHeaderSize)
	if vo < FixedHeaderSize || vo%8 != 0 {
		return nil, ferr(8, "variable_header_offset %#x must be >= 24 and a multiple of 8", vo)
	}
	if vs > MaxHeaderSection {
		return nil, ferr(12, "variable_header_size %d exceeds the %d-byte limit", vs, MaxHeaderSection)
	}
	if vo+vs >= size {
		return nil, ferr(12, "variable headers [%#x, %#x) do not end before the end of the file (%#x): no file data", vo, vo+vs, size)
	}
	section := make([]byte, vs)
	if _, err := r.ReadAt(section, vo); err != nil {
		return nil, fmt.Errorf("igvm: read variable headers: %w", err)
	}
	crc := crc32.NewIEEE()
	zeroed := fh
	binary.LittleEndian.PutUint32(zeroed[20:], 0)
	crc.Write(zeroed[:])
	// Bytes between the fixed header and a later variable header section
	// are not covered: like the reference parser, hash exactly the fixed
	// header and the variable header section.
	crc.Write(section)
	if sum := crc.Sum32(); sum != x.Checksum {
		return nil, ferr(20, "checksum %#08x, computed %#08x", x.Checksum, sum)
	}

	// Split the section into headers. A PAGE_DATA header takes 32 bytes,
	// so vs/32 is the count for the usual file of pages.
	f.Headers = make([]Header, 0, vs/32)
	f.Offsets = make([]int64, 0, vs/32)
	var dec bodyDecoder
	for pos := int64(0); pos < vs; {
		off := vo + pos
		idx := len(f.Headers)
		if vs-pos < 8 {
			return nil, &FormatError{Index: idx, Offset: off, Msg: fmt.Sprintf("%d bytes left in the variable header section, too few for a type and length", vs-pos)}
		}
		typ := HeaderType(binary.LittleEndian.Uint32(section[pos:]))
		length := int64(binary.LittleEndian.Uint32(section[pos+4:]))
		herr := func(format string, a ...any) error {
			return &FormatError{Index: idx, Type: typ, Offset: off, Msg: fmt.Sprintf(format, a...)}
		}
		if length > vs-pos-8 {
			return nil, herr("length %d runs past the end of the variable header section", length)
		}
		body := section[pos+8 : pos+8+length]
		var h Header
		if want, ok := bodySizes[typ]; ok {
			if int64(want) != length {
				return nil, herr("length %d, want %d", length, want)
			}
			var err error
			if h, err = dec.decode(typ, body); err != nil {
				return nil, herr("%v", err)
			}
		} else if typ&OptionalBit != 0 && typ.Section() != SectionInvalid {
			h = &Unknown{HeaderType: typ, Body: bytes.Clone(body)}
		} else {
			return nil, herr("unknown header type %#x", uint32(typ))
		}
		f.Headers = append(f.Headers, h)
		f.Offsets = append(f.Offsets, off)
		pos += 8 + (length+7)&^7
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse reads and validates an IGVM file held in memory.
func Parse(b []byte) (*File, error) { return Open(bytes.NewReader(b), int64(len(b))) }

// validator holds the state of the cross-header checks; it is shared by
// the reader and the Builder.
type validator struct {
	section   Section
	nPlatform int
	nInit     int
	platforms map[uint8]uint32 // platform type -> mask
	masks     uint32           // union of platform masks
	maskType  map[uint32]uint8
	areas     map[uint32]*areaState
	areaBytes uint64     // sum of the parameter areas' number_of_bytes
	ptMasks   uint32     // masks that have a PAGE_TABLE_RELOCATION_REGION
	regions   []gpaRange // relocation and page-table regions
	ptRegions []gpaRange
	// file data bounds; dataStart == 0 disables file-offset checks
	dataStart, size int64
}

type gpaRange struct {
	mask       uint32
	start, end uint64 // [start, end)
}

type areaState struct {
	bytes    uint64
	inserted bool
}

func newValidator() *validator {
	return &validator{
		section:   SectionPlatform,
		platforms: map[uint8]uint32{},
		maskType:  map[uint32]uint8{},
		areas:     map[uint32]*areaState{},
	}
}

func (f *File) validate() error {
	v := newValidator()
	v.dataStart = int64(f.Fixed.VariableHeaderOffset) + int64(f.Fixed.VariableHeaderSize)
	v.size = f.size
	for i, h := range f.Headers {
		if err := v.check(h); err != nil {
			return &FormatError{Index: i, Type: h.Type(), Offset: f.Offsets[i], Msg: err.Error()}
		}
	}
	if err := v.finish(); err != nil {
		return &FormatError{Index: len(f.Headers), Offset: int64(f.Fixed.VariableHeaderOffset) + int64(f.Fixed.VariableHeaderSize), Msg: err.Error()}
	}
	f.nPlatform, f.nInit = v.nPlatform, v.nInit
	// Like the reference parser, an SEV-SNP VMSA must be zero after the
	// architectural save area.
	page := make([]byte, PageSize4K)
	checked := map[uint32]bool{}
	for i, h := range f.Headers {
		x, ok := h.(*VPContext)
		if !ok || v.maskType[x.CompatibilityMask] != PlatformSEVSNP || checked[x.FileOffset] {
			continue
		}
		checked[x.FileOffset] = true
		if _, err := f.r.ReadAt(page, int64(x.FileOffset)); err != nil {
			return fmt.Errorf("igvm: header %d (VP_CONTEXT): read VMSA: %w", i, err)
		}
		if err := checkVMSA(page); err != nil {
			return &FormatError{Index: i, Type: h.Type(), Offset: f.Offsets[i], Msg: err.Error()}
		}
	}
	return nil
}

// VMSASaveAreaSize is the size of the SEV-SNP save area proper (through
// the YMM registers); the rest of a VMSA page must be zero.
const VMSASaveAreaSize = 0x670

func checkVMSA(page []byte) error {
	for i := VMSASaveAreaSize; i < len(page); i++ {
		if page[i] != 0 {
			return fmt.Errorf("VMSA byte %#x is %#x: bytes after the save area (%#x) must be zero", i, page[i], VMSASaveAreaSize)
		}
	}
	return nil
}

func (v *validator) finish() error {
	if len(v.platforms) == 0 {
		return errors.New("no SUPPORTED_PLATFORM header")
	}
	return nil
}

// maxRegions bounds the relocation and page-table regions of a file (the
// overlap check is quadratic).
const maxRegions = 4096

// addRegion records a relocatable or page-table region and rejects overlap
// with an earlier one of a shared platform.
func (v *validator) addRegion(mask uint32, start, size uint64, pageTable bool) error {
	end := start + size
	if end < start {
		return fmt.Errorf("region [%#x, +%#x) wraps around", start, size)
	}
	if len(v.regions) >= maxRegions {
		return fmt.Errorf("more than %d relocation regions", maxRegions)
	}
	r := gpaRange{mask, start, end}
	for _, o := range v.regions {
		if o.mask&mask != 0 && start < o.end && o.start < end {
			return fmt.Errorf("region [%#x, %#x) overlaps region [%#x, %#x)", start, end, o.start, o.end)
		}
	}
	v.regions = append(v.regions, r)
	if pageTable {
		v.ptRegions = append(v.ptRegions, r)
	}
	return nil
}

// checkMask requires a nonzero mask made only of declared platform bits.
func (v *validator) checkMask(m uint32) error {
	if m == 0 {
		return errors.New("compatibility_mask is zero")
	}
	if m&^v.masks != 0 {
		return fmt.Errorf("compatibility_mask %#x has bits of no declared platform (platforms %#x)", m, v.masks)
	}
	return nil
}

func checkGPA(name string, gpa uint64) error {
	if gpa%PageSize4K != 0 {
		return fmt.Errorf("%s %#x not 4 KiB aligned", name, gpa)
	}
	return nil
}

// checkData checks that [off, off+n) lies in the file data section.
func (v *validator) checkData(off uint32, n uint64) error {
	if v.dataStart == 0 || off == 0 {
		return nil
	}
	if int64(off) < v.dataStart {
		return fmt.Errorf("file_offset %#x points into the headers (file data starts at %#x)", off, v.dataStart)
	}
	if uint64(off)+n > uint64(v.size) {
		return fmt.Errorf("file data [%#x, %#x) runs past the end of the file (%#x)", off, uint64(off)+n, v.size)
	}
	return nil
}

// check validates one header in sequence.
func (v *validator) check(h Header) error {
	sec := h.Type().Section()
	if sec < v.section {
		return fmt.Errorf("%v header after the %v section", sec, v.section)
	}
	if sec == SectionInvalid {
		return fmt.Errorf("type %#x is in no section", uint32(h.Type()))
	}
	v.section = sec
	switch sec {
	case SectionPlatform:
		v.nPlatform++
	case SectionInitialization:
		v.nInit++
	}
	switch x := h.(type) {
	case *Unknown:
		if _, known := bodySizes[x.HeaderType]; known {
			return fmt.Errorf("type %#x is a known type; use its struct", uint32(x.HeaderType))
		}
		if x.HeaderType&OptionalBit == 0 {
			return fmt.Errorf("unknown header type %#x", uint32(x.HeaderType))
		}
		return nil
	case *SupportedPlatform:
		if bits.OnesCount32(x.CompatibilityMask) != 1 {
			return fmt.Errorf("compatibility_mask %#x must have exactly one bit set", x.CompatibilityMask)
		}
		if x.HighestVTL != 0 && x.HighestVTL != 2 {
			return fmt.Errorf("highest_vtl %d, must be 0 or 2", x.HighestVTL)
		}
		switch x.PlatformType {
		case PlatformVSMIsolation, PlatformSEVSNP, PlatformTDX:
		default:
			return fmt.Errorf("platform_type %d not supported", x.PlatformType)
		}
		if x.PlatformVersion != 1 {
			return fmt.Errorf("platform_version %d, want 1", x.PlatformVersion)
		}
		if x.PlatformType == PlatformVSMIsolation && x.SharedGPABoundary != 0 {
			return fmt.Errorf("shared_gpa_boundary %#x must be 0 for %s", x.SharedGPABoundary, PlatformName(x.PlatformType))
		}
		if _, dup := v.platforms[x.PlatformType]; dup {
			return fmt.Errorf("second SUPPORTED_PLATFORM for %s", PlatformName(x.PlatformType))
		}
		if v.masks&x.CompatibilityMask != 0 {
			return fmt.Errorf("compatibility_mask %#x already used by another platform", x.CompatibilityMask)
		}
		v.platforms[x.PlatformType] = x.CompatibilityMask
		v.maskType[x.CompatibilityMask] = x.PlatformType
		v.masks |= x.CompatibilityMask
		return nil
	}
	if len(v.platforms) == 0 {
		return errors.New("no SUPPORTED_PLATFORM header before it")
	}
	switch x := h.(type) {
	case *GuestPolicy:
		if x.Reserved != 0 {
			return fmt.Errorf("reserved field %#x is not zero", x.Reserved)
		}
		return v.checkMask(x.CompatibilityMask)
	case *RelocatableRegion:
		if x.Flags&^7 != 0 {
			return fmt.Errorf("flags %#x has reserved bits set", x.Flags)
		}
		a := x.RelocationAlignment
		if a == 0 || a%PageSize4K != 0 {
			return fmt.Errorf("relocation_alignment %#x not a nonzero multiple of 4 KiB", a)
		}
		if x.RelocationRegionGPA%a != 0 || x.MinimumRelocationGPA%a != 0 || x.MaximumRelocationGPA%a != 0 {
			return fmt.Errorf("relocation addresses not aligned to relocation_alignment %#x", a)
		}
		if x.RelocationRegionSize == 0 || x.RelocationRegionSize%PageSize4K != 0 {
			return fmt.Errorf("relocation_region_size %#x not a nonzero multiple of 4 KiB", x.RelocationRegionSize)
		}
		if x.MinimumRelocationGPA > x.MaximumRelocationGPA {
			return fmt.Errorf("minimum_relocation_gpa %#x above maximum %#x", x.MinimumRelocationGPA, x.MaximumRelocationGPA)
		}
		if x.VTL > 2 {
			return fmt.Errorf("vtl %d, must be 0, 1 or 2", x.VTL)
		}
		if err := v.checkMask(x.CompatibilityMask); err != nil {
			return err
		}
		return v.addRegion(x.CompatibilityMask, x.RelocationRegionGPA, x.RelocationRegionSize, false)
	case *PageTableRelocation:
		if x.Reserved != 0 {
			return fmt.Errorf("reserved field %#x is not zero", x.Reserved)
		}
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		if x.Size == 0 || x.Size%PageSize4K != 0 || x.UsedSize%PageSize4K != 0 || x.UsedSize > x.Size {
			return fmt.Errorf("size %#x / used_size %#x not 4 KiB multiples with 0 < size and used <= size", x.Size, x.UsedSize)
		}
		if x.VTL > 2 {
			return fmt.Errorf("vtl %d, must be 0, 1 or 2", x.VTL)
		}
		if err := v.checkMask(x.CompatibilityMask); err != nil {
			return err
		}
		if v.ptMasks&x.CompatibilityMask != 0 {
			return fmt.Errorf("second PAGE_TABLE_RELOCATION_REGION for mask %#x", x.CompatibilityMask&v.ptMasks)
		}
		v.ptMasks |= x.CompatibilityMask
		return v.addRegion(x.CompatibilityMask, x.GPA, x.Size, true)
	case *ParameterArea:
		if x.NumberOfBytes == 0 || x.NumberOfBytes%PageSize4K != 0 {
			return fmt.Errorf("number_of_bytes %#x not a nonzero multiple of 4 KiB", x.NumberOfBytes)
		}
		if _, dup := v.areas[x.ParameterAreaIndex]; dup {
			return fmt.Errorf("parameter area %d allocated twice", x.ParameterAreaIndex)
		}
		if err := v.checkData(x.FileOffset, x.NumberOfBytes); err != nil {
			return err
		}
		if x.NumberOfBytes > MaxParameterAreaBytes-v.areaBytes {
			return fmt.Errorf("parameter area %d of %#x bytes: the file's parameter areas would exceed %#x bytes, more than any guest uses (igvm.MaxParameterAreaBytes)", x.ParameterAreaIndex, x.NumberOfBytes, MaxParameterAreaBytes)
		}
		v.areaBytes += x.NumberOfBytes
		v.areas[x.ParameterAreaIndex] = &areaState{bytes: x.NumberOfBytes}
		return nil
	case *PageData:
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		if x.Flags&^pageFlagsKnown != 0 {
			return fmt.Errorf("flags %#x has reserved bits set", x.Flags)
		}
		if x.Flags&PageFlag2MB != 0 && x.GPA%PageSize2M != 0 {
			return fmt.Errorf("2 MiB page at gpa %#x not 2 MiB aligned", x.GPA)
		}
		if x.DataType > DataCPUIDXF {
			return fmt.Errorf("data_type %d unknown", x.DataType)
		}
		if x.Reserved != 0 {
			return fmt.Errorf("reserved field %#x is not zero", x.Reserved)
		}
		if err := v.checkMask(x.CompatibilityMask); err != nil {
			return err
		}
		return v.checkData(x.FileOffset, x.PageSize())
	case *ParameterInsert:
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		a := v.areas[x.ParameterAreaIndex]
		if a == nil {
			return fmt.Errorf("parameter area %d was never allocated", x.ParameterAreaIndex)
		}
		if a.inserted {
			return fmt.Errorf("parameter area %d inserted twice", x.ParameterAreaIndex)
		}
		a.inserted = true
		for _, r := range v.ptRegions {
			if r.mask&x.CompatibilityMask != 0 && x.GPA >= r.start && x.GPA < r.end {
				return fmt.Errorf("gpa %#x inside the page table relocation region [%#x, %#x)", x.GPA, r.start, r.end)
			}
		}
		return v.checkMask(x.CompatibilityMask)
	case *VPContext:
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		if x.Reserved != 0 {
			return fmt.Errorf("reserved field %#x is not zero", x.Reserved)
		}
		if _, ok := v.maskType[x.CompatibilityMask]; !ok {
			return fmt.Errorf("compatibility_mask %#x is not exactly one platform's mask", x.CompatibilityMask)
		}
		if v.dataStart != 0 && x.FileOffset == 0 {
			return errors.New("file_offset is 0: a VP context needs file data")
		}
		return v.checkData(x.FileOffset, PageSize4K)
	case *RequiredMemory:
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		if x.NumberOfBytes%PageSize4K != 0 {
			return fmt.Errorf("number_of_bytes %#x not a multiple of 4 KiB", x.NumberOfBytes)
		}
		if x.Flags&^1 != 0 {
			return fmt.Errorf("flags %#x has reserved bits set", x.Flags)
		}
		if x.Reserved != 0 {
			return fmt.Errorf("reserved field %#x is not zero", x.Reserved)
		}
		return v.checkMask(x.CompatibilityMask)
	case *ErrorRange:
		if err := checkGPA("gpa", x.GPA); err != nil {
			return err
		}
		if x.SizeBytes%PageSize4K != 0 {
			return fmt.Errorf("size_bytes %#x not a multiple of 4 KiB", x.SizeBytes)
		}
		return v.checkMask(x.CompatibilityMask)
	case *SNPIDBlock:
		if x.Reserved != [3]byte{} {
			return fmt.Errorf("reserved bytes %x are not zero", x.Reserved[:])
		}
		if x.AuthorKeyEnabled > 1 {
			return fmt.Errorf("author_key_enabled %d, must be 0 or 1", x.AuthorKeyEnabled)
		}
		return v.checkMask(x.CompatibilityMask)
	case *VBSMeasurement:
		return v.checkMask(x.CompatibilityMask)
	}
	if p, ok := parameterOf(h); ok {
		a := v.areas[p.ParameterAreaIndex]
		if a == nil {
			return fmt.Errorf("parameter area %d was never allocated", p.ParameterAreaIndex)
		}
		if a.inserted {
			return fmt.Errorf("parameter area %d used after its PARAMETER_INSERT", p.ParameterAreaIndex)
		}
		if uint64(p.ByteOffset) >= a.bytes {
			return fmt.Errorf("byte_offset %#x outside parameter area %d (%#x bytes)", p.ByteOffset, p.ParameterAreaIndex, a.bytes)
		}
		return nil
	}
	return nil
}

// ParameterArea returns the PARAMETER_AREA directive that allocates index,
// or nil.
func (f *File) ParameterArea(index uint32) *ParameterArea {
	for _, h := range f.Directives() {
		if a, ok := h.(*ParameterArea); ok && a.ParameterAreaIndex == index {
			return a
		}
	}
	return nil
}

// DataSize is the number of file-data bytes a header references: the page
// size for PAGE_DATA, 4 KiB for VP_CONTEXT, number_of_bytes for
// PARAMETER_AREA, 0 for the others.
func DataSize(h Header) int64 {
	switch x := h.(type) {
	case *PageData:
		return int64(x.PageSize())
	case *VPContext:
		return PageSize4K
	case *ParameterArea:
		return int64(x.NumberOfBytes)
	}
	return 0
}

func fileOffsetOf(h Header) uint32 {
	switch x := h.(type) {
	case *PageData:
		return x.FileOffset
	case *VPContext:
		return x.FileOffset
	case *ParameterArea:
		return x.FileOffset
	}
	return 0
}

// DataReader returns a reader of the file data a header references
// (PAGE_DATA, VP_CONTEXT or PARAMETER_AREA), DataSize(h) bytes long. A
// file_offset of 0 reads as zeros. Nothing is read until the caller reads.
func (f *File) DataReader(h Header) *io.SectionReader {
	n := DataSize(h)
	off := fileOffsetOf(h)
	if off == 0 {
		return io.NewSectionReader(zeroReader{}, 0, n)
	}
	return io.NewSectionReader(f.r, int64(off), n)
}

// ReadAt reads raw bytes of the underlying file at off, the way
// DataReader(h) does at h's file_offset but without allocating a reader:
// for callers that read the data of many headers, such as a run of pages
// whose file data is contiguous.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.r.ReadAt(p, off) }

// Data reads the file data a header references into memory (see
// DataReader); for a PAGE_DATA that is 4 KiB.
func (f *File) Data(h Header) ([]byte, error) {
	n := DataSize(h)
	if n > 1<<30 {
		return nil, fmt.Errorf("igvm: %v data of %d bytes too large to read at once", h.Type(), n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(f.DataReader(h), b); err != nil {
		return nil, fmt.Errorf("igvm: read %v data: %w", h.Type(), err)
	}
	return b, nil
}

// HasData reports whether the header carries file data (a nonzero
// file_offset).
func HasData(h Header) bool { return fileOffsetOf(h) != 0 }

type zeroReader struct{}

func (zeroReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}
