package measure

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// RefSpec says which reference values to compute for an image.
type RefSpec struct {
	// Profiles to list. Empty means every profile the file's layout
	// satisfies: mshv always, kvm when the file passes the kvm checks
	// (KVMCheckError) or SkipKVMChecks is set; a profile left out is
	// named in ReferenceValues.Skipped with the reason. A profile named
	// here that the file cannot satisfy is an error.
	Profiles      []Profile
	CPUs          []CPUModel // kvm: one entry per CPU model (at least one)
	VCPUs         []int      // vCPU counts to list (kvm; mshv has one digest); empty means 1
	HostKernel    HostKernel
	GuestFeatures *uint64
	SkipKVMChecks bool
}

// ReferenceValues is what an attestation service needs to accept an image:
// the launch digest per profile, CPU model and vCPU count, and the guest
// policy. For kvm, each entry also carries the 1-vCPU digest and the
// SHA-384 of the AP VMSA page, so a consumer can derive any vCPU count:
// digest(N) = digest(N-1) extended by one PAGE_INFO record
// {contents = ap_vmsa_sha384, type VMSA (2), GPA 0xFFFFFFFFF000}.
type ReferenceValues struct {
	Policy      snp.GuestPolicy `json:"policy"`
	PolicyFlags []string        `json:"policy_flags"`
	// IDBlockDigest is the LD of the file's SNP_ID_BLOCK, if any.
	IDBlockDigest *Digest          `json:"id_block_digest,omitempty"`
	Entries       []ReferenceEntry `json:"reference_values"`
	// Skipped are the profiles left out of the default set because the
	// file's layout cannot satisfy them.
	Skipped []SkippedProfile `json:"skipped,omitempty"`
}

// SkippedProfile is a profile ComputeReferenceValues left out, and why.
type SkippedProfile struct {
	Profile Profile `json:"profile"`
	Reason  string  `json:"reason"`
	// Violations are the QEMU/KVM rules the file breaks (kvm).
	Violations []KVMViolation `json:"violations,omitempty"`
}

// ReferenceEntry is one platform's expected launch digests.
type ReferenceEntry struct {
	Profile       Profile       `json:"profile"`
	CPU           string        `json:"cpu,omitempty"`
	CPUSignature  hexnum.Uint64 `json:"cpu_signature,omitempty"`
	HostKernel    string        `json:"host_kernel,omitempty"`
	GuestFeatures hexnum.Uint64 `json:"guest_features,omitempty"`
	// Digest is set for mshv (independent of the vCPU count).
	Digest *Digest `json:"digest,omitempty"`
	// kvm: the 1-vCPU digest, the AP VMSA hash and the listed counts.
	OneVCPUDigest *Digest       `json:"one_vcpu_digest,omitempty"`
	APVMSAHash    *Digest       `json:"ap_vmsa_sha384,omitempty"`
	APVMSAGPA     hexnum.Uint64 `json:"ap_vmsa_gpa,omitempty"`
	ByVCPUs       []VCPUDigest  `json:"by_vcpus,omitempty"`
	// Hypothetical is set, and KVMChecksSkipped lists the QEMU/KVM rules
	// broken, when the digests were computed although QEMU or KVM would
	// refuse the launch (RefSpec.SkipKVMChecks): no attestation report can
	// carry them.
	Hypothetical     bool           `json:"hypothetical,omitempty"`
	KVMChecksSkipped []KVMViolation `json:"kvm_checks_skipped,omitempty"`
}

// VCPUDigest is the digest for one vCPU count.
type VCPUDigest struct {
	VCPUs  int    `json:"vcpus"`
	Digest Digest `json:"digest"`
}

