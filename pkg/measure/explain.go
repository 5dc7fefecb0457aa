package measure

import (
	"bytes"
	"io"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// labeler names what a measured page most likely holds, for --explain. It
// reads the BSP's VMSA and, for a Linux direct boot, the boot_params it
// points to (RSI): command line, initrd, kernel image range; CR3 gives the
// page tables, RSP the boot stack, an "RSD PTR " signature at 0xE0000 the
// ACPI tables. The names are hints for people; the digest never uses them.
type labeler struct {
	ranges []span // in priority order: first match wins
	acpi   bool
}

type span struct {
	start, end uint64
	what       string
}

func newLabeler(f *igvm.File, mask uint32) *labeler {
	l := &labeler{}
	pages := map[uint64]igvm.Header{}
	var bsp *igvm.VPContext
	for _, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.PageData:
			if x.CompatibilityMask&mask != 0 && x.PageSize() == snp.PageSize {
				pages[x.GPA] = h
			}
		case *igvm.VPContext:
			if x.CompatibilityMask&mask != 0 && x.VPIndex == 0 && bsp == nil {
				bsp = x
			}
		}
	}
	// read returns n bytes of guest memory at gpa as the file loads it.
	read := func(gpa uint64, n int) []byte {
		out := make([]byte, n)
		for off := 0; off < n; {
			page := (gpa + uint64(off)) &^ (snp.PageSize - 1)
			in := int((gpa + uint64(off)) - page)
			k := min(n-off, snp.PageSize-in)
			if h, ok := pages[page]; ok && igvm.HasData(h) {
				r := f.DataReader(h)
				if _, err := r.ReadAt(out[off:off+k], int64(in)); err != nil && err != io.EOF {
					return nil
				}
			}
			off += k
		}
		return out
	}
	add := func(start, end uint64, what string) {
		if end > start && start != 0 {
			l.ranges = append(l.ranges, span{start &^ (snp.PageSize - 1), end, what})
		}
	}
	if rsdp := read(0xE0000, 8); bytes.Equal(rsdp, []byte("RSD PTR ")) {
		l.acpi = true
	}
	if bsp != nil {
		if page, err := f.Data(bsp); err == nil {
			if v, err := snp.UnmarshalVMSA(page); err == nil {
				l.fromVMSA(v, read, add)
			}
		}
	}
	return l
}

func (l *labeler) fromVMSA(v *snp.VMSA, read func(uint64, int) []byte, add func(uint64, uint64, string)) {
	const cbit = uint64(1) << 51
	var pt uint64
	if v.EFER&0x400 != 0 || v.CR0&0x80000000 != 0 { // long mode or paging
		pt = v.CR3 &^ cbit &^ 0xfff
	}
	var bp *bootparams.BootParams
	if v.RSI != 0 {
		if page := read(v.RSI, bootparams.Size); page != nil {
			bp, _ = bootparams.Unmarshal(page)
		}
	}
	if bp == nil || !bp.Hdr.HasMagic() {
		// Not a Linux boot_params: only what the registers say.
		add(pt, pt+2*snp.PageSize, "page tables")
		if v.RSP >= snp.PageSize {
			add(v.RSP-snp.PageSize, v.RSP, "boot stack")
		}
		return
	}
	if cmdline := bp.CmdLine(); cmdline != 0 {
		add(cmdline, cmdline+max(uint64(bp.Hdr.CmdlineSize), 1)+1, "kernel command line")
	}
	if initrd, size := bp.Ramdisk(); size != 0 {
		add(initrd, initrd+size, "initrd")
	}
	add(v.RSI, v.RSI+snp.PageSize, "boot_params (zero page)")
	add(pt, pt+2*snp.PageSize, "page tables")
	if v.RSP >= snp.PageSize {
		add(v.RSP-snp.PageSize, v.RSP, "boot stack")
	}
	if pref, initSize := bp.Hdr.PrefAddress, uint64(bp.Hdr.InitSize); pref != 0 && initSize != 0 {
		add(pref, pref+initSize, "kernel")
	}
}

func (l *labeler) label(gpa uint64, t snp.PageType, hasData bool) string {
	switch t {
	case snp.PageSecrets:
		return "SNP secrets page"
	case snp.PageCPUID:
		return "SNP CPUID page"
	case snp.PageVMSA:
		return "VMSA"
	}
	for _, s := range l.ranges {
		if gpa >= s.start && gpa < s.end {
			return s.what
		}
	}
	switch {
	case !hasData:
		return "zero pages"
	case gpa < 0xA0000:
		return "low memory"
	case l.acpi && gpa >= 0xE0000 && gpa < 0x800000:
		return "ACPI tables"
	}
	return "data"
}
