package measure

import (
	"encoding/json"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// RefSpec says which reference values to compute for an image.
type RefSpec struct {
	Profiles      []Profile
	CPUs          []CPUModel // kvm: one entry per CPU model
	VCPUs         []int      // vCPU counts to list (kvm; mshv has one digest)
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
}

// ReferenceEntry is one platform's expected launch digests.
type ReferenceEntry struct {
	Profile       Profile `json:"profile"`
	CPU           string  `json:"cpu,omitempty"`
	CPUSignature  string  `json:"cpu_signature,omitempty"`
	HostKernel    string  `json:"host_kernel,omitempty"`
	GuestFeatures string  `json:"guest_features,omitempty"`
	// Digest is set for mshv (independent of the vCPU count).
	Digest *Digest `json:"digest,omitempty"`
	// kvm: the 1-vCPU digest, the AP VMSA hash and the listed counts.
	OneVCPUDigest *Digest      `json:"one_vcpu_digest,omitempty"`
	APVMSAHash    *Digest      `json:"ap_vmsa_sha384,omitempty"`
	APVMSAGPA     string       `json:"ap_vmsa_gpa,omitempty"`
	ByVCPUs       []VCPUDigest `json:"by_vcpus,omitempty"`
}

// VCPUDigest is the digest for one vCPU count.
type VCPUDigest struct {
	VCPUs  int    `json:"vcpus"`
	Digest Digest `json:"digest"`
}

// MarshalJSON prints the policy as hex.
func (r ReferenceValues) MarshalJSON() ([]byte, error) {
	type alias ReferenceValues
	return json.Marshal(struct {
		Policy string `json:"policy"`
		alias
	}{fmt.Sprintf("%#x", uint64(r.Policy)), alias(r)})
}

// ComputeReferenceValues measures f for every combination in spec.
func ComputeReferenceValues(f *igvm.File, spec RefSpec) (*ReferenceValues, error) {
	if len(spec.Profiles) == 0 {
		spec.Profiles = Profiles
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
	for _, p := range spec.Profiles {
		switch p {
		case ProfileMSHV:
			res, err := MeasureIGVM(f, Options{Profile: p})
			if err != nil {
				return nil, err
			}
			rv.Policy, rv.IDBlockDigest = res.Policy, res.IDBlockDigest
			d := res.Digest
			rv.Entries = append(rv.Entries, ReferenceEntry{Profile: p, Digest: &d})
		case ProfileKVM:
			cpus := spec.CPUs
			if len(cpus) == 0 {
				return nil, fmt.Errorf("measure: reference values for kvm need at least one CPU model")
			}
			for _, cpu := range cpus {
				res, err := MeasureIGVM(f, Options{Profile: p, VCPUs: 1, CPU: &cpu, HostKernel: spec.HostKernel,
					GuestFeatures: spec.GuestFeatures, SkipKVMChecks: spec.SkipKVMChecks})
				if err != nil {
					return nil, err
				}
				rv.Policy, rv.IDBlockDigest = res.Policy, res.IDBlockDigest
				e := ReferenceEntry{Profile: p, CPU: cpu.Name, CPUSignature: fmt.Sprintf("%#x", cpu.Signature),
					HostKernel: res.HostKernel, GuestFeatures: fmt.Sprintf("%#x", res.GuestFeatures),
					OneVCPUDigest: res.OneVCPUDigest, APVMSAHash: res.APVMSAHash, APVMSAGPA: fmt.Sprintf("%#x", uint64(KVMVMSAGPA))}
				for _, n := range spec.VCPUs {
					var d Digest
					if res.APVMSAHash != nil {
						d, err = ExtendVCPUs(*res.OneVCPUDigest, *res.APVMSAHash, n)
					} else { // the file has its own AP contexts: measure each count
						var r *Result
						r, err = MeasureIGVM(f, Options{Profile: p, VCPUs: n, CPU: &cpu, HostKernel: spec.HostKernel,
							GuestFeatures: spec.GuestFeatures, SkipKVMChecks: spec.SkipKVMChecks})
						if r != nil {
							d = r.Digest
						}
					}
					if err != nil {
						return nil, err
					}
					e.ByVCPUs = append(e.ByVCPUs, VCPUDigest{VCPUs: n, Digest: d})
				}
				rv.Entries = append(rv.Entries, e)
			}
		default:
			return nil, fmt.Errorf("measure: unknown profile %q (want mshv or kvm)", p)
		}
	}
	rv.PolicyFlags = rv.Policy.Flags()
	return rv, nil
}
