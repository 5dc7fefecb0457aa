package igvm

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// File-format constants.
const (
	Magic           = 0x4D564749 // "IGVM" little-endian
	FormatVersion1  = 1
	FixedHeaderSize = 24
	PageSize4K      = 4096
	PageSize2M      = 2 << 20

	// OptionalBit marks a variable header a loader may ignore when it does
	// not know the type.
	OptionalBit HeaderType = 1 << 31
)

// FixedHeader is the version 1 fixed header at the start of every IGVM file.
type FixedHeader struct {
	Magic                uint32
	FormatVersion        uint32
	VariableHeaderOffset uint32
	VariableHeaderSize   uint32
	TotalFileSize        uint32
	Checksum             uint32 // CRC-32/IEEE, see the package doc
}

// HeaderType is the type field of a variable header.
type HeaderType uint32

// Variable header types (igvm_defs IgvmVariableHeaderType).
const (
	TypeSupportedPlatform         HeaderType = 0x001
	TypeGuestPolicy               HeaderType = 0x101
	TypeRelocatableRegion         HeaderType = 0x102
	TypePageTableRelocationRegion HeaderType = 0x103
	TypeParameterArea             HeaderType = 0x301
	TypePageData                  HeaderType = 0x302
	TypeParameterInsert           HeaderType = 0x303
	TypeVPContext                 HeaderType = 0x304
	TypeRequiredMemory            HeaderType = 0x305
	TypeVPCountParameter          HeaderType = 0x307
	TypeSRAT                      HeaderType = 0x308
	TypeMADT                      HeaderType = 0x309
	TypeMMIORanges                HeaderType = 0x30A
	TypeSNPIDBlock                HeaderType = 0x30B
	TypeMemoryMap                 HeaderType = 0x30C
	TypeErrorRange                HeaderType = 0x30D
	TypeCommandLine               HeaderType = 0x30E
	TypeSLIT                      HeaderType = 0x30F
	TypePPTT                      HeaderType = 0x310
	TypeVBSMeasurement            HeaderType = 0x311
	TypeDeviceTree                HeaderType = 0x312
	TypeEnvironmentInfo           HeaderType = 0x313
)

var typeNames = map[HeaderType]string{
	TypeSupportedPlatform:         "SUPPORTED_PLATFORM",
	TypeGuestPolicy:               "GUEST_POLICY",
	TypeRelocatableRegion:         "RELOCATABLE_REGION",
	TypePageTableRelocationRegion: "PAGE_TABLE_RELOCATION_REGION",
	TypeParameterArea:             "PARAMETER_AREA",
	TypePageData:                  "PAGE_DATA",
	TypeParameterInsert:           "PARAMETER_INSERT",
	TypeVPContext:                 "VP_CONTEXT",
	TypeRequiredMemory:            "REQUIRED_MEMORY",
	TypeVPCountParameter:          "VP_COUNT_PARAMETER",
	TypeSRAT:                      "SRAT",
	TypeMADT:                      "MADT",
	TypeMMIORanges:                "MMIO_RANGES",
	TypeSNPIDBlock:                "SNP_ID_BLOCK",
	TypeMemoryMap:                 "MEMORY_MAP",
	TypeErrorRange:                "ERROR_RANGE",
	TypeCommandLine:               "COMMAND_LINE",
	TypeSLIT:                      "SLIT",
	TypePPTT:                      "PPTT",
	TypeVBSMeasurement:            "VBS_MEASUREMENT",
	TypeDeviceTree:                "DEVICE_TREE",
	TypeEnvironmentInfo:           "ENVIRONMENT_INFO",
}

// String returns the specification name without the IGVM_VHT_ prefix, e.g.
// "PAGE_DATA"; unknown types print as hex, optional ones with "optional".
func (t HeaderType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	if t&OptionalBit != 0 {
		if n, ok := typeNames[t&^OptionalBit]; ok {
			return n + "(optional)"
		}
		return fmt.Sprintf("UNKNOWN_%#x(optional)", uint32(t&^OptionalBit))
	}
	return fmt.Sprintf("UNKNOWN_%#x", uint32(t))
}

// Section is one of the three sections of the variable headers.
type Section int

// Sections, in the order they must appear.
const (
	SectionInvalid Section = iota
	SectionPlatform
	SectionInitialization
	SectionDirective
)

