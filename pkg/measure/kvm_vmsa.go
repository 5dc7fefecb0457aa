package measure

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// How QEMU (>= 10.1) and KVM turn an IGVM VP context into the VMSA the SNP
// firmware measures (docs/kvm-measurement.md section 5). QEMU cannot hand
// KVM the VMSA page (its comment in target/i386/sev.c
// sev_apply_cpu_context): it copies the page's fields into its CPU state and
// writes that state to KVM with its usual ioctls; KVM then builds the page
// from the vCPU (arch/x86/kvm/svm/sev.c sev_es_sync_vmsa) at launch finish.
// The measured page is therefore the file's page transformed field by
// field; kvmVMSA computes it, and the acceptance rules QEMU and KVM apply
// on the way (qemuCheckVMSA and the checks in kvmVMSA) are violations.

// KVMViolation is one QEMU or KVM rule a file (or a measurement setting)
// breaks: QEMU or KVM would stop before the launch, so no attestation
// report can carry a digest for it.
type KVMViolation struct {
	// Rule names where the rule lives: "qemu:FUNCTION" (QEMU's
	// target/i386/sev.c, backends/igvm.c or target/i386/helper.c),
	// "kvm:FUNCTION" (Linux arch/x86/kvm), "unmodelled:FUNCTION" for
	// inputs whose treatment depends on what the sources leave to the CPU
	// model (refused rather than guessed), or "hypothetical-host" for a
	// host kernel without upstream SEV-SNP support.
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// String is "rule: detail".
func (v KVMViolation) String() string { return v.Rule + ": " + v.Detail }

// VMSAChange is a field of the BSP's VMSA that KVM measures with another
// value than the file's VP context holds (field names are those of Linux's
// struct sev_es_save_area; values in hex).
type VMSAChange struct {
	Field    string `json:"field"`
	File     string `json:"file"`
	Measured string `json:"measured"`
}

// vmsaField is a field of struct sev_es_save_area (Linux
// arch/x86/include/asm/svm.h): its name, offset and size.
type vmsaField struct {
	name      string
	off, size int
}

// sevESSaveAreaSize is sizeof(struct sev_es_save_area): what QEMU's
// check_vmsa_supported requires to be zero outside the fields it
// synchronises.
const sevESSaveAreaSize = 0x670

var segmentNames = [10]string{"es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"}

// vmsaFields lists the named fields of the save area in offset order.
var vmsaFields = func() []vmsaField {
	var fs []vmsaField
	for i, n := range segmentNames {
		o := i * 0x10
		fs = append(fs, vmsaField{n + ".selector", o, 2}, vmsaField{n + ".attrib", o + 2, 2},
			vmsaField{n + ".limit", o + 4, 4}, vmsaField{n + ".base", o + 8, 8})
	}
	return append(fs, []vmsaField{
		{"vmpl0_ssp", 0xa0, 8}, {"vmpl1_ssp", 0xa8, 8}, {"vmpl2_ssp", 0xb0, 8}, {"vmpl3_ssp", 0xb8, 8},
		{"u_cet", 0xc0, 8}, {"vmpl", 0xca, 1}, {"cpl", 0xcb, 1}, {"efer", 0xd0, 8},
		{"xss", 0x140, 8}, {"cr4", 0x148, 8}, {"cr3", 0x150, 8}, {"cr0", 0x158, 8},
		{"dr7", 0x160, 8}, {"dr6", 0x168, 8}, {"rflags", 0x170, 8}, {"rip", 0x178, 8},
		{"dr0", 0x180, 8}, {"dr1", 0x188, 8}, {"dr2", 0x190, 8}, {"dr3", 0x198, 8},
		{"dr0_addr_mask", 0x1a0, 8}, {"dr1_addr_mask", 0x1a8, 8}, {"dr2_addr_mask", 0x1b0, 8}, {"dr3_addr_mask", 0x1b8, 8},
		{"rsp", 0x1d8, 8}, {"s_cet", 0x1e0, 8}, {"ssp", 0x1e8, 8}, {"isst_addr", 0x1f0, 8},
		{"rax", 0x1f8, 8}, {"star", 0x200, 8}, {"lstar", 0x208, 8}, {"cstar", 0x210, 8},
		{"sfmask", 0x218, 8}, {"kernel_gs_base", 0x220, 8}, {"sysenter_cs", 0x228, 8}, {"sysenter_esp", 0x230, 8},
		{"sysenter_eip", 0x238, 8}, {"cr2", 0x240, 8}, {"g_pat", 0x268, 8}, {"dbgctl", 0x270, 8},
		{"br_from", 0x278, 8}, {"br_to", 0x280, 8}, {"last_excp_from", 0x288, 8}, {"last_excp_to", 0x290, 8},
		{"pkru", 0x2e8, 4}, {"tsc_aux", 0x2ec, 4}, {"rcx", 0x308, 8}, {"rdx", 0x310, 8},
		{"rbx", 0x318, 8}, {"rbp", 0x328, 8}, {"rsi", 0x330, 8}, {"rdi", 0x338, 8},
		{"r8", 0x340, 8}, {"r9", 0x348, 8}, {"r10", 0x350, 8}, {"r11", 0x358, 8},
		{"r12", 0x360, 8}, {"r13", 0x368, 8}, {"r14", 0x370, 8}, {"r15", 0x378, 8},
		{"guest_exit_info_1", 0x390, 8}, {"guest_exit_info_2", 0x398, 8}, {"guest_exit_int_info", 0x3a0, 8}, {"guest_nrip", 0x3a8, 8},
		{"sev_features", 0x3b0, 8}, {"vintr_ctrl", 0x3b8, 8}, {"guest_exit_code", 0x3c0, 8}, {"virtual_tom", 0x3c8, 8},
		{"tlb_id", 0x3d0, 8}, {"pcpu_id", 0x3d8, 8}, {"event_inj", 0x3e0, 8}, {"xcr0", 0x3e8, 8},
		{"x87_dp", 0x400, 8}, {"mxcsr", 0x408, 4}, {"x87_ftw", 0x40c, 2}, {"x87_fsw", 0x40e, 2},
		{"x87_fcw", 0x410, 2}, {"x87_fop", 0x412, 2}, {"x87_ds", 0x414, 2}, {"x87_cs", 0x416, 2},
		{"x87_rip", 0x418, 8}, {"fpreg_x87", 0x420, 80}, {"fpreg_xmm", 0x470, 256}, {"fpreg_ymm", 0x570, 256},
	}...)
}()

// qemuSynced are the fields QEMU's check_vmsa_supported clears before it
// requires the rest of the save area to be zero: the fields
// sev_apply_cpu_context copies into the CPU state.
var qemuSynced = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range vmsaFields {
		for _, s := range segmentNames {
			if len(f.name) > len(s) && f.name[:len(s)+1] == s+"." {
				m[f.name] = true
			}
		}
	}
	for _, n := range []string{"efer", "cr0", "cr3", "cr4", "xcr0", "dr6", "dr7", "rip", "rflags",
		"g_pat", "x87_fcw", "mxcsr", "sev_features",
		"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"} {
		m[n] = true
	}
	return m
}()

