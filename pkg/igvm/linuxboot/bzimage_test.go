package linuxboot

import (
	"bytes"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"os"

	"context"
	"encoding/binary"
	"errors"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"strings"
	"testing"
)

// fakeBzImage makes a bzImage with a valid 2.15 setup header and payload
// bytes after setup_sects+1 sectors; edit modifies the header bytes.
func fakeBzImage(payload []byte, edit func(b []byte)) []byte {
	const setupSects = 3
	b := make([]byte, (setupSects+1)*512+len(payload))
	b[0x1f1] = setupSects
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	b[0x211] = 0x01                                      // LOADED_HIGH
	binary.LittleEndian.PutUint32(b[0x22c:], 0x7fffffff) // initrd_addr_max
	binary.LittleEndian.PutUint32(b[0x230:], 0x200000)   // kernel_alignment
	b[0x234] = 1                                         // relocatable
	binary.LittleEndian.PutUint16(b[0x236:], 0x7f)       // xloadflags
	binary.LittleEndian.PutUint32(b[0x238:], 0x7ff)      // cmdline_size
	binary.LittleEndian.PutUint64(b[0x258:], 0x1000000)  // pref_address
	binary.LittleEndian.PutUint32(b[0x260:], 0x2000000)  // init_size
	copy(b[(setupSects+1)*512:], payload)
	if edit != nil {
		edit(b)
	}
	return b
}

func TestParseBzImage(t *testing.T) {
	payload := []byte("\x90payload")
	k, err := ParseBzImage(fakeBzImage(payload, nil))
	if err != nil {
		t.Fatal(err)
	}
	h := k.Header
	if h.Version != 0x20f || h.PrefAddress != 0x1000000 || h.InitSize != 0x2000000 || h.CmdlineSize != 0x7ff ||
		h.InitrdAddrMax != 0x7fffffff || h.KernelAlignment != 0x200000 || h.XLoadFlags != 0x7f || h.SetupSects != 3 {
		t.Errorf("header %+v", h)
	}
	if string(k.Payload) != string(payload) {
		t.Errorf("payload %q", k.Payload)
	}

	u16 := func(off int, v uint16) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint16(b[off:], v) }
	}
	u32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
	}
	u64 := func(off int, v uint64) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v) }
	}
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a bzImage: 0 bytes"},
		{"ELF", append([]byte("\x7fELF"), make([]byte, 4096)...), "not a bzImage: no \"HdrS\""},
		{"boot flag", fakeBzImage(payload, u16(0x1fe, 0)), "boot_flag"},
		{"old protocol", fakeBzImage(payload, u16(0x206, 0x020a)), "boot protocol 2.10 is too old"},
		{"zImage", fakeBzImage(payload, func(b []byte) { b[0x211] = 0 }), "zImage"},
		{"no 64-bit entry", fakeBzImage(payload, u16(0x236, 0x2)), "no 64-bit entry point"},
		{"setup_sects 0", fakeBzImage(payload, func(b []byte) { b[0x1f1] = 0 }), "setup_sects is 0"},
		{"low pref_address", fakeBzImage(payload, u64(0x258, 0x200000)), "not above 3 MiB"},
		{"unaligned pref_address", fakeBzImage(payload, u64(0x258, 0x1000800)), "multiples of 4 KiB"},
		{"unaligned init_size", fakeBzImage(payload, u32(0x260, 0x2000001)), "multiples of 4 KiB"},
		{"misaligned to kernel_alignment", fakeBzImage(payload, u64(0x258, 0x1001000)), "kernel_alignment"},
		{"zero init_size", fakeBzImage(payload, u32(0x260, 0)), "init_size is 0"},
		{"above 4 GiB", fakeBzImage(payload, u64(0x258, 0xffe00000)), "above 4 GiB"},
		{"payload > init_size", fakeBzImage(make([]byte, 0x3000), u32(0x260, 0x2000)), "larger than init_size"},
		{"truncated", fakeBzImage(make([]byte, 4096-16), u32(0x1f4, 0x100)), "truncated: syssize 0x100 says the protected-mode code after the 2048 setup bytes is 4096 bytes, the file has 4080"},
	}
	for _, tc := range bad {
		_, err := ParseBzImage(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseBzImage([]byte("hello")); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("short file: %v is not ErrNotBzImage", err)
	}
	var be *BzImageError
	if _, err := ParseBzImage(fakeBzImage(payload, u16(0x206, 0x020a))); !errors.As(err, &be) || be.Field != "version" || be.Offset != 0x206 || errors.Is(err, ErrNotBzImage) {
		t.Errorf("old protocol: %#v", err)
	}
	// syssize rounds up (build.c: (size + 15 + 4) / 16, the CRC included):
	// up to 15 bytes short is the rounding, not a cut.
	if _, err := ParseBzImage(fakeBzImage(make([]byte, 4096-15), u32(0x1f4, 0x100))); err != nil {
		t.Errorf("payload within syssize's rounding: %v", err)
	}
	// AllowTruncated (igvm-tooling's test_bzImage) accepts the cut file.
	if _, err := (BzImageOptions{AllowTruncated: true}).Parse(fakeBzImage(nil, u32(0x1f4, 0x100))); err != nil {
		t.Errorf("AllowTruncated: %v", err)
	}
}

