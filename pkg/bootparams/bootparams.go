// Package bootparams is the x86 Linux boot protocol as Go structs
// (Documentation/arch/x86/boot.rst, arch/x86/include/uapi/asm/bootparam.h):
// the setup header at offset 0x1f1 of a bzImage, the boot_params "zero
// page" a loader hands the kernel (which embeds the setup header), and its
// e820 memory map. It is the one place that knows their byte offsets: the
// IGVM layout (pkg/igvm/linuxboot) writes the zero page with it, igvm
// inspect and measure --explain read it back.
//
// Marshal and Unmarshal are exact inverses on every 4096-byte page: every
// byte, padding included, belongs to a field, so a zero page read from a
// file and written again is identical, and FieldName names the field any
// byte offset belongs to.
package bootparams

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
)

// Offsets and sizes.
const (
	// Size is the size of boot_params (one page).
	Size = 4096
	// SetupHeaderOffset is where the setup header starts, in a bzImage
	// file and in boot_params alike.
	SetupHeaderOffset = 0x1f1
	// SetupHeaderSize is the setup header up to and including
	// kernel_info_offset (protocol 2.15): 0x1f1 to 0x26c.
	SetupHeaderSize = 0x7b
	// E820Max is the number of entries of boot_params' e820 table.
	E820Max = 128
	// E820EntrySize is the size of one e820 entry.
	E820EntrySize = 20

	// HeaderMagic is the setup header's "HdrS" signature at 0x202.
	HeaderMagic = 0x53726448
	// BootFlagMagic is the boot_flag at 0x1fe.
	BootFlagMagic = 0xaa55
)

// Setup header flags.
const (
	LoadedHigh      = 1 << 0 // loadflags: protected-mode code at 0x100000
	XLFKernel64     = 1 << 0 // xloadflags: 64-bit entry point at +0x200
	XLFCanBeAbove4G = 1 << 1 // xloadflags: kernel and boot structures may be above 4 GiB
)

// e820 types (arch/x86/include/asm/e820/types.h).
const (
	E820RAM          = 1
	E820Reserved     = 2
	E820ACPI         = 3
	E820NVS          = 4
	E820Unusable     = 5
	E820PMEM         = 7
	E820PRAM         = 12
	E820SoftReserved = 0xefffffff
)

