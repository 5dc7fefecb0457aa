package linuxboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// guestMemory reads the measured pages of an IGVM file into a sparse
// guest-physical memory.
type guestMemory map[uint64][]byte

func memoryOf(t testing.TB, file []byte) guestMemory {
	t.Helper()
	f, err := igvm.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	m := guestMemory{}
	for _, h := range f.Directives() {
		if p, ok := h.(*igvm.PageData); ok {
			d, err := f.Data(h)
			if err != nil {
				t.Fatal(err)
			}
			full := make([]byte, pageSize)
			copy(full, d)
			m[p.GPA] = full
		}
	}
	return m
}

// read returns n bytes at gpa; every page touched must be present.
func (m guestMemory) read(t testing.TB, gpa uint64, n int) []byte {
	t.Helper()
	out := make([]byte, 0, n)
	for len(out) < n {
		pg := (gpa + uint64(len(out))) &^ (pageSize - 1)
		p, ok := m[pg]
		if !ok {
			t.Fatalf("page %#x is not in the image", pg)
		}
		off := int(gpa + uint64(len(out)) - pg)
		out = append(out, p[off:min(pageSize, off+n-len(out))]...)
	}
	return out
}

// checkBoot checks, on the written file, that the kernel payload lies at
// pref_address and that boot_params describe the layout.
func checkBoot(t *testing.T, k *BzImage, img *Image, file []byte, cmdline string, initrd []byte) {
	t.Helper()
	m := memoryOf(t, file)
	L := img.Layout
	pref := k.Header.PrefAddress
	if got := m.read(t, pref, len(k.Payload)); !bytes.Equal(got, k.Payload) {
		t.Errorf("vmlinux bytes at pref_address %#x differ from the payload", pref)
	}
	bp := m.read(t, L.BootParams, bootParamsSize)
	hdr := bytes.Clone(bp[0x1f1:0x26c])
	want := k.Header.Marshal()
	// The fields the loader fills in.
	for _, f := range []struct{ off, n int }{{0x210, 1}, {0x214, 4}, {0x218, 4}, {0x21c, 4}, {0x228, 4}, {0x238, 4}} {
		copy(hdr[f.off-0x1f1:f.off-0x1f1+f.n], make([]byte, f.n))
		copy(want[f.off-0x1f1:f.off-0x1f1+f.n], make([]byte, f.n))
	}
	if !bytes.Equal(hdr, want) {
		t.Error("boot_params.hdr is not the kernel's setup header")
	}
	u32 := func(off int) uint64 { return uint64(binary.LittleEndian.Uint32(bp[off:])) }
	if bp[0x210] != 0xff {
		t.Errorf("type_of_loader %#x", bp[0x210])
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"code32_start", u32(0x214), pref + 0x200},
		{"ramdisk_image", u32(0x218), L.Ramdisk},
		{"ramdisk_size", u32(0x21c), uint64(len(initrd))},
		{"cmd_line_ptr", u32(0x228), L.Cmdline},
		{"cmdline_size", u32(0x238), uint64(len(cmdline))},
		{"cc_blob_address", u32(0x13c), L.CCBlob},
		{"acpi_rsdp_addr", binary.LittleEndian.Uint64(bp[0x70:]), 0xe0000},
		{"e820_entries", uint64(bp[0x1e8]), uint64(len(L.E820))},
		{"rsi", img.VMSA.RSI, L.BootParams},
		{"rip", img.VMSA.RIP, pref + 0x200},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if L.Ramdisk%pageSize != 0 {
		t.Errorf("initrd at %#x is not page aligned", L.Ramdisk)
	}
	if got := m.read(t, L.Cmdline, len(cmdline)+1); string(got) != cmdline+"\x00" {
		t.Errorf("command line %q", got)
	}
	if len(initrd) > 0 {
		if got := m.read(t, L.Ramdisk, len(initrd)); !bytes.Equal(got, initrd) {
			t.Error("initrd bytes differ")
		}
	}
	cc := m.read(t, L.CCBlob, 40)
	if binary.LittleEndian.Uint32(cc) != ccBlobMagic || binary.LittleEndian.Uint64(cc[8:]) != SecretsPageGPA || binary.LittleEndian.Uint64(cc[24:]) != CPUIDPageGPA {
		t.Errorf("cc_blob %x", cc)
	}
	var prevEnd uint64
	for i := 0; i < int(bp[0x1e8]); i++ {
		e := bp[0x2d0+20*i:]
		addr, size := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
		if addr < prevEnd {
			t.Errorf("e820[%d] at %#x overlaps the previous entry", i, addr)
		}
		prevEnd = addr + size
	}
	if prevEnd != L.End {
		t.Errorf("e820 ends at %#x, pages at %#x", prevEnd, L.End)
	}
}