// Register bits the transformation and the checks use.
const (
	eferLME  = 1 << 8
	eferLMA  = 1 << 10
	eferSVME = 1 << 12

	cr0PE = 1 << 0
	cr0ET = 1 << 4
	cr0NW = 1 << 29
	cr0CD = 1 << 30
	cr0PG = 1 << 31

	cr4PAE = 1 << 5
	cr4MCE = 1 << 6
	// cr4Plain are the CR4 bits every EPYC model accepts (VME, PVI, TSD,
	// DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT, FSGSBASE, OSXSAVE,
	// SMEP); cr4CPUIDDependent the bits whose fate depends on the CPU
	// model's CPUID (UMIP, LA57, PCIDE, SMAP, PKE, CET, PKS, LAM_SUP):
	// cpu_x86_update_cr4 may clear them and kvm_is_valid_cr4 may refuse
	// them, which is not modelled.
	cr4Plain          = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | cr4PAE | cr4MCE | 0x80 | 0x100 | 0x200 | 0x400 | 1<<16 | 1<<18 | 1<<20
	cr4CPUIDDependent = 1<<11 | 1<<12 | 1<<17 | 1<<21 | 1<<22 | 1<<23 | 1<<24 | 1<<32

	csL       = 1 << 9  // CS attrib: 64-bit code segment
	rflagsVM  = 1 << 17 // virtual-8086 mode
	cbitEPYC  = 1 << 51 // the C-bit of CR3 on EPYC (not a reserved GPA bit for an SEV guest)
	dr7Reset  = 0x400
	qemuCR0   = 0x60000010 // QEMU's reset CR0 (x86_cpu_reset_hold)
	x87FCWKVM = 0x37f      // fpstate_init_fxstate
	mxcsrKVM  = 0x1f80
)

