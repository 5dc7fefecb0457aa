package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

const (
	d01      = "../../testdata/igvm/d01_kata_clh_short.igvm"
	kvmReady = "../../testdata/measure/kvm-ready.igvm" // refused by KVM: LMA without paging
)

// kvmLayoutFile builds the synthetic kernel with the tiny initrd and the
// Kata options in the kvm layout, with the CLI.
func kvmLayoutFile(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "podvm-kvm.igvm")
	code, _, stderr := runCaptured(t, "igvm", "build", "--layout", "kvm", "--kata",
		"--kernel", "../../testdata/igvm/inputs/synthetic-bzImage", "--initrd", "../../testdata/igvm/inputs/initrd-tiny.cpio.gz",
		"--cmdline", "console=ttyS0 panic=-1", "-o", out)
	if code != exitOK {
		t.Fatalf("igvm build --layout kvm: exit %d: %s", code, stderr)
	}
	return out
}

// kvmLayoutDigest is kvmLayoutFile's kvm digest for one vCPU on host 6.11,
// which scripts/measure/kvm_model.py computes too.
const kvmLayoutDigest = "c95183d73dd82a5e784379a7d5f26dec742dd6bbedb4eb57933ee2eaaaefa0d8049bd697807e99d709b015ab97768f90"

func TestMeasureIGVMCLI(t *testing.T) {
	kvmFile := kvmLayoutFile(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"mshv", []string{"measure", "igvm", d01, "--profile", "mshv"}, exitOK,
			"83b61499f9c1ef2627211cd295bedff977cf2cbebf5d6d1f00df82210636a243840c40d3aba3de2e21be5d6daf578e14\n", ""},
		{"kvm 1", []string{"measure", "igvm", kvmFile, "--profile", "kvm"}, exitOK, kvmLayoutDigest + "\n", ""},
		{"kvm 4 genoa", []string{"measure", "igvm", kvmFile, "--profile", "kvm", "--vcpus", "4", "--cpu", "EPYC-Genoa"}, exitOK,
			"\n", ""},
		{"explain", []string{"measure", "igvm", d01, "--profile", "mshv", "--explain"}, exitOK, "SNP secrets page", ""},
		{"explain kvm", []string{"measure", "igvm", kvmFile, "--profile", "kvm", "--explain"}, exitOK, "vCPU 0 VMSA: KVM measures the file's values", ""},
		{"json", []string{"measure", "igvm", kvmFile, "--profile", "kvm", "--json"}, exitOK, `"one_vcpu_digest"`, ""},
		{"kvm checks", []string{"measure", "igvm", d01, "--profile", "kvm"}, exitFailure, "", "qemu:check_vmsa_supported: vCPU 0: VMSA at GPA 0x803000"},
		{"kvm refused", []string{"measure", "igvm", kvmReady, "--profile", "kvm"}, exitFailure, "", "kvm:kvm_is_valid_sregs: vCPU 0: EFER.LMA set while CR0.PG is clear"},
		{"kvm hypothetical", []string{"measure", "igvm", kvmReady, "--profile", "kvm", "--skip-kvm-checks"}, exitOK, "\n", "HYPOTHETICAL kvm digests"},
		{"explain hypothetical", []string{"measure", "igvm", kvmReady, "--profile", "kvm", "--skip-kvm-checks", "--explain"}, exitOK, "HYPOTHETICAL", ""},
		{"changes named", []string{"measure", "igvm", d01, "--profile", "kvm", "--skip-kvm-checks"}, exitOK, "\n", "other values than the file holds in tr.base, cr4, cr0, mxcsr, x87_fcw (--explain lists them)\n"},
		{"explain changes", []string{"measure", "igvm", d01, "--profile", "kvm", "--skip-kvm-checks", "--explain"}, exitOK, "  tr.base          0x3470000            -> 0x0", ""},
		{"json hypothetical", []string{"measure", "igvm", kvmReady, "--profile", "kvm", "--skip-kvm-checks", "--json"}, exitOK, `"hypothetical": true`, ""},
		{"host 6.8", []string{"measure", "igvm", kvmFile, "--profile", "kvm", "--host-kernel", "6.8"}, exitFailure, "", "hypothetical-host"},
		{"id block differs", []string{"measure", "igvm", d01, "--profile", "kvm", "--skip-kvm-checks"}, exitOK, "\n", "SNP ID block carries digest 83b61499"},
		{"no profile", []string{"measure", "igvm", d01}, exitUsage, "", "profile"},
		{"bad profile", []string{"measure", "igvm", d01, "--profile", "xen"}, exitUsage, "", "unknown profile"},
		{"0 vcpus", []string{"measure", "igvm", d01, "--profile", "kvm", "--vcpus", "0"}, exitUsage, "", "want 1 to 512"},
		{"513 vcpus", []string{"measure", "igvm", d01, "--profile", "kvm", "--vcpus", "513"}, exitUsage, "", "want 1 to 512"},
		{"unknown cpu", []string{"measure", "igvm", d01, "--profile", "kvm", "--vcpus", "2", "--cpu", "pentium"}, exitUsage, "", "unknown CPU model"},
		{"no cpu", []string{"measure", "igvm", d01, "--profile", "kvm", "--vcpus", "2"}, exitUsage, "", "needs --cpu"},
		{"bad features", []string{"measure", "igvm", d01, "--profile", "kvm", "--guest-features", "zz"}, exitUsage, "", "hex"},
		{"missing file", []string{"measure", "igvm", "/nonexistent.igvm", "--profile", "mshv"}, exitFailure, "", "no such file"},
		{"not igvm", []string{"measure", "igvm", "measure_test.go", "--profile", "mshv"}, exitFailure, "", "igvm:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCaptured(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout %q lacks %q", out, tc.stdout)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr %q lacks %q", errs, tc.stderr)
			}
		})
	}
}

