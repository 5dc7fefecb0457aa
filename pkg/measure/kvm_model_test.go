package measure

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// kvmModel is testdata/measure/kvm-model.json: what
// scripts/measure/kvm_model.py, a model of QEMU + KVM written from
// docs/kvm-measurement.md (itself written from the QEMU and Linux sources,
// not from this package), computes for hand-made IGVM files.
type kvmModel struct {
	Files []struct {
		File     string         `json:"file"`
		SHA256   string         `json:"sha256"`
		Pins     string         `json:"pins"`
		PageInfo []modelPageRow `json:"page_info"` // host 6.11, 1 vCPU, without the VMSAs
		Hosts    map[string]struct {
			SEVFeatures string       `json:"sev_features"`
			BSPVMSA     []VMSAChange `json:"bsp_vmsa"`
			RefusedBy   []string     `json:"refused_by"`
		} `json:"hosts"`
		Configs []struct {
			VCPUs        int            `json:"vcpus"`
			CPU          string         `json:"cpu"`
			HostKernel   string         `json:"host_kernel"`
			Digest       string         `json:"digest"`
			Hypothetical bool           `json:"hypothetical"`
			VMSAPageInfo []modelPageRow `json:"vmsa_page_info"`
		} `json:"configs"`
	} `json:"files"`
}

type modelPageRow struct {
	GPA      string `json:"gpa"`
	Type     string `json:"type"`
	Contents string `json:"contents"`
	Digest   string `json:"digest"`
	VCPU     *int   `json:"vcpu"`
}

func readKVMModel(t *testing.T) kvmModel {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "kvm-model.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m kvmModel
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) < 10 {
		t.Fatalf("kvm-model.json has %d files", len(m.Files))
	}
	return m
}

// pageRows expands the explain regions of a result into one row per
// PAGE_INFO record: GPA and type, with the digest after the record where
// a region ends (the regions are the --explain rows).
type pageRow struct {
	gpa    uint64
	typ    string
	digest string // "" inside a region
}

func pageRows(res *Result) []pageRow {
	var out []pageRow
	for _, r := range res.Regions {
		for i := uint64(0); i < r.Pages; i++ {
			row := pageRow{gpa: uint64(r.GPA) + i*snp.PageSize, typ: r.TypeName}
			if i == r.Pages-1 {
				row.digest = r.Digest.String()
			}
			out = append(out, row)
		}
	}
	return out
}

func modelMeasure(t *testing.T, data []byte, vcpus int, cpu, host string, skip bool) (*Result, error) {
	t.Helper()
	hk, err := ParseHostKernel(host)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LookupCPU(cpu)
	if err != nil {
		t.Fatal(err)
	}
	return MeasureIGVMFile(context.Background(), bytes.NewReader(data), int64(len(data)),
		Options{Profile: ProfileKVM, VCPUs: vcpus, CPU: &m, HostKernel: hk, SkipKVMChecks: skip, Explain: true})
}

// TestKVMModelRules pins each rule of the kvm profile with the minimal
// hand-made file that shows it (testdata/measure/kvm-model/): the
// PAGE_INFO sequence (the --explain rows: every record's GPA and type, the
// digest where each row ends), the BSP VMSA fields KVM changes (field,
// file value, measured value) on host 6.11 and 6.8, and the rules QEMU/KVM
// refuse the file by, all as the independent model computed them.
func TestKVMModelRules(t *testing.T) {
	model := readKVMModel(t)
	for _, mf := range model.Files {
		t.Run(filepath.Base(mf.File), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(goldenDir, "..", mf.File))
			if err != nil {
				t.Fatal(err)
			}
			if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != mf.SHA256 {
				t.Fatalf("%s is not the file the model measured", mf.File)
			}
			for host, want := range mf.Hosts {
				res, err := modelMeasure(t, data, 1, "EPYC-v4", host, true)
				if err != nil {
					t.Fatalf("host %s: %v", host, err)
				}
				var rules []string
				for _, v := range res.KVMChecksSkipped {
					if !slices.Contains(rules, v.Rule) {
						rules = append(rules, v.Rule)
					}
				}
				slices.Sort(rules)
				if !slices.Equal(rules, want.RefusedBy) {
					t.Errorf("host %s: refused by %q, the model says %q", host, rules, want.RefusedBy)
				}
				if res.Hypothetical != (len(want.RefusedBy) > 0) {
					t.Errorf("host %s: hypothetical %v", host, res.Hypothetical)
				}
				// Without --skip-kvm-checks: refused exactly when the model refuses.
				_, err = modelMeasure(t, data, 1, "EPYC-v4", host, false)
				var ce *KVMCheckError
				if refused := errors.As(err, &ce); refused != (len(want.RefusedBy) > 0) {
					t.Errorf("host %s: without the override: %v", host, err)
				}
				if got := res.GuestFeatures.String(); got != want.SEVFeatures {
					t.Errorf("host %s: sev_features %s, the model %s", host, got, want.SEVFeatures)
				}
				got := res.VMSAChanges
				if got == nil {
					got = []VMSAChange{}
				}
				wantChanges := want.BSPVMSA
				if wantChanges == nil {
					wantChanges = []VMSAChange{}
				}
				if !slices.Equal(got, wantChanges) {
					t.Errorf("host %s: BSP VMSA changes\n got %v\nwant %v", host, got, wantChanges)
				}
				if host != "6.11" {
					continue
				}
				rows := pageRows(res)
				if len(rows) != len(mf.PageInfo)+1 {
					t.Fatalf("%d PAGE_INFO records, the model %d (+1 VMSA)", len(rows), len(mf.PageInfo))
				}
				for i, w := range mf.PageInfo {
					g := rows[i]
					if hexGPA(g.gpa) != w.GPA || g.typ != w.Type || g.digest != "" && g.digest != w.Digest {
						t.Errorf("PAGE_INFO %d: %s %s %s, the model %s %s %s", i, hexGPA(g.gpa), g.typ, g.digest, w.GPA, w.Type, w.Digest)
					}
				}
				if last := rows[len(rows)-1]; last.gpa != KVMVMSAGPA || last.typ != "VMSA" {
					t.Errorf("last record %+v, want the VMSA", last)
				}
			}
		})
	}
}