// qemuCheckVMSA applies QEMU's checks of a VP context (target/i386/sev.c):
// check_vmsa_supported (the GPA KVM measures VMSAs at, and no non-zero
// field QEMU does not synchronise) and check_sev_features (SNP_ACTIVE, and
// nothing KVM's KVM_X86_SEV_VMSA_FEATURES lacks: on 6.11 with the default
// kvm_amd.debug_swap that is DEBUG_SWAP only, so restricted injection,
// igvm-tooling's 0x8, is refused).
func qemuCheckVMSA(gpa uint64, page []byte, vp uint16) []KVMViolation {
	var out []KVMViolation
	add := func(rule, format string, a ...any) {
		out = append(out, KVMViolation{rule, fmt.Sprintf("vCPU %d: ", vp) + fmt.Sprintf(format, a...)})
	}
	if gpa != KVMVMSAGPA {
		add("qemu:check_vmsa_supported", "VMSA at GPA %#x, QEMU requires %#x (where KVM measures every VMSA)", gpa, uint64(KVMVMSAGPA))
	}
	var names []string
	covered := make([]bool, sevESSaveAreaSize)
	for _, f := range vmsaFields {
		if f.off+f.size > sevESSaveAreaSize {
			continue
		}
		for i := f.off; i < f.off+f.size; i++ {
			covered[i] = true
		}
		if !qemuSynced[f.name] && !isZero(page[f.off:f.off+f.size]) {
			names = append(names, f.name)
		}
	}
	for i := 0; i < sevESSaveAreaSize; i++ {
		if !covered[i] && page[i] != 0 {
			names = append(names, fmt.Sprintf("reserved byte %#x", i))
			break
		}
	}
	if len(names) > 0 {
		add("qemu:check_vmsa_supported", "fields QEMU does not synchronise with KVM are non-zero: %s", strings.Join(names, ", "))
	}
	for _, p := range sevFeatureProblems(binary.LittleEndian.Uint64(page[0x3b0:])) {
		add("qemu:check_sev_features", "%s", p)
	}
	return out
}

// sevFeatureProblems are the reasons QEMU's check_sev_features refuses
// the sev_features feats: SNP_ACTIVE missing, or bits KVM does not
// support (kvmSupportedFeatures).
func sevFeatureProblems(feats uint64) []string {
	var out []string
	if feats&FeatureSNPActive == 0 {
		out = append(out, fmt.Sprintf("sev_features %#x lacks SNP_ACTIVE", feats))
	}
	if extra := feats &^ kvmSupportedFeatures; extra != 0 {
		what := ""
		switch {
		case extra == featureRestrictedInjection:
			what = ", restricted injection"
		case extra&featureRestrictedInjection != 0:
			what = ", of which 0x8 is restricted injection"
		}
		out = append(out, fmt.Sprintf("sev_features %#x has bits KVM does not support (%#x%s)", feats, extra, what))
	}
	return out
}

