package bootparams

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestLayout pins the byte offsets of the struct against the kernel's
// (arch/x86/include/uapi/asm/bootparam.h) and the round trip of every byte.
func TestLayout(t *testing.T) {
	if n := binary.Size(BootParams{}); n != Size {
		t.Fatalf("BootParams is %d bytes, want %d", n, Size)
	}
	if n := binary.Size(SetupHeader{}); n != SetupHeaderSize {
		t.Fatalf("SetupHeader is %d bytes, want %d", n, SetupHeaderSize)
	}
	if n := binary.Size(E820Entry{}); n != E820EntrySize {
		t.Fatalf("E820Entry is %d bytes", n)
	}
	for _, c := range []struct {
		off  int
		name string
	}{
		{0x058, "tboot_addr"}, {0x070, "acpi_rsdp_addr"}, {0x0c0, "ext_ramdisk_image"}, {0x0c4, "ext_ramdisk_size"},
		{0x0c8, "ext_cmd_line_ptr"}, {0x13c, "cc_blob_address"}, {0x1e8, "e820_entries"}, {0x1ef, "sentinel"},
		{0x1f1, "hdr.setup_sects"}, {0x1f4, "hdr.syssize"}, {0x1fe, "hdr.boot_flag"}, {0x202, "hdr.header"}, {0x206, "hdr.version"},
		{0x210, "hdr.type_of_loader"}, {0x211, "hdr.loadflags"}, {0x214, "hdr.code32_start"}, {0x218, "hdr.ramdisk_image"},
		{0x21c, "hdr.ramdisk_size"}, {0x228, "hdr.cmd_line_ptr"}, {0x22c, "hdr.initrd_addr_max"}, {0x230, "hdr.kernel_alignment"},
		{0x236, "hdr.xloadflags"}, {0x238, "hdr.cmdline_size"}, {0x258, "hdr.pref_address"}, {0x260, "hdr.init_size"},
		{0x268, "hdr.kernel_info_offset"}, {0x26c, "_pad7"}, {0x290, "edd_mbr_sig_buffer"}, {0x2d0, "e820_table[0].addr"},
		{0x2d8, "e820_table[0].size"}, {0x2e0, "e820_table[0].type"}, {0x2d0 + 3*20 + 9, "e820_table[3].size"},
		{0xcd0, "_pad8"}, {0xd00, "eddbuf"}, {0xfff, "_pad9"}, {Size, ""}, {-1, ""},
	} {
		if got := FieldName(c.off); got != c.name {
			t.Errorf("offset %#x: %q, want %q", c.off, got, c.name)
		}
	}
	page := make([]byte, Size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range page {
		page[i] = byte(r.Uint32())
	}
	bp, err := Unmarshal(page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bp.Marshal(), page) {
		t.Error("Marshal(Unmarshal(page)) differs from page")
	}
	le := binary.LittleEndian
	if bp.ACPIRSDPAddr != le.Uint64(page[0x70:]) || bp.Hdr.PrefAddress != le.Uint64(page[0x258:]) ||
		bp.CCBlobAddress != le.Uint32(page[0x13c:]) || bp.E820Table[5].Type != le.Uint32(page[0x2d0+5*20+16:]) {
		t.Error("fields read from the wrong offsets")
	}
	h, err := UnmarshalSetupHeader(page[SetupHeaderOffset:])
	if err != nil || *h != bp.Hdr || !bytes.Equal(h.Marshal(), page[SetupHeaderOffset:SetupHeaderOffset+SetupHeaderSize]) {
		t.Errorf("setup header round trip: %v", err)
	}
	if _, err := Unmarshal(page[:Size-1]); err == nil {
		t.Error("short page accepted")
	}
	if _, err := UnmarshalSetupHeader(page[:10]); err == nil {
		t.Error("short header accepted")
	}
}

func TestAccessors(t *testing.T) {
	var bp BootParams
	bp.Hdr.CmdLinePtr, bp.ExtCmdLinePtr = 0x1000, 1
	bp.Hdr.RamdiskImage, bp.ExtRamdiskImage, bp.Hdr.RamdiskSize, bp.ExtRamdiskSize = 0x2000, 2, 0x300, 3
	if bp.CmdLine() != 0x1_00001000 {
		t.Errorf("cmdline %#x", bp.CmdLine())
	}
	if a, s := bp.Ramdisk(); a != 0x2_00002000 || s != 0x3_00000300 {
		t.Errorf("ramdisk %#x %#x", a, s)
	}
	e := []E820Entry{{0, 0xa0000, E820RAM}, {0x100000, 0x9000, E820ACPI}}
	if err := bp.SetE820(e); err != nil || len(bp.E820()) != 2 || bp.E820()[1] != e[1] {
		t.Errorf("e820 %v %v", err, bp.E820())
	}
	if err := bp.SetE820(make([]E820Entry, E820Max+1)); err == nil {
		t.Error("129 entries accepted")
	}
	bp.E820Entries = 255 // hostile count: bounded by the table
	if len(bp.E820()) != E820Max {
		t.Errorf("%d entries", len(bp.E820()))
	}
	b, err := json.Marshal(e[1])
	if err != nil || string(b) != `{"addr":"0x100000","size":"0x9000","type":3,"type_name":"ACPI"}` {
		t.Errorf("json %s %v", b, err)
	}
	var back E820Entry
	if err := json.Unmarshal(b, &back); err != nil || back != e[1] {
		t.Errorf("json round trip %+v %v", back, err)
	}
	if ProtocolString(0x20f) != "2.15" || E820TypeName(99) != "TYPE_99" {
		t.Error("names")
	}
}

// FuzzUnmarshal: any page decodes and re-encodes to itself.
func FuzzUnmarshal(f *testing.F) {
	f.Add(make([]byte, Size))
	f.Fuzz(func(t *testing.T, data []byte) {
		page := make([]byte, Size)
		copy(page, data)
		bp, err := Unmarshal(page)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bp.Marshal(), page) {
			t.Fatal("round trip differs")
		}
		_ = bp.E820()
	})
}