// String names the section.
func (s Section) String() string {
	switch s {
	case SectionPlatform:
		return "platform"
	case SectionInitialization:
		return "initialization"
	case SectionDirective:
		return "directive"
	}
	return "invalid"
}

// Section reports which section the type belongs to (the optional bit is
// ignored).
func (t HeaderType) Section() Section {
	v := t &^ OptionalBit
	switch {
	case v >= 0x1 && v <= 0x100:
		return SectionPlatform
	case v >= 0x101 && v <= 0x200:
		return SectionInitialization
	case v >= 0x301 && v <= 0x400:
		return SectionDirective
	}
	return SectionInvalid
}

// Header is one variable header: a pointer to one of the body structs of
// this package (*PageData, *VPContext, ...) or *Unknown.
type Header interface {
	// Type is the header's type field.
	Type() HeaderType
}

// Platform types of SupportedPlatform.
const (
	PlatformNative       = 0
	PlatformVSMIsolation = 1
	PlatformSEVSNP       = 2
	PlatformTDX          = 3
)

// PlatformName names a platform type.
func PlatformName(p uint8) string {
	switch p {
	case PlatformNative:
		return "NATIVE"
	case PlatformVSMIsolation:
		return "VSM_ISOLATION"
	case PlatformSEVSNP:
		return "SEV_SNP"
	case PlatformTDX:
		return "TDX"
	}
	return fmt.Sprintf("PLATFORM_%#x", p)
}

// SupportedPlatform (0x001, 16 bytes) declares a platform the file supports
// and the compatibility-mask bit that selects it.
type SupportedPlatform struct {
	CompatibilityMask uint32
	HighestVTL        uint8
	PlatformType      uint8
	PlatformVersion   uint16
	SharedGPABoundary uint64
}

// GuestPolicy (0x101, 16 bytes) is the platform's guest policy; for SEV-SNP
// see snp.GuestPolicy.
type GuestPolicy struct {
	Policy            uint64
	CompatibilityMask uint32
	Reserved          uint32
}

// Relocatable region flags.
const (
	RelocatableIsVTL2    = 0x1
	RelocatableApplyRIP  = 0x2
	RelocatableApplyGDTR = 0x4
)

// RelocatableRegion (0x102, 48 bytes) marks a region the loader may move.
type RelocatableRegion struct {
	CompatibilityMask    uint32
	VPIndex              uint16
	VTL                  uint8
	Flags                uint8
	RelocationAlignment  uint64
	RelocationRegionGPA  uint64
	RelocationRegionSize uint64
	MinimumRelocationGPA uint64
	MaximumRelocationGPA uint64
}

// PageTableRelocation (0x103, 32 bytes) is the relocatable page-table region.
type PageTableRelocation struct {
	CompatibilityMask uint32
	VPIndex           uint16
	VTL               uint8
	Reserved          uint8
	GPA               uint64
	Size              uint64
	UsedSize          uint64
}

// ParameterArea (0x301, 16 bytes) declares a parameter area; FileOffset 0
// means its initial contents are zero.
type ParameterArea struct {
	NumberOfBytes      uint64
	ParameterAreaIndex uint32
	FileOffset         uint32
}

// PageData flags.
const (
	PageFlag2MB        = 1 << 0
	PageFlagUnmeasured = 1 << 1
	PageFlagShared     = 1 << 2
	pageFlagsKnown     = PageFlag2MB | PageFlagUnmeasured | PageFlagShared
)

// PageDataType is the data_type of a PageData header.
type PageDataType uint16

// Page data types.
const (
	DataNormal  PageDataType = 0
	DataSecrets PageDataType = 1
	DataCPUID   PageDataType = 2
	DataCPUIDXF PageDataType = 3
)

// String returns the specification name, e.g. "CPUID_DATA".
func (d PageDataType) String() string {
	switch d {
	case DataNormal:
		return "NORMAL"
	case DataSecrets:
		return "SECRETS"
	case DataCPUID:
		return "CPUID_DATA"
	case DataCPUIDXF:
		return "CPUID_XF"
	}
	return fmt.Sprintf("DATA_TYPE_%#x", uint16(d))
}

