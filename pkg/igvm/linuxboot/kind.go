package linuxboot

import (
	"fmt"
	"strings"
)

// LayoutKind is the hypervisor loader an image is laid out for. The guest
// memory is the same for both (the kernel, boot_params, command line,
// initrd, page tables, ACPI, CPUID and secrets pages at igvmgen's
// addresses); the kinds differ in where the initial vCPU state goes and
// what it holds, and in the directives around it.
type LayoutKind uint8

const (
	// LayoutMSHV is igvm-tooling's igvmgen layout, for cloud-hypervisor
	// on Microsoft's hypervisor (the Azure path): the VMSA of vCPU 0 at
	// 0x803000 among the pages, a parameter area at 0x802000 (VP count,
	// memory map), sev_features 0x9 (SNP, restricted injection). Its mshv
	// launch digest equals igvmgen's. The default.
	LayoutMSHV LayoutKind = iota
	// LayoutKVM is for QEMU (>= 10.1, -object igvm-cfg) on KVM: the VP
	// context of vCPU 0 last, at KVMVMSAGPA, holding exactly the register
	// values KVM measures (docs/kvm-measurement.md), so the file's VMSA is
	// the measured one: EFER with SVME, CR0 with ET, CR4 with MCE, TR.base
	// equal to LDTR.base, DR6/DR7 at their reset values, x87 FCW 0x37f and
	// MXCSR 0x1f80 (KVM_SEV_INIT2 hosts, 6.11 and later), sev_features 0x1
	// (QEMU refuses restricted injection). No parameter area (Linux reads
	// none, and QEMU writes its memory map at the area's start rather than
	// at MEMORY_MAP's offset) and no directive QEMU does not handle.
	LayoutKVM
)

// KVMVMSAGPA is the guest-physical address KVM measures every VMSA at
// (INITIAL_VMSA_GPA in Linux arch/x86/kvm/svm/sev.c); QEMU refuses a VP
// context placed elsewhere (check_vmsa_supported).
const KVMVMSAGPA = 0xFFFFFFFFF000

// LayoutKinds lists the layout kinds.
var LayoutKinds = []LayoutKind{LayoutMSHV, LayoutKVM}

// String returns "mshv" or "kvm".
func (k LayoutKind) String() string {
	switch k {
	case LayoutMSHV:
		return "mshv"
	case LayoutKVM:
		return "kvm"
	}
	return fmt.Sprintf("LayoutKind(%d)", uint8(k))
}

// ParseLayoutKind parses "mshv" or "kvm" (case-insensitive).
func ParseLayoutKind(s string) (LayoutKind, error) {
	for _, k := range LayoutKinds {
		if strings.EqualFold(s, k.String()) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("linuxboot: unknown layout %q (want mshv or kvm)", s)
}

// MarshalText encodes the kind as its name.
func (k LayoutKind) MarshalText() ([]byte, error) {
	if int(k) >= len(LayoutKinds) {
		return nil, fmt.Errorf("linuxboot: unknown layout kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText parses the kind's name.
func (k *LayoutKind) UnmarshalText(b []byte) error {
	v, err := ParseLayoutKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
