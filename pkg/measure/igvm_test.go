package measure

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

type vectorCase struct {
	Name     string `json:"name"`
	File     string `json:"igvm_file"`
	Expected string `json:"expected_launch_digest"`
}

// vectorCases reads testdata/igvm/index.json (igvm-tooling vectors).
func vectorCases(t testing.TB) []vectorCase {
	t.Helper()
	b, err := os.ReadFile("../../testdata/igvm/index.json")
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Cases) != 6 {
		t.Fatalf("%d cases in index.json, want 6", len(idx.Cases))
	}
	return idx.Cases
}

func openVector(t testing.TB, c vectorCase) *igvm.File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/igvm", filepath.Base(c.File)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := igvm.Parse(b)
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
				res, err := MeasureIGVM(f, Options{Profile: ProfileMSHV, VCPUs: n, Explain: true})
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Digest.String(); got != c.Expected {
					t.Errorf("%d vCPUs: digest %s, want %s", n, got, c.Expected)
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

// The vectors are not KVM-ready (VMSA at 0x803000 in the middle, CR0 with
// paging): the kvm profile says why.
func TestKVMChecks(t *testing.T) {
	f := openVector(t, vectorCases(t)[0])
	_, err := MeasureIGVM(f, Options{Profile: ProfileKVM})
	var ce *KVMCheckError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a KVMCheckError", err)
	}
	if len(ce.Reasons) != 3 {
		t.Errorf("reasons %q, want order, GPA and CR0", ce.Reasons)
	}
	res, err := MeasureIGVM(f, Options{Profile: ProfileKVM, SkipKVMChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) < 3 {
		t.Errorf("warnings %q", res.Warnings)
	}
}