// SetupHeader is struct setup_header. Field comments give the offset in
// the bzImage file and in boot_params; the field tags the kernel's names.
type SetupHeader struct {
	SetupSects          uint8  `field:"setup_sects"`           // 0x1f1
	RootFlags           uint16 `field:"root_flags"`            // 0x1f2
	SysSize             uint32 `field:"syssize"`               // 0x1f4, protected-mode code in 16-byte units
	RAMSize             uint16 `field:"ram_size"`              // 0x1f8
	VidMode             uint16 `field:"vid_mode"`              // 0x1fa
	RootDev             uint16 `field:"root_dev"`              // 0x1fc
	BootFlag            uint16 `field:"boot_flag"`             // 0x1fe, 0xAA55
	Jump                uint16 `field:"jump"`                  // 0x200
	Header              uint32 `field:"header"`                // 0x202, "HdrS"
	Version             uint16 `field:"version"`               // 0x206, boot protocol version
	RealmodeSwitch      uint32 `field:"realmode_swtch"`        // 0x208
	StartSysSeg         uint16 `field:"start_sys_seg"`         // 0x20c
	KernelVersion       uint16 `field:"kernel_version"`        // 0x20e
	TypeOfLoader        uint8  `field:"type_of_loader"`        // 0x210
	LoadFlags           uint8  `field:"loadflags"`             // 0x211
	SetupMoveSize       uint16 `field:"setup_move_size"`       // 0x212
	Code32Start         uint32 `field:"code32_start"`          // 0x214
	RamdiskImage        uint32 `field:"ramdisk_image"`         // 0x218
	RamdiskSize         uint32 `field:"ramdisk_size"`          // 0x21c
	BootsectKludge      uint32 `field:"bootsect_kludge"`       // 0x220
	HeapEndPtr          uint16 `field:"heap_end_ptr"`          // 0x224
	ExtLoaderVer        uint8  `field:"ext_loader_ver"`        // 0x226
	ExtLoaderType       uint8  `field:"ext_loader_type"`       // 0x227
	CmdLinePtr          uint32 `field:"cmd_line_ptr"`          // 0x228
	InitrdAddrMax       uint32 `field:"initrd_addr_max"`       // 0x22c, highest address the initrd may occupy
	KernelAlignment     uint32 `field:"kernel_alignment"`      // 0x230
	RelocatableKernel   uint8  `field:"relocatable_kernel"`    // 0x234
	MinAlignment        uint8  `field:"min_alignment"`         // 0x235
	XLoadFlags          uint16 `field:"xloadflags"`            // 0x236
	CmdlineSize         uint32 `field:"cmdline_size"`          // 0x238, longest command line without the NUL
	HardwareSubarch     uint32 `field:"hardware_subarch"`      // 0x23c
	HardwareSubarchData uint64 `field:"hardware_subarch_data"` // 0x240
	PayloadOffset       uint32 `field:"payload_offset"`        // 0x248
	PayloadLength       uint32 `field:"payload_length"`        // 0x24c
	SetupData           uint64 `field:"setup_data"`            // 0x250
	PrefAddress         uint64 `field:"pref_address"`          // 0x258, preferred load address
	InitSize            uint32 `field:"init_size"`             // 0x260, memory the kernel needs from its load address
	HandoverOffset      uint32 `field:"handover_offset"`       // 0x264
	KernelInfoOffset    uint32 `field:"kernel_info_offset"`    // 0x268
}

// E820Entry is one range of the e820 memory map (struct boot_e820_entry,
// 20 bytes, packed). In JSON the address and size are hex numbers.
type E820Entry struct {
	Addr uint64 `field:"addr"`
	Size uint64 `field:"size"`
	Type uint32 `field:"type"`
}

// BootParams is struct boot_params, the zero page. Padding is kept in
// Pad fields so that Marshal(Unmarshal(page)) == page.
type BootParams struct {
	ScreenInfo          [0x40]byte          `field:"screen_info"`             // 0x000
	APMBIOSInfo         [0x14]byte          `field:"apm_bios_info"`           // 0x040
	Pad2                [4]byte             `field:"_pad2"`                   // 0x054
	TbootAddr           uint64              `field:"tboot_addr"`              // 0x058
	ISTInfo             [0x10]byte          `field:"ist_info"`                // 0x060
	ACPIRSDPAddr        uint64              `field:"acpi_rsdp_addr"`          // 0x070
	Pad3                [8]byte             `field:"_pad3"`                   // 0x078
	HD0Info             [16]byte            `field:"hd0_info"`                // 0x080
	HD1Info             [16]byte            `field:"hd1_info"`                // 0x090
	SysDescTable        [16]byte            `field:"sys_desc_table"`          // 0x0a0
	OLPCOFWHeader       [16]byte            `field:"olpc_ofw_header"`         // 0x0b0
	ExtRamdiskImage     uint32              `field:"ext_ramdisk_image"`       // 0x0c0
	ExtRamdiskSize      uint32              `field:"ext_ramdisk_size"`        // 0x0c4
	ExtCmdLinePtr       uint32              `field:"ext_cmd_line_ptr"`        // 0x0c8
	Pad4                [112]byte           `field:"_pad4"`                   // 0x0cc
	CCBlobAddress       uint32              `field:"cc_blob_address"`         // 0x13c
	EDIDInfo            [128]byte           `field:"edid_info"`               // 0x140
	EFIInfo             [32]byte            `field:"efi_info"`                // 0x1c0
	AltMemK             uint32              `field:"alt_mem_k"`               // 0x1e0
	Scratch             uint32              `field:"scratch"`                 // 0x1e4
	E820Entries         uint8               `field:"e820_entries"`            // 0x1e8
	EDDBufEntries       uint8               `field:"eddbuf_entries"`          // 0x1e9
	EDDMBRSigBufEntries uint8               `field:"edd_mbr_sig_buf_entries"` // 0x1ea
	KbdStatus           uint8               `field:"kbd_status"`              // 0x1eb
	SecureBoot          uint8               `field:"secure_boot"`             // 0x1ec
	Pad5                [2]byte             `field:"_pad5"`                   // 0x1ed
	Sentinel            uint8               `field:"sentinel"`                // 0x1ef
	Pad6                [1]byte             `field:"_pad6"`                   // 0x1f0
	Hdr                 SetupHeader         `field:"hdr"`                     // 0x1f1
	Pad7                [0x290 - 0x26c]byte `field:"_pad7"`                   // 0x26c
	EDDMBRSigBuffer     [16]uint32          `field:"edd_mbr_sig_buffer"`      // 0x290
	E820Table           [E820Max]E820Entry  `field:"e820_table"`              // 0x2d0
	Pad8                [48]byte            `field:"_pad8"`                   // 0xcd0
	EDDBuf              [0x1ec]byte         `field:"eddbuf"`                  // 0xd00
	Pad9                [276]byte           `field:"_pad9"`                   // 0xeec
}

