package linuxboot

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

const (
	pageSize = snp.PageSize

	// SNPPagesAddress is where the CPUID, secrets, parameter and VMSA
	// pages start (igvm-tooling's SNP_CPUID_PAGE_ADDR).
	SNPPagesAddress = 0x800000
	CPUIDPageGPA    = SNPPagesAddress
	SecretsPageGPA  = SNPPagesAddress + 0x1000
	ParamPageGPA    = SNPPagesAddress + 0x2000
	VMSAPageGPA     = SNPPagesAddress + 0x3000
	snpPagesEnd     = SNPPagesAddress + 0x4000

	// ParamVPCountOffset and ParamMemoryMapOffset are the byte offsets of
	// the VP count and of the memory map in the parameter area.
	ParamVPCountOffset   = 0
	ParamMemoryMapOffset = 24

	// DefaultPolicy is igvmgen's guest policy: SMT allowed, bit 17, ABI 0.31.
	DefaultPolicy snp.GuestPolicy = 0x3001f

	bootHeapSize    = 0x10000 // BOOT_HEAP_SIZE of arch/x86/boot/compressed
	bootStackSize   = 0x4000  // BOOT_STACK_SIZE
	initPgtableSize = 0x7000  // TOP_PGT_SIZE + BOOT_PGT_SIZE
	tssSize         = 104
	gdtSize         = 56 // null, kernel code, user code, kernel data, user data, 16-byte TSS
	bootParamsSize  = bootparams.Size
	ccBlobMagic     = 0x45444d41 // "AMDE"
	maxGuestAddress = 1 << 32    // 32-bit boot_params pointers

	pageEncrypted = 1 << 51 // the C-bit in igvm-tooling's page tables
	pageRWUP      = 0x7     // present, writable, user
	pagePS        = 0x80    // 1 GiB page
)

// Options are the igvmgen options that change the layout, and the layout
// kind.
type Options struct {
	// Layout is the hypervisor loader the image is for: LayoutMSHV
	// (igvmgen's layout, the zero value) or LayoutKVM.
	Layout LayoutKind
	// Cmdline is the kernel command line; it must be no longer than the
	// kernel's cmdline_size and hold no NUL byte.
	Cmdline string
	// Initrd is the initial ramdisk, possibly empty. Its pages alias it.
	Initrd []byte
	// ACPI are the ACPI pages; nil means DefaultACPI().
	ACPI *ACPI
	// Policy is the guest policy; 0 means DefaultPolicy.
	Policy snp.GuestPolicy
	// PvalidateOpt (igvmgen -pvalidate_opt 1) emits only the kernel pages
	// startup_32 touches and leaves [0, 0xA0000) out.
	PvalidateOpt bool
	// EncryptedPage (-encrypted_page 1) sets the C-bit (bit 51) in the page
	// tables and CR3.
	EncryptedPage bool
	// SVME (-svme 1) sets EFER.SVME. LayoutKVM always sets it: KVM
	// measures it set whatever the file says.
	SVME bool
}

// LayoutError reports inputs that cannot be laid out together, naming
// the input at fault: "Kernel" (the BzImage), or the Options field
// ("Cmdline", "Initrd", "ACPI", "Policy", "Layout").
type LayoutError struct {
	Field string
	Msg   string
}

func (e *LayoutError) Error() string { return e.Msg }