// kvmSupportedFeatures are the sev_features QEMU lets through: SNP_ACTIVE
// and what KVM_X86_SEV_VMSA_FEATURES reports on 6.11 with kvm_amd's
// default debug_swap=1.
const kvmSupportedFeatures = FeatureSNPActive | FeatureDebugSwap

const featureRestrictedInjection = 1 << 3

// kvmVMSA returns the VMSA page KVM measures for a vCPU whose QEMU state
// was loaded from src (a VMSA-shaped page: the file's VP context, or
// QEMU's reset state from qemuResetState), with the sev_features KVM
// writes into every VMSA. fromFile says QEMU loaded src with
// sev_apply_cpu_context (which gives TR the LDTR's base). It also returns
// the acceptance rules src breaks on the way.
func kvmVMSA(src *snp.VMSA, host HostKernel, features uint64, fromFile bool) (*snp.VMSA, []KVMViolation) {
	var bad []KVMViolation
	add := func(rule, format string, a ...any) {
		bad = append(bad, KVMViolation{rule, fmt.Sprintf(format, a...)})
	}

	// QEMU: sev_apply_cpu_context on top of the reset state.
	// cpu_load_efer takes EFER as is; cpu_x86_update_cr4 and
	// cpu_x86_update_cr0 take uint32_t (bits 32-63 are dropped), the
	// latter ORs in ET (CR0_ET_MASK) and, when LME is set and paging turns
	// on, enters long mode (EFER.LMA) if CR4.PAE is set, else returns
	// early and leaves the reset CR0.
	efer := src.EFER
	cr4 := src.CR4 & 0xffffffff
	if cr4&cr4CPUIDDependent != 0 {
		add("unmodelled:cpu_x86_update_cr4", "CR4 %#x has bits %#x that QEMU keeps or clears depending on the CPU model", cr4, cr4&cr4CPUIDDependent)
	}
	fileCR0 := src.CR0 & 0xffffffff
	cr0 := uint64(qemuCR0)
	if fileCR0&cr0PG != 0 && efer&eferLME != 0 {
		if cr4&cr4PAE == 0 {
			add("qemu:cpu_x86_update_cr0", "EFER.LME and CR0.PG without CR4.PAE: QEMU keeps the reset CR0 %#x", uint64(qemuCR0))
		} else {
			efer |= eferLMA
			cr0 = fileCR0 | cr0ET
		}
	} else {
		cr0 = fileCR0 | cr0ET
	}

	// KVM: what KVM_SET_SREGS, KVM_SET_DEBUGREGS, KVM_SET_MSRS and
	// KVM_SET_XCRS accept (arch/x86/kvm/x86.c kvm_is_valid_sregs,
	// kvm_is_valid_cr0, kvm_is_valid_cr4, kvm_vcpu_ioctl_x86_set_debugregs,
	// kvm_pat_valid, __kvm_set_xcr; svm/sev.c sev_es_sync_vmsa for DR7).
	if efer&eferLME != 0 && cr0&cr0PG != 0 {
		if cr4&cr4PAE == 0 || efer&eferLMA == 0 {
			add("kvm:kvm_is_valid_sregs", "EFER.LME with CR0.PG needs CR4.PAE and EFER.LMA")
		}
		if (src.CR3&^cbitEPYC)>>52 != 0 {
			add("kvm:kvm_is_valid_sregs", "CR3 %#x has bits above MAXPHYADDR", src.CR3)
		}
	} else {
		if efer&eferLMA != 0 {
			add("kvm:kvm_is_valid_sregs", "EFER.LMA set while CR0.PG is clear (long mode without paging)")
		}
		if src.CS.Attrib&csL != 0 {
			add("kvm:kvm_is_valid_sregs", "CS.L set outside long mode")
		}
	}
	if cr0&cr0NW != 0 && cr0&cr0CD == 0 {
		add("kvm:kvm_is_valid_cr0", "CR0.NW without CR0.CD")
	}
	if cr0&cr0PG != 0 && cr0&cr0PE == 0 {
		add("kvm:kvm_is_valid_cr0", "CR0.PG without CR0.PE")
	}
	if r := cr4 &^ (cr4Plain | cr4CPUIDDependent); r != 0 {
		add("kvm:kvm_is_valid_cr4", "reserved CR4 bits %#x", r)
	}
	if src.DR6>>32 != 0 || src.DR7>>32 != 0 {
		add("kvm:kvm_vcpu_ioctl_x86_set_debugregs", "DR6/DR7 bits 32-63 set")
	}
	if src.DR7&^dr7Reset != 0 {
		add("kvm:sev_es_sync_vmsa", "DR7 %#x has bits other than 0x400", src.DR7)
	}
	for i := 0; i < 8; i++ {
		switch (src.GPAT >> (8 * i)) & 0xff {
		case 0, 1, 4, 5, 6, 7:
			continue
		}
		add("kvm:kvm_pat_valid", "G_PAT %#x has an invalid memory type", src.GPAT)
		break
	}
	switch x := src.XCR0; {
	case x&1 == 0 || x&4 != 0 && x&2 == 0:
		add("kvm:__kvm_set_xcr", "XCR0 %#x is invalid", x)
	case x&^7 != 0:
		add("unmodelled:__kvm_set_xcr", "XCR0 %#x has bits beyond x87/SSE/AVX that depend on the CPU model", x)
	}
	if src.RFLAGS&rflagsVM != 0 {
		add("unmodelled:kvm_put_sregs", "RFLAGS.VM set: QEMU passes virtual-8086 segments")
	}

	// KVM: the VMCB save area as its setters leave it, copied by
	// sev_es_sync_vmsa into a zeroed page, then the registers it writes.
	out := &snp.VMSA{}
	seg := func(s snp.Segment) snp.Segment {
		// QEMU's FLAGS_VMSA_TO_SEGCACHE keeps attrib bits 12-15 in flags
		// bits 24-27, which set_seg (target/i386/kvm/kvm.c) drops;
		// svm_set_segment rebuilds bits 0-11 (type, S, DPL, P, AVL, L, DB,
		// G) from the fields set_seg passed.
		s.Attrib &= 0x0fff
		return s
	}
	out.ES, out.CS, out.SS, out.DS, out.FS, out.GS = seg(src.ES), seg(src.CS), seg(src.SS), seg(src.DS), seg(src.FS), seg(src.GS)
	out.LDTR, out.TR = seg(src.LDTR), seg(src.TR)
	if fromFile {
		// sev_apply_cpu_context loads R_TR with vmsa.ldtr.base.
		out.TR.Base = src.LDTR.Base
	}
	// kvm_put_sregs passes only base and a u16 limit of the descriptor
	// tables (struct kvm_dtable); svm_set_gdt/svm_set_idt leave selector
	// and attrib as init_vmcb set them: zero.
	out.GDTR = snp.Segment{Base: src.GDTR.Base, Limit: src.GDTR.Limit & 0xffff}
	out.IDTR = snp.Segment{Base: src.IDTR.Base, Limit: src.IDTR.Limit & 0xffff}
	out.CPL = uint8(src.SS.Attrib>>5) & 3 // svm_set_segment: CPL = SS.DPL
	out.EFER = efer | eferSVME            // svm_set_efer
	out.CR4 = cr4 | cr4MCE                // svm_set_cr4: the host's CR4.MCE
	out.CR3 = src.CR3                     // sev_post_set_cr3
	out.CR0 = cr0 &^ (cr0CD | cr0NW)      // svm_set_cr0, KVM_X86_QUIRK_CD_NW_CLEARED
	out.DR7, out.DR6 = src.DR7, src.DR6
	out.RFLAGS = src.RFLAGS | 2 // __set_regs: X86_EFLAGS_FIXED
	out.GPAT = src.GPAT
	out.RIP = src.RIP
	out.RAX, out.RCX, out.RDX, out.RBX = src.RAX, src.RCX, src.RDX, src.RBX
	out.RSP, out.RBP, out.RSI, out.RDI = src.RSP, src.RBP, src.RSI, src.RDI
	out.R8, out.R9, out.R10, out.R11 = src.R8, src.R9, src.R10, src.R11
	out.R12, out.R13, out.R14, out.R15 = src.R12, src.R13, src.R14, src.R15
	out.XCR0 = src.XCR0
	out.SEVFeatures = features
	if host.INIT2() {
		// KVM's guest FPU keeps its initial state: QEMU's XSAVE state has
		// XSTATE_BV 0 after reset, and copy_uabi_to_xstate copies the
		// legacy area and MXCSR only for features set in it.
		out.X87FCW, out.MXCSR = x87FCWKVM, mxcsrKVM
	}
	return out, bad
}

