package measure

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// KVMVMSAGPA is the guest-physical address KVM gives every VMSA page in
// the launch digest (SNP_LAUNCH_UPDATE of the VMSA at LAUNCH_FINISH).
const KVMVMSAGPA = 0xFFFFFFFFF000

// MaxVCPUs is the largest vCPU count accepted (KVM's KVM_MAX_VCPUS on
// x86 is larger, but no SEV-SNP host supports more than 512 guest vCPUs).
const MaxVCPUs = 512

// SEV features bits of the VMSA (APM vol. 2, "SEV_FEATURES").
const (
	FeatureSNPActive uint64 = 1 << 0
	FeatureDebugSwap uint64 = 1 << 5
)

// CPUModel is a QEMU x86 CPU model as KVM sees it when it builds a
// vCPU's reset state: RDX at reset holds the CPUID(1).EAX signature.
type CPUModel struct {
	Name      string // QEMU name, e.g. "EPYC-Milan"
	Signature uint32 // CPUID Fn0000_0001_EAX
}

// cpuSignature composes CPUID Fn0000_0001_EAX from family, model and
// stepping (AMD CPUID specification #25481): families above 0xF put 0xF in
// the base field and the rest in the extended family field.
func cpuSignature(family, model, stepping uint32) uint32 {
	famLo, famHi := family, uint32(0)
	if family > 0xf {
		famLo, famHi = 0xf, (family-0xf)&0xff
	}
	return famHi<<20 | (model>>4&0xf)<<16 | famLo<<8 | (model&0xf)<<4 | stepping&0xf
}

// cpuModels are the QEMU builtin_x86_defs AMD EPYC models (target/i386/cpu.c)
// with their family/model/stepping.
var cpuModels = func() map[string]CPUModel {
	m := map[string]CPUModel{}
	add := func(sig uint32, names ...string) {
		for _, n := range names {
			m[strings.ToLower(n)] = CPUModel{Name: n, Signature: sig}
		}
	}
	add(cpuSignature(23, 1, 2), "EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4")
	add(cpuSignature(23, 49, 0), "EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Rome-v4")
	add(cpuSignature(25, 1, 1), "EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2")
	add(cpuSignature(25, 17, 0), "EPYC-Genoa", "EPYC-Genoa-v1")
	add(cpuSignature(26, 0, 0), "EPYC-Turin", "EPYC-Turin-v1")
	// Short names used on the command line.
	for short, full := range map[string]string{"rome": "EPYC-Rome", "milan": "EPYC-Milan", "genoa": "EPYC-Genoa", "turin": "EPYC-Turin"} {
		m[short] = m[strings.ToLower(full)]
	}
	return m
}()

// LookupCPU finds a CPU model by QEMU name (case-insensitive, e.g.
// "EPYC-v4", "EPYC-Milan") or short name (milan, genoa, turin, rome), or
// takes a raw signature given as hex ("0xa00f11").
func LookupCPU(name string) (CPUModel, error) {
	if m, ok := cpuModels[strings.ToLower(strings.TrimSpace(name))]; ok {
		return m, nil
	}
	if strings.HasPrefix(name, "0x") {
		if v, err := strconv.ParseUint(name[2:], 16, 32); err == nil {
			return CPUModel{Name: name, Signature: uint32(v)}, nil
		}
	}
	return CPUModel{}, fmt.Errorf("measure: unknown CPU model %q (known: %s, or a CPUID(1).EAX signature as 0x...)", name, strings.Join(CPUModelNames(), ", "))
}