func layoutErr(field, format string, a ...any) error {
	return &LayoutError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Kata returns the options Kata Containers and Contrast build their pod VM
// IGVM files with: igvmgen's -pvalidate_opt 1 -encrypted_page 1 -svme 1.
func Kata() Options { return Options{PvalidateOpt: true, EncryptedPage: true, SVME: true} }

// PageKind says what a page of the image is.
type PageKind uint8

// Page kinds. Normal pages are measured as NORMAL, with their data or, when
// Data is nil, as zeros.
const (
	PageNormal    PageKind = iota
	PageCPUID              // the SNP CPUID page (data: the leaves to fill in)
	PageSecrets            // the SNP secrets page (no data)
	PageParameter          // where the parameter area is inserted (unmeasured)
	PageVMSA               // the VMSA of vCPU 0 (data: Image.VMSA)
)

// String names the kind.
func (k PageKind) String() string {
	switch k {
	case PageNormal:
		return "normal"
	case PageCPUID:
		return "cpuid"
	case PageSecrets:
		return "secrets"
	case PageParameter:
		return "parameter"
	case PageVMSA:
		return "vmsa"
	}
	return fmt.Sprintf("PageKind(%d)", uint8(k))
}

// Page is one 4 KiB guest page.
type Page struct {
	GPA  uint64
	Kind PageKind
	// Data is the page contents, exactly 4096 bytes, or nil for a zero
	// page. It may alias the kernel or initrd; do not modify it.
	Data []byte
}

// Layout holds the addresses Build chose.
type Layout struct {
	Kind         LayoutKind
	VMSA         uint64 // GPA of vCPU 0's VP context
	KernelEntry  uint64 // pref_address + 0x200, the 64-bit entry
	PageTables   uint64 // P = pref_address + init_size: PML4, then PDPT
	TSS, GDT     uint64
	BootParams   uint64
	Cmdline      uint64
	CmdlineBytes int // without the NUL
	Ramdisk      uint64
	RamdiskSize  uint64
	StackTop     uint64 // initial RSP
	CCBlob       uint64
	End          uint64 // first address after the last page
	ACPIEnd      uint64
	E820         []bootparams.E820Entry
	PayloadBytes int
}

// Image is the initial guest state of a direct Linux boot.
type Image struct {
	Policy snp.GuestPolicy
	// Pages are all pages, in strictly ascending GPA order, including the
	// CPUID, secrets, parameter and VMSA pages.
	Pages  []Page
	VMSA   snp.VMSA
	Layout Layout

	kernel     *bootparams.SetupHeader
	acpiTables []ACPITable
}

// CPUIDLeaves are the CPUID functions (EAX, ECX inputs) igvmgen asks the
// PSP to fill into the CPUID page, in page order.
var CPUIDLeaves = [][2]uint32{
	{0x8000001f, 0}, {0, 0}, {1, 0}, {0x80000000, 0}, {2, 0}, {5, 0}, {6, 0},
	{9, 0}, {0xa, 0}, {7, 0}, {4, 0}, {4, 1}, {4, 2}, {0xb, 0}, {0xb, 1},
	{0x80000001, 0}, {0x80000005, 0}, {0x80000006, 0}, {0x80000007, 0},
	{0x80000008, 0}, {0x8000000a, 0}, {0x8000001e, 0},
	{0xd, 0}, {0xd, 1}, {0xd, 2}, {0xd, 3}, {0xd, 4}, {0xd, 5}, {0xd, 6}, {0xd, 7}, {0xd, 8},
	{0x80000002, 0}, {0x80000003, 0}, {0x80000004, 0},
	{0x8000001d, 0}, {0x8000001d, 1}, {0x8000001d, 2}, {0x8000001d, 3},
}

// CPUIDPage returns the CPUID page igvmgen emits: a count, then one 48-byte
// entry per leaf (EAX in, ECX in, XCR0 in = 1 for leaf 0xD, XSS in, outputs
// zero).
func CPUIDPage() []byte {
	p := make([]byte, pageSize)
	binary.LittleEndian.PutUint32(p, uint32(len(CPUIDLeaves)))
	for i, l := range CPUIDLeaves {
		e := p[16+48*i:]
		binary.LittleEndian.PutUint32(e[0:], l[0])
		binary.LittleEndian.PutUint32(e[4:], l[1])
		if l[0] == 0xd {
			binary.LittleEndian.PutUint64(e[8:], 1)
		}
	}
	return p
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// ctxCheckPages is the number of pages laid out between two looks at the
// context.
const ctxCheckPages = 4096

// Build lays out kernel k with opts as igvmgen does in boot mode x64. The
// image refers to the kernel's and the initrd's bytes; write it with
// Image.Write. Build stops with ctx's error soon after ctx is cancelled.
func Build(ctx context.Context, k *BzImage, opts Options) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if int(opts.Layout) >= len(LayoutKinds) {
		return nil, layoutErr("Layout", "unknown layout kind %d", uint8(opts.Layout))
	}
	h := &k.Header
	acpi := opts.ACPI
	if acpi == nil {
		acpi = DefaultACPI()
	}
	policy := opts.Policy
	if policy == 0 {
		policy = DefaultPolicy
	}
	if err := policy.Validate(); err != nil {
		return nil, &LayoutError{Field: "Policy", Msg: err.Error()}
	}
	if len(k.Payload) == 0 && !k.allowTruncated {
		return nil, layoutErr("Kernel", "bzImage has no protected-mode payload after its %d setup sectors", int(h.SetupSects)+1)
	}
	cmdline := opts.Cmdline
	for i := 0; i < len(cmdline); i++ {
		if cmdline[i] == 0 {
			return nil, layoutErr("Cmdline", "command line holds a NUL byte at offset %d", i)
		}
	}
	if uint64(len(cmdline)) > uint64(h.CmdlineSize) {
		return nil, layoutErr("Cmdline", "command line is %d bytes, the kernel accepts at most %d (cmdline_size)", len(cmdline), h.CmdlineSize)
	}
	acpiEnd := acpi.End()
	if acpiEnd <= XSDTAddress || acpiEnd > SNPPagesAddress {
		return nil, layoutErr("ACPI", "ACPI pages end at %#x, must be in (%#x, %#x]", acpiEnd, XSDTAddress, SNPPagesAddress)
	}
	pref := h.PrefAddress
	if pref < snpPagesEnd {
		return nil, layoutErr("Kernel", "pref_address %#x overlaps the SNP pages at [%#x, %#x)", pref, SNPPagesAddress, snpPagesEnd)
	}
	vmlinuxSize := alignUp(uint64(len(k.Payload)), pageSize)
	P := pref + uint64(h.InitSize)
	stackLo := pref + vmlinuxSize + bootHeapSize
	pgtLo := P - initPgtableSize
	if opts.PvalidateOpt && (uint64(h.InitSize) < initPgtableSize || stackLo+bootStackSize > pgtLo) {
		return nil, layoutErr("Kernel", "payload of %d bytes leaves no room in init_size %#x for the boot heap, stack and page tables", len(k.Payload), h.InitSize)
	}

	L := Layout{
		Kind:         opts.Layout,
		VMSA:         VMSAPageGPA,
		KernelEntry:  pref + 0x200,
		PageTables:   P,
		TSS:          P + 0x2000,
		GDT:          P + 0x2000 + tssSize,
		ACPIEnd:      acpiEnd,
		PayloadBytes: len(k.Payload),
		CmdlineBytes: len(cmdline),
	}
	L.BootParams = L.GDT + gdtSize
	L.Cmdline = L.BootParams + bootParamsSize
	L.Ramdisk = alignUp(L.Cmdline+uint64(len(cmdline))+1, pageSize)
	L.RamdiskSize = uint64(len(opts.Initrd))
	stack := L.Ramdisk + L.RamdiskSize
	L.StackTop = stack + pageSize
	L.CCBlob = L.StackTop
	L.End = alignUp(L.CCBlob+pageSize, pageSize)
	if L.RamdiskSize > 0 && L.Ramdisk+L.RamdiskSize-1 > uint64(h.InitrdAddrMax) {
		return nil, layoutErr("Initrd", "initrd of %d bytes at %#x ends at %#x, above the kernel's initrd_addr_max %#x", L.RamdiskSize, L.Ramdisk, L.Ramdisk+L.RamdiskSize-1, h.InitrdAddrMax)
	}
	if opts.Layout == LayoutKVM {
		L.VMSA = KVMVMSAGPA
	}
	if L.End > maxGuestAddress {
		return nil, layoutErr("Initrd", "layout ends at %#x, above 4 GiB (initrd of %d bytes too large)", L.End, L.RamdiskSize)
	}

	// e820, as igvmgen's _setup_e820 / _setup_e820_opt.
	const ram, reserved, acpiType = bootparams.E820RAM, bootparams.E820Reserved, bootparams.E820ACPI
	if opts.PvalidateOpt {
		L.E820 = []bootparams.E820Entry{
			{Addr: 0, Size: 0, Type: ram},
			{Addr: 0xa0000, Size: 0x100000 - 0xa0000, Type: reserved},
			{Addr: 0x100000, Size: acpiEnd - 0x100000, Type: acpiType},
			{Addr: pref, Size: vmlinuxSize, Type: ram},
			{Addr: stackLo, Size: bootStackSize, Type: ram},
			{Addr: pgtLo, Size: initPgtableSize, Type: ram},
			{Addr: P, Size: L.End - P, Type: ram},
		}
	} else {
		L.E820 = []bootparams.E820Entry{
			{Addr: 0, Size: 0xa0000, Type: ram},
			{Addr: 0xa0000, Size: 0x100000 - 0xa0000, Type: reserved},
			{Addr: 0x100000, Size: acpiEnd - 0x100000, Type: acpiType},
			{Addr: pref, Size: L.End - pref, Type: ram},
		}
	}

	// The area from P to the initrd: page tables, TSS, GDT, boot_params,
	// command line.
	head := make([]byte, L.Ramdisk-P)
	cbit := uint64(0)
	if opts.EncryptedPage {
		cbit = pageEncrypted
	}
	binary.LittleEndian.PutUint64(head[0:], (P+0x1000)|pageRWUP|cbit)
	for i := uint64(0); i < 512; i++ {
		binary.LittleEndian.PutUint64(head[0x1000+8*i:], i<<30|cbit|pageRWUP|pagePS)
	}
	gdt := head[L.GDT-P:]
	binary.LittleEndian.PutUint64(gdt[0x08:], 0x00af9b000000ffff) // kernel code, 64-bit
	binary.LittleEndian.PutUint64(gdt[0x10:], 0x00affb000000ffff) // user code, 64-bit
	binary.LittleEndian.PutUint64(gdt[0x18:], 0x00cf93000000ffff) // kernel data
	binary.LittleEndian.PutUint64(gdt[0x20:], 0x00cff3000000ffff) // user data
	tss := L.TSS
	binary.LittleEndian.PutUint64(gdt[0x28:], (tssSize-1)|(tss&0xffffff)<<16|0x8b<<40|(tss>>24&0xff)<<56)
	binary.LittleEndian.PutUint32(gdt[0x30:], uint32(tss>>32))

	// boot_params: the kernel's setup header with what the loader fills
	// in. Everything lies below 4 GiB, so the ext_ fields stay zero.
	bp := bootparams.BootParams{Hdr: k.Header, ACPIRSDPAddr: RSDPAddress, CCBlobAddress: uint32(L.CCBlob)}
	bp.Hdr.TypeOfLoader = 0xff // undefined loader
	bp.Hdr.Code32Start = uint32(L.KernelEntry)
	bp.Hdr.RamdiskImage = uint32(L.Ramdisk)
	bp.Hdr.RamdiskSize = uint32(L.RamdiskSize)
	bp.Hdr.CmdLinePtr = uint32(L.Cmdline)
	bp.Hdr.CmdlineSize = uint32(len(cmdline)) // igvmgen writes the line's length here
	if err := bp.SetE820(L.E820); err != nil {
		return nil, err
	}
	copy(head[L.BootParams-P:], bp.Marshal())
	copy(head[L.Cmdline-P:], cmdline)

	// The area from the initrd's last whole page to the end: the initrd's
	// tail, the stack and the cc_blob.
	tailStart := (L.Ramdisk + L.RamdiskSize) &^ (pageSize - 1)
	tail := make([]byte, L.End-tailStart)
	copy(tail, opts.Initrd[tailStart-L.Ramdisk:])
	cc := tail[L.CCBlob-tailStart:]
	binary.LittleEndian.PutUint32(cc[0:], ccBlobMagic)
	binary.LittleEndian.PutUint64(cc[8:], SecretsPageGPA)
	binary.LittleEndian.PutUint32(cc[16:], pageSize)
	binary.LittleEndian.PutUint64(cc[24:], CPUIDPageGPA)
	binary.LittleEndian.PutUint32(cc[32:], pageSize)

	img := &Image{Policy: policy, Layout: L, kernel: &k.Header, acpiTables: acpi.Tables}
	img.VMSA = vmsa(&L, opts)

	// Pages, ascending.
	n := estimatePages(&L, pref, P, vmlinuxSize, opts.PvalidateOpt)
	pages := make([]Page, 0, n)
	var ctxErr error
	add := func(gpa uint64, data []byte) {
		if ctxErr != nil {
			return
		}
		if len(pages)%ctxCheckPages == 0 {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return
			}
		}
		if data != nil && isZero(data) {
			data = nil
		}
		pages = append(pages, Page{GPA: gpa, Kind: PageNormal, Data: data})
	}
	low := uint64(0)
	if opts.PvalidateOpt {
		low = acpiLowestPage
	}
	ai := 0
	for gpa := low; gpa < acpiEnd; gpa += pageSize {
		var d []byte
		for ai < len(acpi.Pages) && acpi.Pages[ai].GPA < gpa {
			ai++
		}
		if ai < len(acpi.Pages) && acpi.Pages[ai].GPA == gpa {
			d = acpi.Pages[ai].Data
		}
		add(gpa, d)
	}
	pages = append(pages,
		Page{GPA: CPUIDPageGPA, Kind: PageCPUID, Data: CPUIDPage()},
		Page{GPA: SecretsPageGPA, Kind: PageSecrets},
	)
	if opts.Layout == LayoutMSHV {
		pages = append(pages,
			Page{GPA: ParamPageGPA, Kind: PageParameter},
			Page{GPA: VMSAPageGPA, Kind: PageVMSA, Data: img.VMSA.Marshal()},
		)
	}
	payloadPage := func(gpa uint64) []byte {
		off := gpa - pref
		if off >= uint64(len(k.Payload)) {
			return nil
		}
		if off+pageSize <= uint64(len(k.Payload)) {
			return k.Payload[off : off+pageSize : off+pageSize]
		}
		p := make([]byte, pageSize)
		copy(p, k.Payload[off:])
		return p
	}
	if opts.PvalidateOpt {
		for gpa := pref; gpa < pref+vmlinuxSize; gpa += pageSize {
			add(gpa, payloadPage(gpa))
		}
		for gpa := stackLo; gpa < stackLo+bootStackSize; gpa += pageSize {
			add(gpa, nil)
		}
		for gpa := pgtLo; gpa < P; gpa += pageSize {
			add(gpa, nil)
		}
	} else {
		for gpa := pref; gpa < P; gpa += pageSize {
			add(gpa, payloadPage(gpa))
		}
	}
	for gpa := P; gpa < L.Ramdisk; gpa += pageSize {
		add(gpa, head[gpa-P:gpa-P+pageSize])
	}
	for gpa := L.Ramdisk; gpa < tailStart; gpa += pageSize {
		off := gpa - L.Ramdisk
		add(gpa, opts.Initrd[off:off+pageSize:off+pageSize])
	}
	for gpa := tailStart; gpa < L.End; gpa += pageSize {
		add(gpa, tail[gpa-tailStart:gpa-tailStart+pageSize])
	}
	if ctxErr != nil {
		return nil, ctxErr
	}
	if opts.Layout == LayoutKVM {
		// Above every other page: the pages stay in ascending GPA order,
		// and the VP context is the last directive.
		pages = append(pages, Page{GPA: KVMVMSAGPA, Kind: PageVMSA, Data: img.VMSA.Marshal()})
	}
	img.Pages = pages
	return img, nil
}

