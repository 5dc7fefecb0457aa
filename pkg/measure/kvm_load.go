package measure

import (
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// QEMU's IGVM loader (backends/igvm.c, QEMU >= 10.1) as far as it decides
// what the SNP firmware measures, and in which order
// (docs/kvm-measurement.md sections 2 to 4).

// kvmUpdate is one launch update QEMU queues (cgs_set_guest_state →
// snp_launch_update_data), issued first in, first out at launch finish
// (sev_snp_launch_finish): a region of PAGE_DATA directives, or a
// parameter area inserted as UNMEASURED pages.
type kvmUpdate struct {
	region []*igvm.PageData
	insert *igvm.ParameterInsert
	size   uint64 // bytes of the inserted parameter area
}

// qemuLoad is what qemuLoadIGVM read from a file.
type qemuLoad struct {
	updates []kvmUpdate
	// contexts are the VP contexts by vCPU index (a later one for the same
	// index replaces an earlier one, as sev_set_cpu_context does), only
	// those below the vCPU count; apContexts says whether the file has a
	// VP context for any vCPU but 0.
	contexts   map[uint16]*igvm.VPContext
	apContexts bool
	idBlock    *Digest
	violations []KVMViolation
	warnings   []string
}

// qemuHandled are the directive types QEMU has a handler for (handlers[]
// in backends/igvm.c); qigvm_handler ends the load on any other, as on
// any initialization header but GUEST_POLICY. MADT is handled by the
// QEMU master read for this (after 10.1).
var qemuHandled = map[igvm.HeaderType]bool{
	igvm.TypePageData: true, igvm.TypeVPContext: true, igvm.TypeParameterArea: true,
	igvm.TypeParameterInsert: true, igvm.TypeMemoryMap: true, igvm.TypeVPCountParameter: true,
	igvm.TypeEnvironmentInfo: true, igvm.TypeRequiredMemory: true, igvm.TypeSNPIDBlock: true,
	igvm.TypeMADT: true,
}

// qemuLoadIGVM walks the directives of f for the SEV-SNP platform mask as
// qigvm_process_file does, for a guest with vcpus vCPUs.
//
// Regions (qigvm_process_mem_page): consecutive PAGE_DATA directives form
// one region while each directly follows the previous directive, starts
// where the previous page ends and has the same flags word, data type,
// compatibility mask and data presence (qigvm_page_attrs_equal). A region
// is handed over (queued) only when a later PAGE_DATA breaks it, or at the
// end of the directive section; other directives do not flush it. A
// PARAMETER_INSERT queues its whole area at once
// (qigvm_directive_parameter_insert), so an insert after a still-open
// region is measured before that region.
func qemuLoadIGVM(f *igvm.File, mask uint32, vcpus int) *qemuLoad {
	ld := &qemuLoad{contexts: map[uint16]*igvm.VPContext{}}
	bad := func(rule, format string, a ...any) {
		ld.violations = append(ld.violations, KVMViolation{rule, fmt.Sprintf(format, a...)})
	}
	for i, h := range f.Initialization() {
		if h.Type() != igvm.TypeGuestPolicy {
			bad("qemu:qigvm_handler", "initialization header %d is %v, which QEMU does not handle", i, h.Type())
		}
	}
	areas := map[uint32]uint64{}
	var region []*igvm.PageData
	last := -1 // directive index of the region's last page
	flush := func() {
		if len(region) > 0 {
			ld.updates = append(ld.updates, kvmUpdate{region: region})
			region = nil
		}
	}
	idBlocks := 0
	for i, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.PageData:
			if x.CompatibilityMask&mask == 0 {
				continue
			}
			if n := len(region); n > 0 {
				p := region[n-1]
				same := p.Flags == x.Flags && p.DataType == x.DataType && p.CompatibilityMask == x.CompatibilityMask &&
					igvm.HasData(p) == igvm.HasData(x) && p.GPA+p.PageSize() == x.GPA && last == i-1
				if !same {
					flush()
				}
			}
			region = append(region, x)
			last = i
		case *igvm.ParameterArea:
			areas[x.ParameterAreaIndex] = x.NumberOfBytes
		case *igvm.ParameterInsert:
			if x.CompatibilityMask&mask == 0 {
				continue
			}
			size, ok := areas[x.ParameterAreaIndex]
			if !ok {
				// qigvm_find_param_entry warns and the insert does nothing.
				ld.warnings = append(ld.warnings, fmt.Sprintf("parameter insert at %#x names parameter area %d, which is not declared before it: QEMU ignores it", x.GPA, x.ParameterAreaIndex))
				continue
			}
			ld.updates = append(ld.updates, kvmUpdate{insert: x, size: size})
		case *igvm.VPContext:
			if x.CompatibilityMask&mask == 0 {
				continue
			}
			if x.VPIndex != 0 {
				ld.apContexts = true
			}
			if int(x.VPIndex) >= vcpus {
				bad("qemu:sev_set_cpu_context", "VP context for vCPU %d, but the guest has %d vCPU(s)", x.VPIndex, vcpus)
				continue
			}
			ld.contexts[x.VPIndex] = x
		case *igvm.SNPIDBlock:
			if x.CompatibilityMask&mask == 0 {
				continue
			}
			idBlocks++
			if idBlocks == 1 {
				d := Digest(x.LD)
				ld.idBlock = &d
			} else if idBlocks == 2 {
				bad("qemu:qigvm_directive_snp_id_block", "more than one SNP_ID_BLOCK")
			}
		default:
			if !qemuHandled[h.Type()] {
				bad("qemu:qigvm_handler", "directive %d is %v, which QEMU does not handle", i, h.Type())
			}
		}
	}
	flush()
	return ld
}