// ComputeReferenceValues measures f for every combination in spec. It stops
// with ctx's error soon after ctx is cancelled.
func ComputeReferenceValues(ctx context.Context, f *igvm.File, spec RefSpec) (*ReferenceValues, error) {
	profiles, explicit := spec.Profiles, true
	if len(profiles) == 0 {
		profiles, explicit = Profiles, false
	}
	if len(spec.VCPUs) == 0 {
		spec.VCPUs = []int{1}
	}
	for _, n := range spec.VCPUs {
		if n < 1 || n > MaxVCPUs {
			return nil, fmt.Errorf("measure: %d vCPUs: want 1 to %d", n, MaxVCPUs)
		}
	}
	rv := &ReferenceValues{}
	for _, p := range profiles {
		switch p {
		case ProfileMSHV:
			res, err := MeasureIGVM(ctx, f, Options{Profile: p})
			if err != nil {
				return nil, err
			}
			rv.Policy, rv.IDBlockDigest = res.Policy, res.IDBlockDigest
			d := res.Digest
			rv.Entries = append(rv.Entries, ReferenceEntry{Profile: p, Digest: &d})
		case ProfileKVM:
			if len(spec.CPUs) == 0 {
				return nil, errors.New("measure: reference values for kvm need at least one CPU model")
			}
			entries, err := kvmEntries(ctx, f, spec)
			var kce *KVMCheckError
			if !explicit && errors.As(err, &kce) {
				rv.Skipped = append(rv.Skipped, SkippedProfile{Profile: p, Reason: strings.TrimPrefix(kce.Error(), "measure: kvm: "), Violations: kce.Violations})
				continue
			}
			if err != nil {
				return nil, err
			}
			rv.Policy = entries[0].policy
			rv.IDBlockDigest = entries[0].idBlock
			for _, e := range entries {
				rv.Entries = append(rv.Entries, e.ReferenceEntry)
			}
		default:
			return nil, fmt.Errorf("measure: unknown profile %q (want mshv or kvm)", p)
		}
	}
	rv.PolicyFlags = rv.Policy.Flags()
	if rv.PolicyFlags == nil {
		rv.PolicyFlags = []string{}
	}
	return rv, nil
}

type kvmEntry struct {
	ReferenceEntry
	policy  snp.GuestPolicy
	idBlock *Digest
}

// kvmEntries measures f under kvm for each CPU model of spec.
func kvmEntries(ctx context.Context, f *igvm.File, spec RefSpec) ([]kvmEntry, error) {
	var out []kvmEntry
	for _, cpu := range spec.CPUs {
		opts := Options{Profile: ProfileKVM, VCPUs: 1, CPU: &cpu, HostKernel: spec.HostKernel,
			GuestFeatures: spec.GuestFeatures, SkipKVMChecks: spec.SkipKVMChecks}
		res, err := MeasureIGVM(ctx, f, opts)
		if err != nil {
			return nil, err
		}
		e := kvmEntry{policy: res.Policy, idBlock: res.IDBlockDigest, ReferenceEntry: ReferenceEntry{
			Profile: ProfileKVM, CPU: cpu.Name, CPUSignature: hexnum.Uint64(cpu.Signature),
			HostKernel: res.HostKernel, GuestFeatures: res.GuestFeatures,
			OneVCPUDigest: res.OneVCPUDigest, APVMSAHash: res.APVMSAHash, APVMSAGPA: KVMVMSAGPA,
			Hypothetical: res.Hypothetical, KVMChecksSkipped: res.KVMChecksSkipped,
		}}
		for _, n := range spec.VCPUs {
			var d Digest
			if res.APVMSAHash != nil {
				if d, err = ExtendVCPUs(*res.OneVCPUDigest, *res.APVMSAHash, n); err != nil {
					return nil, err
				}
			} else { // the file has its own AP contexts: measure each count
				opts.VCPUs = n
				r, err := MeasureIGVM(ctx, f, opts)
				if err != nil {
					return nil, err
				}
				d = r.Digest
			}
			e.ByVCPUs = append(e.ByVCPUs, VCPUDigest{VCPUs: n, Digest: d})
		}
		out = append(out, e)
	}
	return out, nil
}