// Marshal encodes the zero page (Size bytes).
func (bp *BootParams) Marshal() []byte {
	b, err := binary.Append(make([]byte, 0, Size), binary.LittleEndian, bp)
	if err != nil { // a fixed-size struct always encodes
		panic("bootparams: " + err.Error())
	}
	return b
}

// Unmarshal decodes a zero page; b must be at least Size bytes (the rest
// is ignored).
func Unmarshal(b []byte) (*BootParams, error) {
	if len(b) < Size {
		return nil, fmt.Errorf("bootparams: %d bytes, a zero page has %d", len(b), Size)
	}
	bp := new(BootParams)
	if _, err := binary.Decode(b[:Size], binary.LittleEndian, bp); err != nil {
		return nil, fmt.Errorf("bootparams: %w", err)
	}
	return bp, nil
}

// Marshal encodes the setup header (SetupHeaderSize bytes).
func (h *SetupHeader) Marshal() []byte {
	b, err := binary.Append(make([]byte, 0, SetupHeaderSize), binary.LittleEndian, h)
	if err != nil { // a fixed-size struct always encodes
		panic("bootparams: " + err.Error())
	}
	return b
}

// UnmarshalSetupHeader decodes the setup header from the SetupHeaderSize
// bytes at the start of b (for a bzImage file, b starts at
// SetupHeaderOffset). It does not check the header; see Check.
func UnmarshalSetupHeader(b []byte) (*SetupHeader, error) {
	if len(b) < SetupHeaderSize {
		return nil, fmt.Errorf("bootparams: %d bytes, a setup header has %d", len(b), SetupHeaderSize)
	}
	h := new(SetupHeader)
	if _, err := binary.Decode(b[:SetupHeaderSize], binary.LittleEndian, h); err != nil {
		return nil, fmt.Errorf("bootparams: %w", err)
	}
	return h, nil
}

// HasMagic reports whether the header carries the "HdrS" signature of a
// boot protocol 2.00+ kernel.
func (h *SetupHeader) HasMagic() bool { return h.Header == HeaderMagic }

// Protocol formats the boot protocol version, e.g. "2.15".
func (h *SetupHeader) Protocol() string { return ProtocolString(h.Version) }

// ProtocolString formats a boot protocol version as "2.15".
func ProtocolString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// CmdLine returns the command line's address (cmd_line_ptr with
// ext_cmd_line_ptr above it).
func (bp *BootParams) CmdLine() uint64 {
	return uint64(bp.Hdr.CmdLinePtr) | uint64(bp.ExtCmdLinePtr)<<32
}

