package measure

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/testvectors"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

type vectorCase = testvectors.Case

// vectorCases reads testdata/igvm/index.json (igvm-tooling vectors).
func vectorCases(t testing.TB) []vectorCase { return testvectors.Cases(t) }

func openVector(t testing.TB, c vectorCase) *igvm.File {
	t.Helper()
	f, err := igvm.Parse(c.ReadIGVM(t))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Every igvm-tooling vector: the mshv digest equals igvmgen's, for any
// vCPU count, and equals the LD of the file's own ID block.
func TestMSHVVectors(t *testing.T) {
	for _, c := range vectorCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			f := openVector(t, c)
			for _, n := range []int{1, 4} {
				res, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileMSHV, VCPUs: n, Explain: true})
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Digest.String(); got != c.ExpectedLaunchDigest {
					t.Errorf("%d vCPUs: digest %s, want %s", n, got, c.ExpectedLaunchDigest)
				}
				if res.IDBlockDigest == nil || *res.IDBlockDigest != res.Digest {
					t.Errorf("ID block digest %v differs", res.IDBlockDigest)
				}
				if res.Policy != 0x3001f {
					t.Errorf("policy %v", res.Policy)
				}
				var pages uint64
				for i, r := range res.Regions {
					pages += r.Pages
					if i > 0 && r.GPA < res.Regions[i-1].GPA {
						t.Errorf("mshv regions not in GPA order at %d", i)
					}
				}
				if pages != res.Pages || len(res.Regions) == 0 || res.Regions[len(res.Regions)-1].Digest != res.Digest {
					t.Errorf("regions cover %d of %d pages", pages, res.Pages)
				}
			}
		})
	}
}

// The vectors (igvmgen's layout) cannot launch under QEMU + KVM: QEMU
// refuses their VMSA at 0x803000 and their sev_features 0x9 (restricted
// injection); the kvm profile names both rules.
func TestKVMChecks(t *testing.T) {
	f := openVector(t, vectorCases(t)[0])
	_, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileKVM})
	var ce *KVMCheckError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a KVMCheckError", err)
	}
	var rules []string
	for _, v := range ce.Violations {
		rules = append(rules, v.Rule)
	}
	if want := []string{"qemu:check_vmsa_supported", "qemu:check_sev_features"}; !slices.Equal(rules, want) {
		t.Errorf("violations %v, want %q", ce.Violations, want)
	}
	res, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileKVM, SkipKVMChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Hypothetical || len(res.KVMChecksSkipped) != len(ce.Violations) {
		t.Errorf("hypothetical %v, skipped checks %v", res.Hypothetical, res.KVMChecksSkipped)
	}
	// The file's VMSA is not what KVM measures: one warning names the
	// fields (and no CLI flag: a library's words are its own).
	var changed []string
	for _, w := range res.Warnings {
		if strings.HasPrefix(w, WarnVMSAChanged) {
			changed = append(changed, w)
		}
		if strings.Contains(w, "--") {
			t.Errorf("warning names a flag: %q", w)
		}
	}
	if len(res.VMSAChanges) == 0 || len(changed) != 1 || !strings.Contains(changed[0], res.VMSAChanges[0].Field) {
		t.Errorf("VMSA changes %v, warnings %q", res.VMSAChanges, res.Warnings)
	}
}