func hexGPA(g uint64) string { return "0x" + strconv.FormatUint(g, 16) }

// TestKVMModelSpread checks the Go kvm profile against the independent
// model on its whole spread: every file of kvm-model.json (ten) x vCPUs
// 1/2/4/8 x EPYC-v4/Milan/Genoa x host 6.8/6.11 (240 launches): the
// digest, the digest after each VMSA record, and whether the launch is
// hypothetical.
func TestKVMModelSpread(t *testing.T) {
	model := readKVMModel(t)
	n := 0
	for _, mf := range model.Files {
		data, err := os.ReadFile(filepath.Join(goldenDir, "..", mf.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range mf.Configs {
			n++
			res, err := modelMeasure(t, data, c.VCPUs, c.CPU, c.HostKernel, true)
			if err != nil {
				t.Errorf("%s %d vCPUs %s host %s: %v", mf.File, c.VCPUs, c.CPU, c.HostKernel, err)
				continue
			}
			if res.Digest.String() != c.Digest {
				t.Errorf("%s %d vCPUs %s host %s: digest %s, the model %s", mf.File, c.VCPUs, c.CPU, c.HostKernel, res.Digest, c.Digest)
			}
			if res.Hypothetical != c.Hypothetical {
				t.Errorf("%s %d vCPUs %s host %s: hypothetical %v, the model %v", mf.File, c.VCPUs, c.CPU, c.HostKernel, res.Hypothetical, c.Hypothetical)
			}
			var vmsas []string
			for _, r := range res.Regions {
				if r.Type == snp.PageVMSA {
					vmsas = append(vmsas, r.Digest.String())
				}
			}
			if len(vmsas) != len(c.VMSAPageInfo) {
				t.Errorf("%s %d vCPUs: %d VMSA records, the model %d", mf.File, c.VCPUs, len(vmsas), len(c.VMSAPageInfo))
				continue
			}
			for i, w := range c.VMSAPageInfo {
				if vmsas[i] != w.Digest {
					t.Errorf("%s %d vCPUs %s host %s: digest after VMSA %d %s, the model %s", mf.File, c.VCPUs, c.CPU, c.HostKernel, i, vmsas[i], w.Digest)
				}
			}
			// The reference-values shortcut gives the same digest.
			if res.OneVCPUDigest != nil && res.APVMSAHash != nil {
				if d, err := ExtendVCPUs(*res.OneVCPUDigest, *res.APVMSAHash, c.VCPUs); err != nil || d != res.Digest {
					t.Errorf("%s %d vCPUs: ExtendVCPUs %s, measured %s", mf.File, c.VCPUs, d, res.Digest)
				}
			}
		}
	}
	if want := len(model.Files) * 24; n != want || n < 240 {
		t.Errorf("%d launches compared, want %d (24 per file)", n, want)
	}
}

// TestKVMModelPython regenerates the hand-made files and kvm-model.json
// with the model (scripts/measure/kvm_testfiles.py --check), so the
// committed vectors are what the model says today.
func TestKVMModelPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		fixtures.Missing(t, "python3 not found: the independent QEMU+KVM model (scripts/measure/kvm_model.py) needs it")
		return
	}
	out, err := exec.Command(py, "../../scripts/measure/kvm_testfiles.py", "--check", "../../testdata").CombinedOutput()
	if err != nil {
		t.Fatalf("kvm_testfiles.py --check: %v\n%s", err, out)
	}
}
