package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// kvmPlan is what the kvm profile knows before it hashes a page: QEMU's
// launch updates, the VMSA KVM measures for each vCPU, and the rules the
// launch breaks.
type kvmPlan struct {
	load       *qemuLoad
	vmsaHashes []Digest // per vCPU
	vmsaWhat   []string
	violations []KVMViolation
}

// planKVM reads what QEMU (>= 10.1) and KVM take from the file for a launch
// with m.opts (docs/kvm-measurement.md): the launch updates QEMU's IGVM
// loader queues (qemuLoadIGVM), and one VMSA per vCPU, vCPU 0 first, each
// built by KVM from the vCPU's registers (kvmVMSA) and measured at
// KVMVMSAGPA at launch finish (snp_launch_finish →
// snp_launch_update_vmsa). It fills the result's kvm fields.
func (m *measurer) planKVM(mask uint32) (*kvmPlan, error) {
	host := m.opts.HostKernel
	m.res.HostKernel = host.String()
	ld := qemuLoadIGVM(m.f, mask, m.opts.VCPUs)
	p := &kvmPlan{load: ld, violations: ld.violations}
	m.res.IDBlockDigest = ld.idBlock
	m.res.Warnings = append(m.res.Warnings, ld.warnings...)
	p.violations = append(p.violations, KVMLaunchViolations(host, nil)...)

	// sev_features: QEMU passes vCPU 0's to KVM_SEV_INIT2
	// (sev_common_kvm_init); KVM writes the result into every VMSA
	// (sev_es_sync_vmsa).
	bsp := ld.contexts[0]
	var bspPage []byte
	var bspVMSA *snp.VMSA
	features := uint64(0)
	if bsp != nil {
		var err error
		if bspPage, bspVMSA, err = m.fileVMSA(bsp); err != nil {
			return nil, err
		}
		features = bspVMSA.SEVFeatures
	} else {
		m.res.Warnings = append(m.res.Warnings, "the file has no VP context for vCPU 0: QEMU starts it from its reset state, like an AP")
	}
	if m.opts.GuestFeatures != nil {
		features = *m.opts.GuestFeatures
		if features&FeatureSNPActive == 0 {
			return nil, fmt.Errorf("measure: kvm: guest SEV features %#x lack SNP_ACTIVE (bit 0)", features)
		}
		if bspPage != nil {
			bspPage = append([]byte(nil), bspPage...)
			binary.LittleEndian.PutUint64(bspPage[0x3b0:], features)
			bspVMSA.SEVFeatures = features
		}
	}
	kvmFeatures := host.EffectiveFeatures(features)
	m.res.GuestFeatures = hexnum.Uint64(kvmFeatures)

	// Every vCPU without a VP context starts from QEMU's reset state, so
	// its VMSA hash is computed once.
	var resetHash *Digest
	reset := func() (Digest, error) {
		if resetHash == nil {
			if m.opts.CPU == nil {
				return Digest{}, errors.New("measure: kvm: a vCPU without a VP context in the file needs the CPU model (its signature is in the VMSA KVM builds)")
			}
			v, _ := kvmVMSA(qemuResetState(bspResetEIP, m.opts.CPU.Signature), host, kvmFeatures, false)
			d := Digest(sha512.Sum384(v.Marshal()))
			resetHash = &d
		}
		return *resetHash, nil
	}
	p.vmsaHashes = make([]Digest, m.opts.VCPUs)
	p.vmsaWhat = make([]string, m.opts.VCPUs)
	for i := range m.opts.VCPUs {
		ctx, ok := ld.contexts[uint16(i)]
		if !ok {
			h, err := reset()
			if err != nil {
				return nil, err
			}
			p.vmsaHashes[i], p.vmsaWhat[i] = h, fmt.Sprintf("VMSA of vCPU %d (reset state)", i)
			continue
		}
		page, v := bspPage, bspVMSA
		if i != 0 {
			var err error
			if page, v, err = m.fileVMSA(ctx); err != nil {
				return nil, err
			}
		}
		p.violations = append(p.violations, qemuCheckVMSA(ctx.GPA, page, ctx.VPIndex)...)
		out, bad := kvmVMSA(v, host, kvmFeatures, true)
		for _, b := range bad {
			b.Detail = fmt.Sprintf("vCPU %d: %s", i, b.Detail)
			p.violations = append(p.violations, b)
		}
		measured := out.Marshal()
		if i == 0 {
			m.res.VMSAChanges = vmsaChanges(page, measured)
			if n := len(m.res.VMSAChanges); n > 0 {
				names := make([]string, n)
				for j, c := range m.res.VMSAChanges {
					names[j] = c.Field
				}
				m.res.Warnings = append(m.res.Warnings, WarnVMSAChanged+" "+strings.Join(names, ", "))
			}
		}
		p.vmsaHashes[i], p.vmsaWhat[i] = Digest(sha512.Sum384(measured)), fmt.Sprintf("VMSA of vCPU %d (file, by KVM)", i)
	}
	if !ld.apContexts && m.opts.CPU != nil {
		m.res.CPU, m.res.CPUSignature = m.opts.CPU.Name, hexnum.Uint64(m.opts.CPU.Signature)
		h, err := reset()
		if err != nil {
			return nil, err
		}
		m.res.APVMSAHash = &h
	}
	return p, nil
}

// kvm measures the file as QEMU and KVM do (planKVM), refusing a launch
// that breaks their rules unless Options.SkipKVMChecks.
func (m *measurer) kvm(mask uint32) error {
	p, err := m.planKVM(mask)
	if err != nil {
		return err
	}
	if len(p.violations) > 0 && !m.opts.SkipKVMChecks {
		return &KVMCheckError{Violations: p.violations}
	}
	if len(p.violations) > 0 {
		m.res.KVMChecksSkipped, m.res.Hypothetical = p.violations, true
	}

	// The pages, in QEMU's queue order.
	var items []item
	for _, u := range p.load.updates {
		for _, x := range u.region {
			items = append(items, item{gpa: x.GPA, hdr: x})
		}
	}
	m.items = items
	m.pool = newHashPool(m.f, items, false)
	for _, u := range p.load.updates {
		if u.insert != nil {
			for off := uint64(0); off < u.size; off += snp.PageSize {
				if err := m.add(u.insert.GPA+off, snp.PageUnmeasured, Digest{}, "IGVM parameter area"); err != nil {
					return err
				}
			}
			continue
		}
		for _, x := range u.region {
			m.next++
			// cgs_set_guest_state sends CGS_PAGE_TYPE_ZERO (a region without
			// file data) to launch_update_data like a NORMAL region: a
			// NORMAL page of zeros, never the SNP ZERO page type.
			if err := m.pageData(x); err != nil {
				return err
			}
		}
	}
	for i, h := range p.vmsaHashes {
		if err := m.add(KVMVMSAGPA, snp.PageVMSA, h, p.vmsaWhat[i]); err != nil {
			return err
		}
		if i == 0 {
			m.flush()
			one := m.chain.Digest()
			m.res.OneVCPUDigest = &one
		}
	}
	return nil
}