// CPUModelNames lists the accepted CPU model names, sorted.
func CPUModelNames() []string {
	var names []string
	for _, m := range cpuModels {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}

// HostKernel is the host Linux version whose kvm_amd builds the VMSAs.
// Upstream KVM launches SEV-SNP guests from 6.11, and QEMU >= 10.1 creates
// them only with KVM_SEV_INIT2 (added in 6.10): every host before 6.11 is
// hypothetical (an out-of-tree SNP host branch), and a kvm digest for it
// is marked so (KVMViolation "hypothetical-host"). Two changes in kvm_amd
// alter the VMSA it measures:
//
//   - With KVM_SEV_INIT2 (6.10), sev_es_sync_vmsa also copies KVM's
//     initial FPU state, so every VMSA carries x87 FCW 0x37f and MXCSR
//     0x1f80 whatever the VMM set; before it these fields stay 0, for the
//     BSP too. With INIT2 the VMM passes the guest's sev_features.
//   - Before INIT2, sev_features were chosen by the kernel: SNP_ACTIVE,
//     plus DEBUG_SWAP (0x20) while kvm_amd's debug_swap parameter (added
//     in 6.5, commit d1f85fbe836e) defaulted to on, until commit
//     5abf6dceb066 "SEV: disable SEV-ES DebugSwap by default" (merged for
//     6.8 final, March 2024, and backported to later 6.6.y/6.7.y stable
//     releases: for those, give 6.8). The AMD SNP host branches based on
//     6.6/6.7 therefore measure 0x21.
type HostKernel struct {
	Major, Minor int
}

// DefaultHostKernel is the host kernel assumed when none is given: the
// first upstream release with SEV-SNP host support.
var DefaultHostKernel = HostKernel{6, 11}

// ParseHostKernel parses "6.11" (a trailing ".patch" or "-suffix" is
// ignored).
func ParseHostKernel(s string) (HostKernel, error) {
	v := s
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return HostKernel{}, fmt.Errorf("measure: host kernel %q: want MAJOR.MINOR, e.g. 6.11", s)
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || maj < 0 || min < 0 {
		return HostKernel{}, fmt.Errorf("measure: host kernel %q: want MAJOR.MINOR, e.g. 6.11", s)
	}
	hk := HostKernel{maj, min}
	if hk.less(HostKernel{6, 6}) {
		return HostKernel{}, fmt.Errorf("measure: host kernel %s: no kvm_amd before 6.6 launches SEV-SNP guests", hk)
	}
	return hk, nil
}

func (h HostKernel) less(o HostKernel) bool {
	return h.Major < o.Major || h.Major == o.Major && h.Minor < o.Minor
}

// String formats the version as MAJOR.MINOR, e.g. "6.11".
func (h HostKernel) String() string { return fmt.Sprintf("%d.%d", h.Major, h.Minor) }

// INIT2 reports whether the kernel creates SNP VMs with KVM_SEV_INIT2 and
// so initialises MXCSR and FCW in every VMSA.
func (h HostKernel) INIT2() bool { return !h.less(HostKernel{6, 10}) }

// Hypothetical reports whether upstream QEMU and KVM cannot launch an
// SEV-SNP guest on this host kernel (before 6.11).
func (h HostKernel) Hypothetical() bool { return h.less(HostKernel{6, 11}) }

// KVMLaunchViolations returns the QEMU and KVM acceptance rules a kvm
// launch on host breaks whatever the IGVM file holds: a host kernel
// without upstream SEV-SNP ("hypothetical-host") and, when features is
// not nil (guest SEV features given for the launch instead of the file's
// VMSA's), sev_features that QEMU's check_sev_features refuses. It lets a
// caller refuse a kvm target before any file is built; the kvm profile
// applies the same rules when it measures a file.
func KVMLaunchViolations(host HostKernel, features *uint64) []KVMViolation {
	var out []KVMViolation
	if host.Hypothetical() {
		out = append(out, KVMViolation{"hypothetical-host", fmt.Sprintf("host kernel %s: upstream KVM launches SEV-SNP guests from 6.11 and QEMU >= 10.1 needs KVM_SEV_INIT2; no upstream QEMU+KVM launch exists on this host", host)})
	}
	if features != nil {
		for _, p := range sevFeatureProblems(*features) {
			out = append(out, KVMViolation{"qemu:check_sev_features", p})
		}
	}
	return out
}

// DefaultDebugSwap reports whether kvm_amd adds DEBUG_SWAP to sev_features
// by default (6.6 and 6.7 as first released).
func (h HostKernel) DefaultDebugSwap() bool {
	return !h.less(HostKernel{6, 6}) && h.less(HostKernel{6, 8})
}

// EffectiveFeatures returns the sev_features KVM writes into every VMSA
// when the guest (vCPU 0's VMSA in an IGVM file) asks for features: with
// KVM_SEV_INIT2 those, plus SNP_ACTIVE (__sev_guest_init); before it what
// the kernel chose (SNP_ACTIVE, and DEBUG_SWAP on 6.6 and 6.7).
func (h HostKernel) EffectiveFeatures(features uint64) uint64 {
	if h.INIT2() {
		return features | FeatureSNPActive
	}
	if h.DefaultDebugSwap() {
		return FeatureSNPActive | FeatureDebugSwap
	}
	return FeatureSNPActive
}

// ResetVMSA is the VMSA KVM measures for a vCPU in its architectural reset
// state, as QEMU leaves an application processor that the boot file gives
// no context for (and as it leaves the BSP of an OVMF boot): QEMU's reset
// state (CS 0xf000:eip&0xffff with base eip&0xffff0000, RDX the CPU
// signature, CR0 0x60000010, DR6/DR7 and PAT at their reset values, XCR0
// 1) rebuilt by KVM: CD/NW cleared from CR0, CR4.MCE and EFER.SVME added,
// and the host kernel's sev_features (EffectiveFeatures of features) and
// FPU words. eip is the linear entry address (0xfffffff0 for the reset
// vector).
func ResetVMSA(eip uint32, cpu CPUModel, features uint64, host HostKernel) *snp.VMSA {
	v, _ := kvmVMSA(qemuResetState(eip, cpu.Signature), host, host.EffectiveFeatures(features), false)
	return v
}

// ExtendVCPUs returns the digest of a KVM launch with n vCPUs given the
// digest with one vCPU and the contents hash of an AP VMSA page: KVM
// measures the APs' VMSAs after the BSP's, each at KVMVMSAGPA.
func ExtendVCPUs(oneVCPU Digest, apVMSAHash Digest, n int) (Digest, error) {
	if n < 1 || n > MaxVCPUs {
		return Digest{}, fmt.Errorf("measure: %d vCPUs: want 1 to %d", n, MaxVCPUs)
	}
	c := NewChain(oneVCPU)
	for i := 1; i < n; i++ {
		if err := c.AddPageHash(KVMVMSAGPA, snp.PageVMSA, apVMSAHash); err != nil {
			return Digest{}, err
		}
	}
	return c.Digest(), nil
}
