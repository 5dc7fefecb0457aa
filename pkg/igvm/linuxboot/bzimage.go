package linuxboot

import (
	"errors"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
)

const (
	// MinProtocol is the oldest boot protocol accepted: 2.12 added
	// xloadflags, which tells whether the kernel has a 64-bit entry point.
	MinProtocol = 0x020c

	minPrefAddress = 3 << 20 // igvm-tooling: "loading base cannot be below 3MB"
)

// BzImage is a parsed bzImage: its setup header and the protected-mode
// payload that is loaded at pref_address.
type BzImage struct {
	// Header is the setup header as in the file; the layout copies it
	// into boot_params.
	Header bootparams.SetupHeader
	// Payload is vmlinux.bin: the file after the (setup_sects+1)*512 bytes
	// of real-mode setup code. It aliases the data given to Parse.
	Payload []byte

	allowTruncated bool
}

// ErrNotBzImage is matched (errors.Is) by the BzImageError of data that is
// not a bzImage at all (too short for a setup header, no "HdrS", no boot
// flag, a zImage).
var ErrNotBzImage = errors.New("not a bzImage")

// BzImageError reports a kernel file that is not a bzImage, or one that
// cannot be booted directly in 64-bit mode, naming the setup header field
// and its file offset.
type BzImageError struct {
	Field  string // setup header field ("syssize", "pref_address", ...), "" for the file as a whole
	Offset int64  // file offset of the field, -1 for the file as a whole
	Msg    string
	// NotBzImage is set when the data is not a bzImage at all.
	NotBzImage bool
}

func (e *BzImageError) Error() string {
	if e.NotBzImage {
		return "not a bzImage: " + e.Msg
	}
	return e.Msg
}

// Is makes errors.Is(err, ErrNotBzImage) true for data that is not a bzImage.
func (e *BzImageError) Is(target error) bool { return target == ErrNotBzImage && e.NotBzImage }

// BzImageOptions relax Parse for kernels a reference tool accepts although
// they cannot boot.
type BzImageOptions struct {
	// AllowTruncated accepts a file shorter than its setup header's
	// syssize says, down to one that ends inside its setup sectors (no
	// payload at all), as igvmgen accepts igvm-tooling's 979-byte
	// test_bzImage. Such a kernel cannot boot; this exists to reproduce
	// those vectors.
	AllowTruncated bool
}

// ParseBzImage checks that data is a complete bzImage that can be booted
// directly in 64-bit mode at its preferred address, as igvmgen does, and
// returns its header and payload (see BzImageOptions.Parse).
func ParseBzImage(data []byte) (*BzImage, error) { return BzImageOptions{}.Parse(data) }

// Parse checks data as ParseBzImage does, with the options. Errors are
// *BzImageError.
func (o BzImageOptions) Parse(data []byte) (*BzImage, error) {
	const hdrEnd = bootparams.SetupHeaderOffset + bootparams.SetupHeaderSize
	if len(data) < hdrEnd {
		return nil, &BzImageError{Offset: -1, NotBzImage: true, Msg: fmt.Sprintf("%d bytes, too short for a setup header (needs %d)", len(data), hdrEnd)}
	}
	hp, err := bootparams.UnmarshalSetupHeader(data[bootparams.SetupHeaderOffset:])
	if err != nil {
		return nil, &BzImageError{Offset: bootparams.SetupHeaderOffset, NotBzImage: true, Msg: err.Error()}
	}
	k := &BzImage{Header: *hp, allowTruncated: o.AllowTruncated}
	h := &k.Header
	bad := func(field string, off int64, format string, a ...any) error {
		return &BzImageError{Field: field, Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	if !h.HasMagic() {
		return nil, &BzImageError{Field: "header", Offset: 0x202, NotBzImage: true, Msg: "no \"HdrS\" signature at offset 0x202"}
	}
	if h.BootFlag != bootparams.BootFlagMagic {
		return nil, &BzImageError{Field: "boot_flag", Offset: 0x1fe, NotBzImage: true, Msg: fmt.Sprintf("boot_flag at 0x1fe is %#x, want 0xaa55", h.BootFlag)}
	}
	if h.Version < MinProtocol {
		return nil, bad("version", 0x206, "boot protocol %s is too old: direct 64-bit boot needs %s or later (xloadflags, pref_address, init_size)", h.Protocol(), bootparams.ProtocolString(MinProtocol))
	}
	if h.LoadFlags&bootparams.LoadedHigh == 0 {
		return nil, &BzImageError{Field: "loadflags", Offset: 0x211, NotBzImage: true, Msg: "a zImage (loadflags LOADED_HIGH clear), only bzImages are supported"}
	}
	if h.XLoadFlags&bootparams.XLFKernel64 == 0 {
		return nil, bad("xloadflags", 0x236, "kernel has no 64-bit entry point (xloadflags %#x lacks XLF_KERNEL_64)", h.XLoadFlags)
	}
	if h.SetupSects == 0 {
		return nil, bad("setup_sects", 0x1f1, "setup_sects is 0 (pre-2.00 convention), not supported")
	}
	if h.PrefAddress <= minPrefAddress {
		return nil, bad("pref_address", 0x258, "pref_address %#x is not above 3 MiB", h.PrefAddress)
	}
	if h.PrefAddress%pageSize != 0 || h.InitSize%pageSize != 0 {
		return nil, bad("pref_address", 0x258, "pref_address %#x and init_size %#x must be multiples of 4 KiB", h.PrefAddress, h.InitSize)
	}
	if a := h.KernelAlignment; a != 0 && a&(a-1) == 0 && h.PrefAddress%uint64(a) != 0 {
		return nil, bad("pref_address", 0x258, "pref_address %#x is not aligned to kernel_alignment %#x", h.PrefAddress, a)
	}
	if h.InitSize == 0 {
		return nil, bad("init_size", 0x260, "init_size is 0")
	}
	if h.PrefAddress+uint64(h.InitSize) > maxGuestAddress {
		return nil, bad("init_size", 0x260, "pref_address %#x + init_size %#x ends above 4 GiB", h.PrefAddress, h.InitSize)
	}
	setupEnd := (int(h.SetupSects) + 1) * 512
	if setupEnd < len(data) {
		k.Payload = data[setupEnd:]
	} else {
		k.Payload = data[len(data):]
	}
	// syssize counts the protected-mode code in 16-byte units, rounded up
	// (arch/x86/boot/tools/build.c; the CRC-32 is in it): a file shorter
	// than that was cut.
	if need := int64(h.SysSize)*16 - 15; int64(len(k.Payload)) < need && !o.AllowTruncated {
		return nil, bad("syssize", 0x1f4, "truncated: syssize %#x says the protected-mode code after the %d setup bytes is %d bytes, the file has %d", h.SysSize, setupEnd, int64(h.SysSize)*16, len(k.Payload))
	}
	if uint64(len(k.Payload)) > uint64(h.InitSize) {
		return nil, bad("init_size", 0x260, "payload of %d bytes is larger than init_size %#x", len(k.Payload), h.InitSize)
	}
	return k, nil
}