// Ramdisk returns the initrd's address and size (with their ext_ parts).
func (bp *BootParams) Ramdisk() (addr, size uint64) {
	return uint64(bp.Hdr.RamdiskImage) | uint64(bp.ExtRamdiskImage)<<32,
		uint64(bp.Hdr.RamdiskSize) | uint64(bp.ExtRamdiskSize)<<32
}

// E820 returns the e820 entries in use (e820_entries of them, at most
// E820Max).
func (bp *BootParams) E820() []E820Entry {
	return bp.E820Table[:min(int(bp.E820Entries), E820Max)]
}

// SetE820 replaces the e820 map.
func (bp *BootParams) SetE820(entries []E820Entry) error {
	if len(entries) > E820Max {
		return fmt.Errorf("bootparams: %d e820 entries, at most %d fit", len(entries), E820Max)
	}
	bp.E820Table = [E820Max]E820Entry{}
	copy(bp.E820Table[:], entries)
	bp.E820Entries = uint8(len(entries))
	return nil
}

var e820Names = map[uint32]string{
	E820RAM: "RAM", E820Reserved: "RESERVED", E820ACPI: "ACPI", E820NVS: "NVS", E820Unusable: "UNUSABLE",
	E820PMEM: "PMEM", E820PRAM: "PRAM", E820SoftReserved: "SOFT_RESERVED",
}

// E820TypeName names an e820 type ("RAM", "ACPI", ... or "TYPE_n").
func E820TypeName(t uint32) string {
	if n, ok := e820Names[t]; ok {
		return n
	}
	return fmt.Sprintf("TYPE_%d", t)
}

// End is the first address after the range.
func (e E820Entry) End() uint64 { return e.Addr + e.Size }

// e820JSON is the JSON form of an entry.
type e820JSON struct {
	Addr     hexnum.Uint64 `json:"addr"`
	Size     hexnum.Uint64 `json:"size"`
	Type     uint32        `json:"type"`
	TypeName string        `json:"type_name,omitempty"`
}

// MarshalJSON writes {"addr": "0x...", "size": "0x...", "type": N,
// "type_name": "RAM"}.
func (e E820Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(e820JSON{hexnum.Uint64(e.Addr), hexnum.Uint64(e.Size), e.Type, E820TypeName(e.Type)})
}

// UnmarshalJSON reads the form MarshalJSON writes (type_name is ignored).
func (e *E820Entry) UnmarshalJSON(b []byte) error {
	var j e820JSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = E820Entry{uint64(j.Addr), uint64(j.Size), j.Type}
	return nil
}

// field is one leaf of the zero page's layout.
type field struct {
	off, size int
	name      string
}

// fields is the layout of BootParams, leaves in offset order, computed
// from the struct (binary sizes) and its field tags.
var fields = func() []field {
	var out []field
	var walk func(t reflect.Type, off int, prefix string)
	walk = func(t reflect.Type, off int, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := prefix + f.Tag.Get("field")
			size := binary.Size(reflect.New(f.Type).Elem().Interface())
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, off, name+".")
			case f.Type.Kind() == reflect.Array && f.Type.Elem().Kind() == reflect.Struct:
				es := size / f.Type.Len()
				for j := range f.Type.Len() {
					walk(f.Type.Elem(), off+j*es, fmt.Sprintf("%s[%d].", name, j))
				}
			default:
				out = append(out, field{off, size, name})
			}
			off += size
		}
	}
	walk(reflect.TypeOf(BootParams{}), 0, "")
	return out
}()

// FieldName names the field of boot_params that holds byte offset off, in
// the kernel's spelling ("hdr.cmd_line_ptr", "e820_table[2].size",
// "acpi_rsdp_addr"); "" when off is outside the page.
func FieldName(off int) string {
	for _, f := range fields {
		if off >= f.off && off < f.off+f.size {
			return f.name
		}
	}
	return ""
}
