// Package snp holds the AMD SEV-SNP ABI data structures that more than one
// area of imagebuilder needs: the VMSA (the SEV-ES save area that holds a
// vCPU's initial state), the page types of SNP_LAUNCH_UPDATE and the guest
// policy bits. It only describes and encodes; building images (pkg/igvm) and
// computing launch digests (pkg/measure) happen elsewhere.
//
// Layouts follow the AMD64 Architecture Programmer's Manual vol. 2, table
// B-4 ("VMSA layout, state save area for SEV-ES"), as Linux declares it in
// arch/x86/include/asm/svm.h (struct sev_es_save_area); all fields are
// little-endian.
package snp

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// PageSize is the size of an SNP guest page.
const PageSize = 4096

// PageType is the PAGE_TYPE field of SNP_LAUNCH_UPDATE and of the PAGE_INFO
// record that extends the launch digest.
type PageType uint8

// Page types of the SEV-SNP firmware ABI (table "PAGE_TYPE field encodings").
const (
	PageNormal     PageType = 0x01
	PageVMSA       PageType = 0x02
	PageZero       PageType = 0x03
	PageUnmeasured PageType = 0x04
	PageSecrets    PageType = 0x05
	PageCPUID      PageType = 0x06
)

// String returns the ABI name of the page type.
func (t PageType) String() string {
	switch t {
	case PageNormal:
		return "NORMAL"
	case PageVMSA:
		return "VMSA"
	case PageZero:
		return "ZERO"
	case PageUnmeasured:
		return "UNMEASURED"
	case PageSecrets:
		return "SECRETS"
	case PageCPUID:
		return "CPUID"
	}
	return fmt.Sprintf("PageType(%#x)", uint8(t))
}

// Segment is a segment register in the save area (struct vmcb_seg).
type Segment struct {
	Selector uint16
	Attrib   uint16
	Limit    uint32
	Base     uint64
}

// VMSA is the SEV-ES/SEV-SNP save area, the first 0x570 bytes of the 4 KiB
// VMSA page (up to and including the x87/XMM register file; the YMM and
// later state is zero at launch). Field offsets are given in comments.
type VMSA struct {
	ES, CS, SS, DS, FS, GS Segment // 0x000..0x05f
	GDTR, LDTR, IDTR, TR   Segment // 0x060..0x09f
	VMPL0SSP               uint64  // 0x0a0
	VMPL1SSP               uint64  // 0x0a8
	VMPL2SSP               uint64  // 0x0b0
	VMPL3SSP               uint64  // 0x0b8
	UCET                   uint64  // 0x0c0
	_                      [2]byte // 0x0c8
	VMPL                   uint8   // 0x0ca
	CPL                    uint8   // 0x0cb
	_                      [4]byte // 0x0cc
	EFER                   uint64  // 0x0d0
	_                      [104]byte
	XSS                    uint64 // 0x140
	CR4                    uint64 // 0x148
	CR3                    uint64 // 0x150
	CR0                    uint64 // 0x158
	DR7                    uint64 // 0x160
	DR6                    uint64 // 0x168
	RFLAGS                 uint64 // 0x170
	RIP                    uint64 // 0x178
	DR0, DR1, DR2, DR3     uint64 // 0x180..0x19f
	DR0AddrMask            uint64 // 0x1a0
	DR1AddrMask            uint64 // 0x1a8
	DR2AddrMask            uint64 // 0x1b0
	DR3AddrMask            uint64 // 0x1b8
	_                      [24]byte
	RSP                    uint64 // 0x1d8
	SCET                   uint64 // 0x1e0
	SSP                    uint64 // 0x1e8
	ISSTAddr               uint64 // 0x1f0
	RAX                    uint64 // 0x1f8
	STAR                   uint64 // 0x200
	LSTAR                  uint64 // 0x208
	CSTAR                  uint64 // 0x210
	SFMASK                 uint64 // 0x218
	KernelGSBase           uint64 // 0x220
	SysenterCS             uint64 // 0x228
	SysenterESP            uint64 // 0x230
	SysenterEIP            uint64 // 0x238
	CR2                    uint64 // 0x240
	_                      [32]byte
	GPAT                   uint64 // 0x268
	DebugCtl               uint64 // 0x270
	BrFrom                 uint64 // 0x278
	BrTo                   uint64 // 0x280
	LastExcpFrom           uint64 // 0x288
	LastExcpTo             uint64 // 0x290
	_                      [80]byte
	PKRU                   uint32 // 0x2e8
	TSCAux                 uint32 // 0x2ec
	_                      [24]byte
	RCX                    uint64 // 0x308
	RDX                    uint64 // 0x310
	RBX                    uint64 // 0x318
	_                      uint64 // 0x320
	RBP                    uint64 // 0x328
	RSI                    uint64 // 0x330
	RDI                    uint64 // 0x338
	R8, R9, R10, R11       uint64 // 0x340..0x35f
	R12, R13, R14, R15     uint64 // 0x360..0x37f
	_                      [16]byte
	GuestExitInfo1         uint64 // 0x390
	GuestExitInfo2         uint64 // 0x398
	GuestExitIntInfo       uint64 // 0x3a0
	GuestNRIP              uint64 // 0x3a8
	SEVFeatures            uint64 // 0x3b0
	VIntrCtrl              uint64 // 0x3b8
	GuestExitCode          uint64 // 0x3c0
	VirtualTOM             uint64 // 0x3c8
	TLBID                  uint64 // 0x3d0
	PCPUID                 uint64 // 0x3d8
	EventInj               uint64 // 0x3e0
	XCR0                   uint64 // 0x3e8
	_                      [16]byte
	X87DP                  uint64    // 0x400
	MXCSR                  uint32    // 0x408
	X87FTW                 uint16    // 0x40c
	X87FSW                 uint16    // 0x40e
	X87FCW                 uint16    // 0x410
	X87FOP                 uint16    // 0x412
	X87DS                  uint16    // 0x414
	X87CS                  uint16    // 0x416
	X87RIP                 uint64    // 0x418
	FPRegX87               [80]byte  // 0x420
	FPRegXMM               [256]byte // 0x470
}

// vmsaStateSize is the number of bytes of the page the VMSA struct covers.
var vmsaStateSize = binary.Size(VMSA{})

// Marshal encodes the save area into a full 4 KiB VMSA page (the rest zero).
func (v *VMSA) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(PageSize)
	// Writing a fixed-size struct to a bytes.Buffer cannot fail.
	_ = binary.Write(&b, binary.LittleEndian, v)
	page := make([]byte, PageSize)
	copy(page, b.Bytes())
	return page
}

// UnmarshalVMSA decodes a VMSA page. The page must be at least as long as
// the save area; bytes after it are ignored.
func UnmarshalVMSA(page []byte) (*VMSA, error) {
	if len(page) < vmsaStateSize {
		return nil, fmt.Errorf("snp: VMSA page of %d bytes, want at least %d", len(page), vmsaStateSize)
	}
	v := new(VMSA)
	if err := binary.Read(bytes.NewReader(page[:vmsaStateSize]), binary.LittleEndian, v); err != nil {
		return nil, fmt.Errorf("snp: VMSA: %w", err)
	}
	return v, nil
}
