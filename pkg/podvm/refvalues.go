package podvm

import (
	"fmt"

	"github.com/google/go-sev-guest/abi"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// ReferenceValuesSchema names the format of reference-values.json.
const ReferenceValuesSchema = "imagebuilder.podvm.reference-values/v1"

// ReferenceValues is reference-values.json: what an attestation service
// accepts for the image, per target.
type ReferenceValues struct {
	Schema  string            `json:"schema"`
	Name    string            `json:"name"`
	Targets []ReferenceTarget `json:"targets"`
}

// ReferenceTarget is one target's reference values.
type ReferenceTarget struct {
	Name string `json:"name"`
	// Platform is the target's platform (igvm-mshv, qemu-ovmf, ...) and
	// PlatformName Contrast's name for it (AKS-CLH-SNP, Metal-QEMU-SNP).
	Platform     string `json:"platform"`
	PlatformName string `json:"platform_name"`
	// RuntimeHandler is the node payload's runtime handler name, for the
	// target spec.runtime makes the payload of; "" for the others.
	RuntimeHandler string          `json:"runtime_handler,omitempty"`
	Policy         snp.GuestPolicy `json:"policy"`
	PolicyFlags    []string        `json:"policy_flags"`
	// Values are the launch digests: CPU model and vCPU count where the
	// digest depends on them.
	Values []TargetDigest `json:"values"`
}

// ContrastReferenceValues is reference-values.contrast.json: the shape
// Contrast's coordinator decodes (with unknown fields refused), a map of
// runtime handler name to reference values. A target without a runtime
// handler (no spec.runtime, or not its target) is keyed by its target
// name: no handler exists for it, and the operator keys it by the
// handler the nodes install.
type ContrastReferenceValues map[string]ContrastRuntime

// ContrastRuntime is the reference values of one runtime handler.
type ContrastRuntime struct {
	SNP []ContrastSNP `json:"snp"`
}

// ContrastSNP is Contrast's SNPReferenceValues: field names as Contrast
// decodes them; GuestPolicy and PlatformInfo are go-sev-guest's types.
type ContrastSNP struct {
	Platform           string
	ProductName        string
	TrustedMeasurement string
	// MinimumTCB is left for the operator to fill in, as Contrast ships
	// it: its four fields are null.
	MinimumTCB   ContrastTCB
	GuestPolicy  abi.SnpPolicy
	PlatformInfo abi.SnpPlatformInfo
	// CPUs is the vCPU count the digest is for (informative: the digest
	// holds it); left out where the digest does not depend on it.
	CPUs uint64 `json:",omitempty"`
}

// ContrastTCB is Contrast's SNPTCB: the minimum TCB versions, for the
// operator to set.
type ContrastTCB struct {
	BootloaderVersion *uint8
	TEEVersion        *uint8
	SNPVersion        *uint8
	MicrocodeVersion  *uint8
}

// ContrastProducts are the AMD products Contrast's coordinator accepts;
// an igvm-mshv digest, which no CPU model changes, is listed for each.
var ContrastProducts = []string{"Milan", "Genoa"}

// referenceValues makes both reference value files. left names the
// targets Contrast's file leaves out: none of their CPU models is a
// product Contrast accepts.
func referenceValues(name string, ms *measureStage, handlers map[string]string) (rv *ReferenceValues, crv ContrastReferenceValues, left []string, err error) {
	rv = &ReferenceValues{Schema: ReferenceValuesSchema, Name: name, Targets: []ReferenceTarget{}}
	crv = ContrastReferenceValues{}
	for _, tm := range ms.Targets {
		pn := ContrastPlatforms[tm.Platform]
		rt := ReferenceTarget{Name: tm.Name, Platform: tm.Platform, PlatformName: pn, RuntimeHandler: handlers[tm.Name],
			Policy: tm.Policy, PolicyFlags: tm.Policy.Flags(), Values: tm.Digests}
		rv.Targets = append(rv.Targets, rt)
		pol, err := abi.ParseSnpPolicy(uint64(tm.Policy))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("target %s: policy %s: %w", tm.Name, tm.Policy, err)
		}
		// A platform that launches a guest whose policy disallows SMT must
		// have SMT disabled; one that allows it is expected to have it on.
		info := abi.SnpPlatformInfo{SMTEnabled: pol.SMT}
		entry := func(product string, vcpus int, d snp.Digest) ContrastSNP {
			return ContrastSNP{Platform: pn, ProductName: product, TrustedMeasurement: d.String(),
				GuestPolicy: pol, PlatformInfo: info, CPUs: uint64(vcpus)}
		}
		key := rt.RuntimeHandler
		if key == "" {
			key = tm.Name
		}
		if _, dup := crv[key]; dup {
			return nil, nil, nil, fmt.Errorf("target %s: %s keys two targets' reference values", tm.Name, key)
		}
		var rt2 ContrastRuntime
		for _, d := range tm.Digests {
			if d.CPU == "" {
				for _, p := range ContrastProducts {
					rt2.SNP = append(rt2.SNP, entry(p, d.VCPUs, d.Digest))
				}
				continue
			}
			if isContrastProduct(d.Product) {
				rt2.SNP = append(rt2.SNP, entry(d.Product, d.VCPUs, d.Digest))
			}
		}
		if rt2.SNP == nil {
			left = append(left, tm.Name)
			continue
		}
		crv[key] = rt2
	}
	return rv, crv, left, nil
}

func isContrastProduct(p string) bool {
	for _, c := range ContrastProducts {
		if p == c {
			return true
		}
	}
	return false
}
