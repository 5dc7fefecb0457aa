package linuxboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets and sizes of the x86 boot protocol (Documentation/arch/x86/boot.rst).
const (
	setupHeaderOffset = 0x1f1
	// setupHeaderSize is the part of the setup header igvm-tooling copies
	// into boot_params: 0x1f1 up to (not including) 0x26c, which covers
	// kernel_info_offset (protocol 2.15).
	setupHeaderSize = 0x7b
	headerMagic     = 0x53726448 // "HdrS"
	bootFlagMagic   = 0xaa55

	// MinProtocol is the oldest boot protocol accepted: 2.12 added
	// xloadflags, which tells whether the kernel has a 64-bit entry point.
	MinProtocol = 0x020c

	loadFlagLoadedHigh = 1 << 0 // LOADED_HIGH: protected-mode code at 0x100000
	xlfKernel64        = 1 << 0 // XLF_KERNEL_64: 64-bit entry at +0x200
	xlfCanBeAbove4G    = 1 << 1 // XLF_CAN_BE_LOADED_ABOVE_4G

	minPrefAddress = 3 << 20 // igvm-tooling: "loading base cannot be below 3MB"
)

// SetupHeader is the setup header of a bzImage as igvm-tooling copies it
// into boot_params (struct setup_header, bytes 0x1f1..0x26c of the file).
// Field comments give the file offset.
type SetupHeader struct {
	SetupSects          uint8  // 0x1f1
	RootFlags           uint16 // 0x1f2
	SysSize             uint32 // 0x1f4
	RAMSize             uint16 // 0x1f8
	VidMode             uint16 // 0x1fa
	RootDev             uint16 // 0x1fc
	BootFlag            uint16 // 0x1fe, 0xAA55
	Jump                uint16 // 0x200
	Header              uint32 // 0x202, "HdrS"
	Version             uint16 // 0x206, boot protocol version
	RealmodeSwitch      uint32 // 0x208
	StartSysSeg         uint16 // 0x20c
	KernelVersion       uint16 // 0x20e
	TypeOfLoader        uint8  // 0x210
	LoadFlags           uint8  // 0x211
	SetupMoveSize       uint16 // 0x212
	Code32Start         uint32 // 0x214
	RamdiskImage        uint32 // 0x218
	RamdiskSize         uint32 // 0x21c
	BootsectKludge      uint32 // 0x220
	HeapEndPtr          uint16 // 0x224
	ExtLoaderVer        uint8  // 0x226
	ExtLoaderType       uint8  // 0x227
	CmdLinePtr          uint32 // 0x228
	InitrdAddrMax       uint32 // 0x22c, highest address the initrd may occupy
	KernelAlignment     uint32 // 0x230
	RelocatableKernel   uint8  // 0x234
	MinAlignment        uint8  // 0x235
	XLoadFlags          uint16 // 0x236
	CmdlineSize         uint32 // 0x238, longest command line without the NUL
	HardwareSubarch     uint32 // 0x23c
	HardwareSubarchData uint64 // 0x240
	PayloadOffset       uint32 // 0x248
	PayloadLength       uint32 // 0x24c
	SetupData           uint64 // 0x250
	PrefAddress         uint64 // 0x258, preferred (here: the) load address
	InitSize            uint32 // 0x260, memory the kernel needs from pref_address
	HandoverOffset      uint32 // 0x264
	KernelInfoOffset    uint32 // 0x268
}

// BzImage is a parsed bzImage: its setup header and the protected-mode
// payload that is loaded at pref_address.
type BzImage struct {
	Header SetupHeader
	// RawHeader is the header bytes as in the file, copied into boot_params.
	RawHeader [setupHeaderSize]byte
	// Payload is vmlinux.bin: the file after the (setup_sects+1)*512 bytes
	// of real-mode setup code. It aliases the data given to ParseBzImage.
	Payload []byte
}

// ErrNotBzImage is wrapped by every error for data that is not a bzImage.
var ErrNotBzImage = errors.New("not a bzImage")

// ProtocolString formats a boot protocol version as "2.15".
func ProtocolString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// ParseBzImage checks that data is a bzImage that can be booted directly in
// 64-bit mode at its preferred address, as igvmgen does, and returns its
// header and payload. The error says what is wrong with the file.
func ParseBzImage(data []byte) (*BzImage, error) {
	if len(data) < setupHeaderOffset+setupHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, too short for a setup header (needs %d)", ErrNotBzImage, len(data), setupHeaderOffset+setupHeaderSize)
	}
	k := &BzImage{}
	copy(k.RawHeader[:], data[setupHeaderOffset:])
	// A fixed-size struct read from a long enough buffer cannot fail.
	_ = binary.Read(bytes.NewReader(k.RawHeader[:]), binary.LittleEndian, &k.Header)
	h := &k.Header
	if h.Header != headerMagic {
		return nil, fmt.Errorf("%w: no \"HdrS\" signature at offset 0x202", ErrNotBzImage)
	}
	if h.BootFlag != bootFlagMagic {
		return nil, fmt.Errorf("%w: boot_flag at 0x1fe is %#x, want 0xaa55", ErrNotBzImage, h.BootFlag)
	}
	if h.Version < MinProtocol {
		return nil, fmt.Errorf("boot protocol %s is too old: direct 64-bit boot needs %s or later (xloadflags, pref_address, init_size)", ProtocolString(h.Version), ProtocolString(MinProtocol))
	}
	if h.LoadFlags&loadFlagLoadedHigh == 0 {
		return nil, fmt.Errorf("%w: a zImage (loadflags LOADED_HIGH clear), only bzImages are supported", ErrNotBzImage)
	}
	if h.XLoadFlags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("kernel has no 64-bit entry point (xloadflags %#x lacks XLF_KERNEL_64)", h.XLoadFlags)
	}
	if h.SetupSects == 0 {
		return nil, fmt.Errorf("setup_sects is 0 (pre-2.00 convention), not supported")
	}
	if h.PrefAddress <= minPrefAddress {
		return nil, fmt.Errorf("pref_address %#x is not above 3 MiB", h.PrefAddress)
	}
	if h.PrefAddress%pageSize != 0 || h.InitSize%pageSize != 0 {
		return nil, fmt.Errorf("pref_address %#x and init_size %#x must be multiples of 4 KiB", h.PrefAddress, h.InitSize)
	}
	if a := h.KernelAlignment; a != 0 && a&(a-1) == 0 && h.PrefAddress%uint64(a) != 0 {
		return nil, fmt.Errorf("pref_address %#x is not aligned to kernel_alignment %#x", h.PrefAddress, a)
	}
	if h.InitSize == 0 {
		return nil, fmt.Errorf("init_size is 0")
	}
	if h.PrefAddress+uint64(h.InitSize) > maxGuestAddress {
		return nil, fmt.Errorf("pref_address %#x + init_size %#x ends above 4 GiB", h.PrefAddress, h.InitSize)
	}
	if off := (int(h.SetupSects) + 1) * 512; off < len(data) {
		k.Payload = data[off:]
	} else {
		k.Payload = data[len(data):]
	}
	if uint64(len(k.Payload)) > uint64(h.InitSize) {
		return nil, fmt.Errorf("payload of %d bytes is larger than init_size %#x", len(k.Payload), h.InitSize)
	}
	return k, nil
}