// A real kernel cut inside its code is refused: the Debian kernel of the
// fixture cache cut 16 bytes before the end syssize gives (the file goes
// on after it with the Secure Boot signature, which the boot does not
// need), or to half, or right after its setup sectors.
func TestTruncatedDebianKernel(t *testing.T) {
	kernel := fixtures.DebianKernel(t)
	data, err := os.ReadFile(kernel.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseBzImage(data)
	if err != nil {
		t.Fatalf("whole kernel: %v", err)
	}
	codeEnd := (int(k.Header.SetupSects)+1)*512 + int(k.Header.SysSize)*16
	if _, err := ParseBzImage(data[:codeEnd]); err != nil {
		t.Fatalf("kernel cut after its code: %v", err)
	}
	for _, n := range []int{codeEnd - 16, len(data) / 2, (int(k.Header.SetupSects) + 1) * 512} {
		var be *BzImageError
		if _, err := ParseBzImage(data[:n]); !errors.As(err, &be) || be.Field != "syssize" {
			t.Errorf("cut to %d bytes: %v", n, err)
		}
	}
}

// FuzzParseBzImage: the parser never panics, what it accepts satisfies
// the invariants Build relies on, and parsing and laying out cost memory
// in proportion to the file. The setup header is fuzzed as a structure:
// the fuzzer's bytes overwrite the header of a valid bzImage whose payload
// length it also chooses (a bzImage has no checksum to repair; keeping the
// rest valid is what lets mutations reach the checks behind the magic).
func FuzzParseBzImage(f *testing.F) {
	good := fakeBzImage(nil, nil)[0x1f1:0x26c]
	f.Add(good, uint16(7), false)
	f.Add(good[:0x30], uint16(0), true)
	f.Add([]byte("HdrS"), uint16(100), false)
	f.Fuzz(func(t *testing.T, hdr []byte, payloadLen uint16, raw bool) {
		var data []byte
		if raw {
			data = hdr // the fuzzer's bytes as the whole file
		} else {
			data = fakeBzImage(bytes.Repeat([]byte{0x90}, int(payloadLen)), func(b []byte) { copy(b[0x1f1:0x26c], hdr) })
		}
		var k *BzImage
		var err error
		fuzzbound.Check(t, data, 1, 64<<10, func() { k, err = BzImageOptions{AllowTruncated: true}.Parse(data) })
		if err != nil {
			var be *BzImageError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a BzImageError", err)
			}
			return
		}
		h := k.Header
		if h.PrefAddress%pageSize != 0 || h.InitSize%pageSize != 0 || h.PrefAddress <= 3<<20 ||
			uint64(len(k.Payload)) > uint64(h.InitSize) || h.XLoadFlags&1 == 0 || h.Version < MinProtocol {
			t.Fatalf("accepted a header that breaks an invariant: %+v", h)
		}
		if _, err := ParseBzImage(data); err == nil && int64(len(k.Payload)) < int64(h.SysSize)*16-15 {
			t.Fatalf("strict parse accepted a payload of %d bytes with syssize %#x", len(k.Payload), h.SysSize)
		}
		// Building must not panic either: it returns an image or an error
		// (with pvalidate-opt, so a huge init_size does not mean a huge
		// page list: the pages are the payload's, plus a fixed number).
		var img *Image
		fuzzbound.Check(t, data, 4, 8<<20, func() {
			img, err = Build(context.Background(), k, Options{Cmdline: "console=ttyS0", Initrd: []byte("x"), PvalidateOpt: true})
		})
		if err == nil && len(img.Pages) > len(data)/pageSize+2048 {
			t.Fatalf("%d pages for a %d-byte kernel", len(img.Pages), len(data))
		}
	})
}