func estimatePages(L *Layout, pref, P, vmlinuxSize uint64, opt bool) int {
	n := L.ACPIEnd/pageSize + 4 + (L.End-P)/pageSize // 4: CPUID, secrets, parameters, VMSA
	if opt {
		n += (vmlinuxSize + bootStackSize + initPgtableSize) / pageSize
	} else {
		n += (P - pref) / pageSize
	}
	return int(n)
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// vmsa returns the initial vCPU state igvmgen sets for boot mode x64.
func vmsa(L *Layout, opts Options) snp.VMSA {
	code := snp.Segment{Selector: 0x08, Attrib: 0xa9b, Limit: 0xffffffff}
	data := snp.Segment{Selector: 0x18, Attrib: 0xc93, Limit: 0xffffffff}
	v := snp.VMSA{
		ES: data, CS: code, SS: data, DS: data,
		GDTR:        snp.Segment{Limit: gdtSize - 1, Base: L.GDT},
		TR:          snp.Segment{Selector: 0x28, Attrib: 0x8b, Limit: tssSize - 1, Base: L.TSS},
		EFER:        0xd01, // SCE, LME, LMA, NXE
		CR4:         0x30,  // PSE, PAE
		CR3:         L.PageTables,
		CR0:         0x80000001, // PG, PE
		RFLAGS:      2,
		RIP:         L.KernelEntry,
		RSP:         L.StackTop,
		RSI:         L.BootParams,
		GPAT:        0x0007040600070406,
		SEVFeatures: 0x9, // SNP, restricted injection
		XCR0:        1,
	}
	if opts.SVME {
		v.EFER |= 0x1000
	}
	if opts.EncryptedPage {
		v.CR3 |= pageEncrypted
	}
	if opts.Layout == LayoutKVM {
		kvmVMSA(&v, L)
	}
	return v
}

// kvmVMSA turns igvmgen's state into the one QEMU and KVM accept and
// measure as written (docs/kvm-measurement.md sections 5 to 7): each value
// is the one KVM writes into the VMSA it measures, so the file's VMSA is
// the measured VMSA and "igvm inspect" shows it.
func kvmVMSA(v *snp.VMSA, L *Layout) {
	v.EFER |= 0x1000 // SVME: svm_set_efer
	v.CR0 |= 0x10    // ET: QEMU's cpu_x86_update_cr0
	v.CR4 |= 0x40    // MCE: svm_set_cr4 ORs in the host's CR4.MCE
	// QEMU's sev_apply_cpu_context loads TR.base from the VMSA's LDTR
	// base, so TR keeps the TSS only if the LDTR base holds its address.
	// The LDTR itself stays null (selector 0, not present): its base is
	// never used.
	v.LDTR.Base = L.TSS
	// The architectural reset values, with the fixed-1 bits set (KVM
	// accepts DR7 0 or 0x400 only, sev_es_sync_vmsa).
	v.DR6, v.DR7 = 0xffff0ff0, 0x400
	// KVM_SEV_INIT2 hosts (6.10 and later; upstream SNP is 6.11) measure
	// KVM's initial FPU state whatever QEMU sets.
	v.X87FCW, v.MXCSR = 0x37f, 0x1f80
	// SNP_ACTIVE only: QEMU refuses features KVM does not report
	// (check_sev_features), restricted injection among them.
	v.SEVFeatures = 0x1
}