// debianKernel returns the Debian kernel scripts/fixtures/debian-kernel.sh
// caches, skipping when it is absent outside CI.
func debianKernel(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(fixtures.DebianKernel(t).Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDebianKernel lays out a real Debian bzImage in both pvalidate modes
// and checks, on the written file, that its vmlinux bytes are at
// pref_address and that boot_params are right.
func TestDebianKernel(t *testing.T) {
	data := debianKernel(t)
	k, err := ParseBzImage(data)
	if err != nil {
		t.Fatal(err)
	}
	h := k.Header
	t.Logf("Debian kernel: protocol %s, setup_sects %d, pref_address %#x, init_size %#x, payload %d bytes, cmdline_size %d, initrd_addr_max %#x",
		h.Protocol(), h.SetupSects, h.PrefAddress, h.InitSize, len(k.Payload), h.CmdlineSize, h.InitrdAddrMax)
	if len(k.Payload) < 1<<20 {
		t.Fatalf("payload of %d bytes: not a real kernel", len(k.Payload))
	}
	initrd := bytes.Repeat([]byte("initrd-bytes-"), 40000) // 520,000 B, not page aligned
	cmdline := "console=ttyS0 root=/dev/vda1 ro panic=-1"
	for _, pv := range []bool{true, false} {
		img, err := Build(context.Background(), k, Options{Cmdline: cmdline, Initrd: initrd, PvalidateOpt: pv, EncryptedPage: true, SVME: true})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := img.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		checkBoot(t, k, img, buf.Bytes(), cmdline, initrd)
		// The kernel payload pages must be data pages up to its end.
		var kernelPages int
		for _, p := range img.Pages {
			if p.GPA >= h.PrefAddress && p.GPA < h.PrefAddress+uint64(len(k.Payload)) {
				kernelPages++
			}
		}
		if want := (len(k.Payload) + pageSize - 1) / pageSize; kernelPages != want {
			t.Errorf("pvalidate_opt=%v: %d kernel pages, want %d", pv, kernelPages, want)
		}
	}
}

// TestSyntheticKernel checks the same on a small synthetic bzImage with a
// payload that ends inside a page.
func TestSyntheticKernel(t *testing.T) {
	payload := bytes.Repeat([]byte{0xc3, 0x90, 0x0f}, 5000)
	k, err := ParseBzImage(fakeBzImage(payload, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, pv := range []bool{true, false} {
		for _, initrd := range [][]byte{nil, bytes.Repeat([]byte{7}, 8192), bytes.Repeat([]byte{9}, 4097)} {
			img, err := Build(context.Background(), k, Options{Cmdline: "quiet", Initrd: initrd, PvalidateOpt: pv})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := img.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			checkBoot(t, k, img, buf.Bytes(), "quiet", initrd)
			for i := 1; i < len(img.Pages); i++ {
				if img.Pages[i].GPA <= img.Pages[i-1].GPA {
					t.Fatalf("pages not ascending at %d", i)
				}
			}
		}
	}
}

func TestBuildErrors(t *testing.T) {
	payload := []byte("payload")
	parse := func(edit func([]byte)) *BzImage {
		k, err := ParseBzImage(fakeBzImage(payload, edit))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := parse(nil)
	lowInitrdMax := parse(func(b []byte) { binary.LittleEndian.PutUint32(b[0x22c:], 0x3003fff) })
	tightInit := parse(func(b []byte) { binary.LittleEndian.PutUint32(b[0x260:], 0x18000) })
	emptyPayload, err := ParseBzImage(fakeBzImage(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	lowPref := parse(func(b []byte) {
		binary.LittleEndian.PutUint64(b[0x258:], 0x600000)
		binary.LittleEndian.PutUint32(b[0x230:], 0x100000)
	})
	cases := []struct {
		name string
		k    *BzImage
		opts Options
		want string
	}{
		{"cmdline too long", k, Options{Cmdline: strings.Repeat("a", 0x800)}, "command line is 2048 bytes, the kernel accepts at most 2047 (cmdline_size)"},
		{"cmdline NUL", k, Options{Cmdline: "a\x00b"}, "NUL byte at offset 1"},
		// P = 0x3000000; boot_params etc. put the initrd at 0x3004000.
		{"initrd above initrd_addr_max", lowInitrdMax, Options{Initrd: []byte{1}}, "above the kernel's initrd_addr_max 0x3003fff"},
		{"no room in init_size", tightInit, Options{PvalidateOpt: true}, "leaves no room in init_size"},
		{"empty payload", emptyPayload, Options{}, "no protected-mode payload"},
		{"pref below SNP pages", lowPref, Options{}, "overlaps the SNP pages"},
		{"bad policy", k, Options{Policy: 0x1001f}, "bit 17"},
		{"unknown layout", k, Options{Layout: 7}, "unknown layout kind 7"},
	}
	for _, tc := range cases {
		_, err := Build(context.Background(), tc.k, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	// The initrd that just fits is accepted.
	if _, err := Build(context.Background(), lowInitrdMax, Options{Initrd: make([]byte, 0)}); err != nil {
		t.Errorf("empty initrd: %v", err)
	}
}