func TestMeasureReferenceValuesCLI(t *testing.T) {
	kvmFile := kvmLayoutFile(t)
	out := filepath.Join(t.TempDir(), "reference-values.json")
	code, _, errs := runCaptured(t, "measure", "reference-values", kvmFile, "--cpu", "milan,genoa", "--vcpus", "1,2,8", "-o", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rv struct {
		Policy  string `json:"policy"`
		Entries []struct {
			Profile string `json:"profile"`
			ByVCPUs []struct {
				VCPUs  int    `json:"vcpus"`
				Digest string `json:"digest"`
			} `json:"by_vcpus"`
		} `json:"reference_values"`
	}
	if err := json.Unmarshal(b, &rv); err != nil {
		t.Fatal(err)
	}
	if rv.Policy != "0x3001f" || len(rv.Entries) != 3 || len(rv.Entries[2].ByVCPUs) != 3 {
		t.Fatalf("reference values %s", b)
	}
	// The 2-vCPU Genoa digest equals measure igvm's.
	_, single, _ := runCaptured(t, "measure", "igvm", kvmFile, "--profile", "kvm", "--vcpus", "2", "--cpu", "genoa")
	if strings.TrimSpace(single) != rv.Entries[2].ByVCPUs[1].Digest {
		t.Errorf("reference %s, measure igvm %s", rv.Entries[2].ByVCPUs[1].Digest, single)
	}
	// Without --cpu, kvm lists the four default models.
	code, stdout, errs := runCaptured(t, "measure", "reference-values", kvmFile, "-o", "-")
	if code != exitOK {
		t.Fatalf("no --cpu: exit %d: %s", code, errs)
	}
	var def struct {
		Entries []struct {
			CPU string `json:"cpu"`
		} `json:"reference_values"`
	}
	if err := json.Unmarshal([]byte(stdout), &def); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range def.Entries {
		names = append(names, e.CPU)
	}
	if got := strings.Join(names, ","); got != ",EPYC-v4,EPYC-Milan,EPYC-Genoa,EPYC-Turin" {
		t.Errorf("default entries: cpus %q", got)
	}
	// A failure leaves no file: kvm asked for a file that is not
	// KVM-ready.
	bad := filepath.Join(t.TempDir(), "rv.json")
	if code, _, _ := runCaptured(t, "measure", "reference-values", d01, "--profile", "kvm", "--cpu", "milan", "-o", bad); code != exitFailure {
		t.Errorf("d01 (not KVM-ready) exit %d", code)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("failed run left an output file")
	}
}

// An IGVM file for another platform (VSM isolation) is refused with a
// clear error, as is a truncated one.
func TestMeasureIGVMNotSNP(t *testing.T) {
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformVSMIsolation, PlatformVersion: 1}, nil)
	b.Add(&igvm.PageData{GPA: 0x1000, CompatibilityMask: 1}, igvm.Bytes([]byte("x")))
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vsm := filepath.Join(dir, "vsm.igvm")
	if err := os.WriteFile(vsm, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCaptured(t, "measure", "igvm", vsm, "--profile", "mshv")
	if code != exitFailure || !strings.Contains(errs, "no SEV-SNP platform (it supports VSM_ISOLATION)") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	good, err := os.ReadFile(d01)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.igvm")
	if err := os.WriteFile(trunc, good[:len(good)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCaptured(t, "measure", "igvm", trunc, "--profile", "kvm")
	if code != exitFailure || !strings.Contains(errs, "total_file_size") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}
