package measure

import (
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// VMMType names the hypervisor that launches an OVMF guest; each one sets
// up the initial vCPU state (and a few metadata pages) slightly
// differently, so each gives its own launch digest for the same firmware.
type VMMType int

// The VMM types sev-snp-measure knows.
const (
	VMMQEMU VMMType = iota // QEMU on KVM (the default)
	VMMEC2                 // Amazon EC2
	VMMGCE                 // Google Compute Engine
)

// String returns the name sev-snp-measure uses for the VMM type.
func (v VMMType) String() string {
	switch v {
	case VMMQEMU:
		return "QEMU"
	case VMMEC2:
		return "ec2"
	case VMMGCE:
		return "gce"
	}
	return fmt.Sprintf("VMMType(%d)", int(v))
}

// ParseVMMType parses "QEMU", "ec2" or "gce" (case does not matter).
func ParseVMMType(s string) (VMMType, error) {
	for _, v := range []VMMType{VMMQEMU, VMMEC2, VMMGCE} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("measure: unknown VMM type %q (want QEMU, ec2 or gce)", s)
}

// CPUSignature computes the CPUID Fn0000_0001_EAX signature (what KVM puts
// in RDX of a vCPU at reset) from a family, model and stepping, as AMD's
// CPUID specification (publication 25481) defines it; it is what
// sev-snp-measure's --vcpu-family/--vcpu-model/--vcpu-stepping give.
// Named QEMU models are looked up with LookupCPU.
func CPUSignature(family, model, stepping uint32) uint32 {
	return cpuSignature(family, model, stepping)
}

// bspResetEIP is the architectural reset vector where the boot processor
// starts (CS base 0xffff0000, IP 0xfff0).
const bspResetEIP = 0xfffffff0

// ovmfVMSA builds the initial save area of a vCPU of an OVMF guest that
// starts at eip, the way KVM (and EC2's and GCE's hypervisors) set it up
// for SNP_LAUNCH_UPDATE of the VMSA, as sev-snp-measure 0.0.13 models it.
// For QEMU this is the KVM reset state of a host kernel 6.10 or newer
// (KVM_SEV_INIT2: MXCSR 0x1f80 and x87 FCW 0x37f).
func ovmfVMSA(eip uint32, sevFeatures uint64, vcpuSig uint32, vmm VMMType) *snp.VMSA {
	csFlags, ssFlags, trFlags := uint16(0x9b), uint16(0x93), uint16(0x8b)
	gpat := uint64(0x0007040600070406) // PAT MSR reset value, AMD APM vol. 2 A.3
	var rdx uint64
	var mxcsr uint32
	var fcw uint16
	switch vmm {
	case VMMQEMU:
		rdx, mxcsr, fcw = uint64(vcpuSig), 0x1f80, 0x37f
	case VMMEC2:
		if eip == bspResetEIP {
			csFlags = 0x9a
		}
		ssFlags, trFlags = 0x92, 0x83
		rdx = 0x600
	case VMMGCE:
		gpat = 0x00070106 // GCE's hypervisor overwrites the default PAT
		rdx = 0x600
	}
	seg := func(sel, attrib uint16, limit uint32, base uint64) snp.Segment {
		return snp.Segment{Selector: sel, Attrib: attrib, Limit: limit, Base: base}
	}
	return &snp.VMSA{
		ES:          seg(0, 0x93, 0xffff, 0),
		CS:          seg(0xf000, csFlags, 0xffff, uint64(eip&0xffff0000)),
		SS:          seg(0, ssFlags, 0xffff, 0),
		DS:          seg(0, 0x93, 0xffff, 0),
		FS:          seg(0, 0x93, 0xffff, 0),
		GS:          seg(0, 0x93, 0xffff, 0),
		GDTR:        seg(0, 0, 0xffff, 0),
		IDTR:        seg(0, 0, 0xffff, 0),
		LDTR:        seg(0, 0x82, 0xffff, 0),
		TR:          seg(0, trFlags, 0xffff, 0),
		EFER:        0x1000, // KVM sets EFER.SVME
		CR4:         0x40,   // KVM sets CR4.MCE
		CR0:         0x10,
		DR7:         0x400,
		DR6:         0xffff0ff0,
		RFLAGS:      0x2,
		RIP:         uint64(eip & 0xffff),
		GPAT:        gpat,
		RDX:         rdx,
		SEVFeatures: sevFeatures,
		XCR0:        0x1,
		MXCSR:       mxcsr,
		X87FCW:      fcw,
	}
}
