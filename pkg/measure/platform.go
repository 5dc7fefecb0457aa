package measure

import (
	"context"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
)

// ProfileError says that an IGVM layout cannot satisfy a profile (a target
// platform), and why.
type ProfileError struct {
	Profile Profile
	Layout  linuxboot.LayoutKind
	Reason  string
}

func (e *ProfileError) Error() string {
	return fmt.Sprintf("measure: the %s layout cannot satisfy the %s profile: %s", e.Layout, e.Profile, e.Reason)
}

// CheckLayout reports whether an IGVM file that linuxboot.Build makes with
// layout kind k can be launched and measured under profile p: nil, or a
// *ProfileError with the reason. A build pipeline calls it on its
// configuration, before it builds anything, to refuse a measurement
// target the layout cannot satisfy.
func CheckLayout(k linuxboot.LayoutKind, p Profile) error {
	if _, err := ParseProfile(string(p)); err != nil {
		return err
	}
	switch {
	case k == linuxboot.LayoutMSHV && p == ProfileKVM:
		return &ProfileError{p, k, "QEMU refuses its VMSA at 0x803000 (KVM measures VMSAs at 0xfffffffff000) and its sev_features 0x9 (restricted injection); build with the kvm layout"}
	case k == linuxboot.LayoutKVM && p == ProfileMSHV:
		return &ProfileError{p, k, "the mshv profile is igvmgen's layout under cloud-hypervisor on Microsoft's hypervisor; nothing shows that loader accepts the kvm layout (VMSA at 0xfffffffff000, no parameter area), so no digest is promised for it; build with the mshv layout"}
	case int(k) >= len(linuxboot.LayoutKinds):
		return fmt.Errorf("measure: unknown layout kind %d", uint8(k))
	}
	return nil
}

// LayoutProfiles lists the profiles an image of layout kind k satisfies
// (see CheckLayout).
func LayoutProfiles(k linuxboot.LayoutKind) []Profile {
	var out []Profile
	for _, p := range Profiles {
		if CheckLayout(k, p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// CheckIGVM reports whether the hypervisor of opts.Profile launches f as
// written, without measuring it: for kvm it applies QEMU's and KVM's
// acceptance rules for opts' vCPU count, host kernel and guest features and
// returns a *KVMCheckError naming the rules f breaks (only the VMSA pages
// are read); for mshv it checks that f has an SEV-SNP platform. Other
// errors are about f or opts themselves.
func CheckIGVM(ctx context.Context, f *igvm.File, opts Options) error {
	m, mask, err := newMeasurer(ctx, f, opts)
	if err != nil {
		return err
	}
	switch m.opts.Profile {
	case ProfileMSHV:
		return nil
	case ProfileKVM:
		p, err := m.planKVM(mask)
		if err != nil {
			return err
		}
		if len(p.violations) > 0 {
			return &KVMCheckError{Violations: p.violations}
		}
		return nil
	}
	return fmt.Errorf("measure: unknown profile %q (want mshv or kvm)", opts.Profile)
}