// qemuResetState is the state QEMU gives a vCPU at reset
// (target/i386/cpu.c x86_cpu_reset_hold), as a VMSA, before KVM: CS
// 0xf000 with base eip&0xffff0000, RIP eip&0xffff, RDX the CPU model's
// CPUID(1).EAX, CR0 0x60000010, DR6/DR7 and PAT at their reset values,
// XCR0 1, FCW 0x37f and MXCSR 0x1f80.
func qemuResetState(eip uint32, signature uint32) *snp.VMSA {
	data := snp.Segment{Attrib: 0x93, Limit: 0xffff}
	return &snp.VMSA{
		ES: data, SS: data, DS: data, FS: data, GS: data,
		CS:     snp.Segment{Selector: 0xf000, Attrib: 0x9b, Limit: 0xffff, Base: uint64(eip & 0xffff0000)},
		GDTR:   snp.Segment{Limit: 0xffff},
		IDTR:   snp.Segment{Limit: 0xffff},
		LDTR:   snp.Segment{Attrib: 0x82, Limit: 0xffff},
		TR:     snp.Segment{Attrib: 0x8b, Limit: 0xffff},
		CR0:    qemuCR0,
		DR6:    0xffff0ff0,
		DR7:    dr7Reset,
		RFLAGS: 2,
		RIP:    uint64(eip & 0xffff),
		RDX:    uint64(signature),
		GPAT:   0x0007040600070406,
		XCR0:   1,
		X87FCW: x87FCWKVM,
		MXCSR:  mxcsrKVM,
	}
}

// vmsaChanges lists the fields whose value in the measured page differs
// from the file's page, in offset order.
func vmsaChanges(file, measured []byte) []VMSAChange {
	var out []VMSAChange
	covered := make([]bool, snp.PageSize)
	for _, f := range vmsaFields {
		for i := f.off; i < f.off+f.size; i++ {
			covered[i] = true
		}
		a, b := file[f.off:f.off+f.size], measured[f.off:f.off+f.size]
		if string(a) == string(b) {
			continue
		}
		out = append(out, VMSAChange{Field: f.name, File: fieldValue(a), Measured: fieldValue(b)})
	}
	first, last := -1, -1
	for i := range file {
		if !covered[i] && file[i] != measured[i] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 {
		out = append(out, VMSAChange{Field: fmt.Sprintf("other bytes %#x-%#x", first, last), File: "non-zero", Measured: "0"})
	}
	return out
}

// fieldValue formats a little-endian field: a hex number up to 8 bytes,
// else the bytes in hex.
func fieldValue(b []byte) string {
	if len(b) > 8 {
		return hex.EncodeToString(b)
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return fmt.Sprintf("%#x", v)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