// PageFlagNames names the bits of a PageData's flags, "2MB|UNMEASURED|SHARED"
// (bits without a name in hex), "" for none.
func PageFlagNames(fl uint32) string {
	var s []string
	if fl&PageFlag2MB != 0 {
		s = append(s, "2MB")
	}
	if fl&PageFlagUnmeasured != 0 {
		s = append(s, "UNMEASURED")
	}
	if fl&PageFlagShared != 0 {
		s = append(s, "SHARED")
	}
	if rest := fl &^ (PageFlag2MB | PageFlagUnmeasured | PageFlagShared); rest != 0 {
		s = append(s, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(s, "|")
}

// PageData (0x302, 24 bytes) loads one page; FileOffset 0 means a page of
// zeros. The file data is 4 KiB, or 2 MiB with PageFlag2MB.
type PageData struct {
	GPA               uint64
	CompatibilityMask uint32
	FileOffset        uint32
	Flags             uint32
	DataType          PageDataType
	Reserved          uint16
}

// PageSize is the size of the page the header loads.
func (p *PageData) PageSize() uint64 {
	if p.Flags&PageFlag2MB != 0 {
		return PageSize2M
	}
	return PageSize4K
}

// ParameterInsert (0x303, 16 bytes) inserts a parameter area at GPA as
// unmeasured pages.
type ParameterInsert struct {
	GPA                uint64
	CompatibilityMask  uint32
	ParameterAreaIndex uint32
}

// VPContext (0x304, 20 bytes) is a vCPU's initial state; for SEV-SNP the
// file data is a 4 KiB VMSA page placed at GPA.
type VPContext struct {
	GPA               uint64
	CompatibilityMask uint32
	FileOffset        uint32
	VPIndex           uint16
	Reserved          uint16
}

// RequiredMemory (0x305, 24 bytes) is memory the guest needs present.
type RequiredMemory struct {
	GPA               uint64
	CompatibilityMask uint32
	NumberOfBytes     uint32
	Flags             uint32 // bit 0: VTL2 protectable
	Reserved          uint32
}

// Parameter is the body (8 bytes) shared by the parameter headers: where in
// which parameter area the loader deposits a value.
type Parameter struct {
	ParameterAreaIndex uint32
	ByteOffset         uint32
}

// Parameter headers (each an 8-byte Parameter body).
type (
	VPCountParameter Parameter // 0x307: u32 vCPU count
	SRAT             Parameter // 0x308: ACPI SRAT
	MADT             Parameter // 0x309: ACPI MADT
	MMIORanges       Parameter // 0x30A: two MemoryRange entries
	MemoryMap        Parameter // 0x30C: array of MemoryMapEntry
	CommandLine      Parameter // 0x30E: NUL-terminated command line
	SLIT             Parameter // 0x30F: ACPI SLIT
	PPTT             Parameter // 0x310: ACPI PPTT
	DeviceTree       Parameter // 0x312: flattened device tree
	EnvironmentInfo  Parameter // 0x313: u32 environment bits
)

// ErrorRange (0x30D, 16 bytes) is a host-visible range for error reports.
type ErrorRange struct {
	GPA               uint64
	CompatibilityMask uint32
	SizeBytes         uint32
}

// SNPIDBlockPublicKey is an ECDSA public key in the IGVM layout: unlike
// the SEV-SNP ABI's (snp.PublicKey), a reserved u32 follows the curve.
type SNPIDBlockPublicKey struct {
	Curve    uint32 // 2 = P-384
	Reserved uint32
	QX       [72]byte // little-endian, zero padded
	QY       [72]byte
}

// SNPIDBlock (0x30B, 696 bytes) is the SEV-SNP ID block and its ID
// authentication information, without the policy (the GUEST_POLICY header
// holds it). IDBlock and IDAuth convert it to the SEV-SNP ABI structures of
// pkg/snp, which sign and verify them; NewSNPIDBlock converts back.
type SNPIDBlock struct {
	CompatibilityMask  uint32
	AuthorKeyEnabled   uint8
	Reserved           [3]byte
	LD                 [48]byte // expected launch digest
	FamilyID           [16]byte
	ImageID            [16]byte
	Version            uint32
	GuestSVN           uint32
	IDKeyAlgorithm     uint32
	AuthorKeyAlgorithm uint32
	IDKeySignature     snp.Signature // over the ID block, by the ID key
	IDPublicKey        SNPIDBlockPublicKey
	AuthorKeySignature snp.Signature // over the ID key, by the author key
	AuthorPublicKey    SNPIDBlockPublicKey
}

// NewSNPIDBlock returns the SNP_ID_BLOCK header for compatibility mask
// mask that carries the ID block b (whose policy goes to the GUEST_POLICY
// header instead) signed as a says.
func NewSNPIDBlock(mask uint32, b *snp.IDBlock, a *snp.IDAuth) *SNPIDBlock {
	h := &SNPIDBlock{
		CompatibilityMask:  mask,
		LD:                 b.Digest,
		FamilyID:           b.FamilyID,
		ImageID:            b.ImageID,
		Version:            b.Version,
		GuestSVN:           b.GuestSVN,
		IDKeyAlgorithm:     a.IDKeyAlgorithm,
		IDKeySignature:     a.BlockSignature,
		IDPublicKey:        SNPIDBlockPublicKey{Curve: a.IDKey.Curve, QX: a.IDKey.QX, QY: a.IDKey.QY},
		AuthorKeyAlgorithm: a.AuthorKeyAlgorithm,
	}
	if a.HasAuthorKey() {
		h.AuthorKeyEnabled = 1
		h.AuthorKeySignature = a.IDKeySignature
		h.AuthorPublicKey = SNPIDBlockPublicKey{Curve: a.AuthorKey.Curve, QX: a.AuthorKey.QX, QY: a.AuthorKey.QY}
	}
	return h
}

// IDBlock returns the ID block the header stands for, with the policy of
// the file's GUEST_POLICY header.
func (h *SNPIDBlock) IDBlock(policy snp.GuestPolicy) *snp.IDBlock {
	return &snp.IDBlock{Digest: h.LD, FamilyID: h.FamilyID, ImageID: h.ImageID, Version: h.Version, GuestSVN: h.GuestSVN, Policy: policy}
}

// IDAuth returns the ID authentication information the header carries
// (the author key only when author_key_enabled is set). Check and Verify
// it with its methods.
func (h *SNPIDBlock) IDAuth() *snp.IDAuth {
	a := &snp.IDAuth{
		IDKeyAlgorithm: h.IDKeyAlgorithm,
		BlockSignature: h.IDKeySignature,
		IDKey:          snp.PublicKey{Curve: h.IDPublicKey.Curve, QX: h.IDPublicKey.QX, QY: h.IDPublicKey.QY},
	}
	if h.AuthorKeyEnabled != 0 {
		a.AuthorKeyAlgorithm = h.AuthorKeyAlgorithm
		a.IDKeySignature = h.AuthorKeySignature
		a.AuthorKey = snp.PublicKey{Curve: h.AuthorPublicKey.Curve, QX: h.AuthorPublicKey.QX, QY: h.AuthorPublicKey.QY}
	}
	return a
}

// VBSMeasurement (0x311, 864 bytes) is Hyper-V VBS's measurement block.
type VBSMeasurement struct {
	CompatibilityMask     uint32
	Version               uint32
	ProductID             uint32
	ModuleID              uint32
	SecurityVersion       uint32
	PolicyFlags           uint32
	BootDigestAlgo        uint32
	SigningAlgo           uint32
	BootMeasurementDigest [64]byte
	Signature             [256]byte
	PublicKey             [512]byte
}

// MemoryMapEntry is one 24-byte entry a loader writes for MemoryMap.
type MemoryMapEntry struct {
	StartingGPAPageNumber uint64
	NumberOfPages         uint64
	EntryType             uint16 // 0 memory, 1 platform reserved, 2 persistent, 3 VTL2 protectable
	Flags                 uint16
	Reserved              uint32
}

// MemoryRange is one 16-byte entry of the MMIO ranges parameter.
type MemoryRange struct {
	StartingGPAPageNumber uint64
	NumberOfPages         uint64
}

// Unknown is a header of a type this package does not know, kept verbatim;
// only optional headers (OptionalBit set) may be unknown.
type Unknown struct {
	HeaderType HeaderType
	Body       []byte
}

// Type methods.
func (*SupportedPlatform) Type() HeaderType   { return TypeSupportedPlatform }
func (*GuestPolicy) Type() HeaderType         { return TypeGuestPolicy }
func (*RelocatableRegion) Type() HeaderType   { return TypeRelocatableRegion }
func (*PageTableRelocation) Type() HeaderType { return TypePageTableRelocationRegion }
func (*ParameterArea) Type() HeaderType       { return TypeParameterArea }
func (*PageData) Type() HeaderType            { return TypePageData }
func (*ParameterInsert) Type() HeaderType     { return TypeParameterInsert }
func (*VPContext) Type() HeaderType           { return TypeVPContext }
func (*RequiredMemory) Type() HeaderType      { return TypeRequiredMemory }
func (*VPCountParameter) Type() HeaderType    { return TypeVPCountParameter }
func (*SRAT) Type() HeaderType                { return TypeSRAT }
func (*MADT) Type() HeaderType                { return TypeMADT }
func (*MMIORanges) Type() HeaderType          { return TypeMMIORanges }
func (*SNPIDBlock) Type() HeaderType          { return TypeSNPIDBlock }
func (*MemoryMap) Type() HeaderType           { return TypeMemoryMap }
func (*ErrorRange) Type() HeaderType          { return TypeErrorRange }
func (*CommandLine) Type() HeaderType         { return TypeCommandLine }
func (*SLIT) Type() HeaderType                { return TypeSLIT }
func (*PPTT) Type() HeaderType                { return TypePPTT }
func (*VBSMeasurement) Type() HeaderType      { return TypeVBSMeasurement }
func (*DeviceTree) Type() HeaderType          { return TypeDeviceTree }
func (*EnvironmentInfo) Type() HeaderType     { return TypeEnvironmentInfo }
func (u *Unknown) Type() HeaderType           { return u.HeaderType }

// newBody returns a fresh body struct for a known type, or nil.
func newBody(t HeaderType) Header {
	switch t {
	case TypeSupportedPlatform:
		return new(SupportedPlatform)
	case TypeGuestPolicy:
		return new(GuestPolicy)
	case TypeRelocatableRegion:
		return new(RelocatableRegion)
	case TypePageTableRelocationRegion:
		return new(PageTableRelocation)
	case TypeParameterArea:
		return new(ParameterArea)
	case TypePageData:
		return new(PageData)
	case TypeParameterInsert:
		return new(ParameterInsert)
	case TypeVPContext:
		return new(VPContext)
	case TypeRequiredMemory:
		return new(RequiredMemory)
	case TypeVPCountParameter:
		return new(VPCountParameter)
	case TypeSRAT:
		return new(SRAT)
	case TypeMADT:
		return new(MADT)
	case TypeMMIORanges:
		return new(MMIORanges)
	case TypeSNPIDBlock:
		return new(SNPIDBlock)
	case TypeMemoryMap:
		return new(MemoryMap)
	case TypeErrorRange:
		return new(ErrorRange)
	case TypeCommandLine:
		return new(CommandLine)
	case TypeSLIT:
		return new(SLIT)
	case TypePPTT:
		return new(PPTT)
	case TypeVBSMeasurement:
		return new(VBSMeasurement)
	case TypeDeviceTree:
		return new(DeviceTree)
	case TypeEnvironmentInfo:
		return new(EnvironmentInfo)
	}
	return nil
}

// bodySizes holds the exact body length of each known type.
var bodySizes = func() map[HeaderType]int {
	m := make(map[HeaderType]int, len(typeNames))
	for t := range typeNames {
		m[t] = binary.Size(newBody(t))
	}
	return m
}()

// BodySize returns the exact body length of a known header type, and false
// for an unknown type.
func BodySize(t HeaderType) (int, bool) {
	n, ok := bodySizes[t]
	return n, ok
}

// parameterOf returns the Parameter body of a parameter-usage header.
func parameterOf(h Header) (Parameter, bool) {
	switch p := h.(type) {
	case *VPCountParameter:
		return Parameter(*p), true
	case *SRAT:
		return Parameter(*p), true
	case *MADT:
		return Parameter(*p), true
	case *MMIORanges:
		return Parameter(*p), true
	case *MemoryMap:
		return Parameter(*p), true
	case *CommandLine:
		return Parameter(*p), true
	case *SLIT:
		return Parameter(*p), true
	case *PPTT:
		return Parameter(*p), true
	case *DeviceTree:
		return Parameter(*p), true
	case *EnvironmentInfo:
		return Parameter(*p), true
	}
	return Parameter{}, false
}

// ParameterOf returns the parameter area index and byte offset of a
// parameter-usage header (VP_COUNT_PARAMETER, MEMORY_MAP, COMMAND_LINE, ...).
func ParameterOf(h Header) (Parameter, bool) { return parameterOf(h) }

// encodeBody returns the little-endian body bytes of h.
func encodeBody(h Header) ([]byte, error) { return appendBody(nil, h, fileOffsetOf(h)) }

// appendBody appends the little-endian body of h to dst, with file_offset
// (of PAGE_DATA, VP_CONTEXT and PARAMETER_AREA) set to fileOff. The common
// types are encoded by hand: no reflection and no allocation per page.
func appendBody(dst []byte, h Header, fileOff uint32) ([]byte, error) {
	le := binary.LittleEndian
	switch x := h.(type) {
	case *Unknown:
		return append(dst, x.Body...), nil
	case *PageData:
		dst = le.AppendUint64(dst, x.GPA)
		dst = le.AppendUint32(dst, x.CompatibilityMask)
		dst = le.AppendUint32(dst, fileOff)
		dst = le.AppendUint32(dst, x.Flags)
		dst = le.AppendUint16(dst, uint16(x.DataType))
		return le.AppendUint16(dst, x.Reserved), nil
	case *VPContext:
		dst = le.AppendUint64(dst, x.GPA)
		dst = le.AppendUint32(dst, x.CompatibilityMask)
		dst = le.AppendUint32(dst, fileOff)
		dst = le.AppendUint16(dst, x.VPIndex)
		return le.AppendUint16(dst, x.Reserved), nil
	case *ParameterArea:
		dst = le.AppendUint64(dst, x.NumberOfBytes)
		dst = le.AppendUint32(dst, x.ParameterAreaIndex)
		return le.AppendUint32(dst, fileOff), nil
	case *ParameterInsert:
		dst = le.AppendUint64(dst, x.GPA)
		dst = le.AppendUint32(dst, x.CompatibilityMask)
		return le.AppendUint32(dst, x.ParameterAreaIndex), nil
	}
	b, err := binary.Append(dst, le, h)
	if err != nil {
		return nil, fmt.Errorf("igvm: encode %v: %w", h.Type(), err)
	}
	return b, nil
}

// bodyDecoder decodes header bodies without reflection (binary.Decode
// costs about 0.3 µs a header, which shows when a file has 16,000 pages of
// kernel and initrd) and allocates PAGE_DATA bodies, by far the most
// common, in blocks.
type bodyDecoder struct {
	pages []PageData
}

// pageBlock is the number of PAGE_DATA bodies allocated at once (24 KiB).
const pageBlock = 1024

// decode returns the body of type t; len(body) must be bodySizes[t].
// Types that are rare in files fall back to binary.Decode.
func (d *bodyDecoder) decode(t HeaderType, body []byte) (Header, error) {
	le := binary.LittleEndian
	switch t {
	case TypePageData:
		if len(d.pages) == cap(d.pages) {
			d.pages = make([]PageData, 0, pageBlock)
		}
		d.pages = append(d.pages, PageData{
			GPA:               le.Uint64(body[0:]),
			CompatibilityMask: le.Uint32(body[8:]),
			FileOffset:        le.Uint32(body[12:]),
			Flags:             le.Uint32(body[16:]),
			DataType:          PageDataType(le.Uint16(body[20:])),
			Reserved:          le.Uint16(body[22:]),
		})
		return &d.pages[len(d.pages)-1], nil
	case TypeSupportedPlatform:
		return &SupportedPlatform{
			CompatibilityMask: le.Uint32(body[0:]),
			HighestVTL:        body[4],
			PlatformType:      body[5],
			PlatformVersion:   le.Uint16(body[6:]),
			SharedGPABoundary: le.Uint64(body[8:]),
		}, nil
	case TypeGuestPolicy:
		return &GuestPolicy{Policy: le.Uint64(body[0:]), CompatibilityMask: le.Uint32(body[8:]), Reserved: le.Uint32(body[12:])}, nil
	case TypeParameterArea:
		return &ParameterArea{NumberOfBytes: le.Uint64(body[0:]), ParameterAreaIndex: le.Uint32(body[8:]), FileOffset: le.Uint32(body[12:])}, nil
	case TypeParameterInsert:
		return &ParameterInsert{GPA: le.Uint64(body[0:]), CompatibilityMask: le.Uint32(body[8:]), ParameterAreaIndex: le.Uint32(body[12:])}, nil
	case TypeVPContext:
		return &VPContext{
			GPA:               le.Uint64(body[0:]),
			CompatibilityMask: le.Uint32(body[8:]),
			FileOffset:        le.Uint32(body[12:]),
			VPIndex:           le.Uint16(body[16:]),
			Reserved:          le.Uint16(body[18:]),
		}, nil
	}
	h := newBody(t)
	if h == nil {
		return nil, fmt.Errorf("unknown header type %#x", uint32(t))
	}
	if _, err := binary.Decode(body, le, h); err != nil {
		return nil, err
	}
	return h, nil
}
