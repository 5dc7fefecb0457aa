package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

type ovmfCLICase struct {
	Name           string   `json:"name"`
	Args           []string `json:"args"`
	ExpectedOutput string   `json:"expected_output"`
	ExpectedOVMF   string   `json:"expected_ovmf_hash"`
	ExpectedDigest string   `json:"expected_launch_digest"`
	ExpectedExit   int      `json:"expected_exit_code"`
	OVMF           string   `json:"ovmf"`
}

func ovmfLoadCLICases(t *testing.T, name string) []ovmfCLICase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "measure", "ovmf", name))
	if err != nil {
		t.Fatal(err)
	}
	var cs []ovmfCLICase
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// Every sev-snp-measure invocation of the vectors, passed verbatim to
// "imagebuilder measure ovmf", prints the same line.
func TestMeasureOVMFCLIVectors(t *testing.T) {
	cases := ovmfLoadCLICases(t, "cases.json")
	rejections := ovmfLoadCLICases(t, "rejections.json")
	t.Chdir(filepath.Join("..", "..", "testdata", "measure", "ovmf"))
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			code, out, stderr := runCaptured(t, append([]string{"measure", "ovmf"}, tc.Args...)...)
			if code != 0 || out != tc.ExpectedOutput+"\n" {
				t.Fatalf("exit %d stdout %q stderr %q, want %q", code, out, stderr, tc.ExpectedOutput)
			}
			code, out, _ = runCaptured(t, "measure", "ovmf", "--mode", "snp:ovmf-hash", "--ovmf", tc.OVMF)
			if code != 0 || out != tc.ExpectedOVMF+"\n" {
				t.Errorf("ovmf-hash: exit %d %q, want %q", code, out, tc.ExpectedOVMF)
			}
			args := append([]string{"measure", "ovmf", "--snp-ovmf-hash", tc.ExpectedOVMF, "--json", "--explain"}, tc.Args...)
			code, out, stderr = runCaptured(t, args...)
			var res struct {
				Digest  string           `json:"digest"`
				Regions []measure.Region `json:"regions"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Digest != tc.ExpectedDigest || len(res.Regions) == 0 {
				t.Errorf("from ovmf hash, json: exit %d %q %q", code, out, stderr)
			}
		})
	}
	for _, tc := range rejections {
		t.Run(tc.Name, func(t *testing.T) {
			code, out, stderr := runCaptured(t, append([]string{"measure", "ovmf"}, tc.Args...)...)
			if code != tc.ExpectedExit || out != "" || !strings.Contains(stderr, "SNP_KERNEL_HASHES") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d stdout %q stderr %q", code, out, stderr)
			}
		})
	}
}

func TestMeasureOVMFCLIErrors(t *testing.T) {
	t.Chdir(filepath.Join("..", "..", "testdata", "measure", "ovmf"))
	base := []string{"measure", "ovmf", "--ovmf", "ovmf_AmdSev_suffix.bin"}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no ovmf", []string{"measure", "ovmf", "--vcpus", "1"}, exitUsage, "--ovmf is required"},
		{"no vcpus", []string{"--vcpu-type", "EPYC-v4"}, exitUsage, "missing --vcpus"},
		{"zero vcpus", []string{"--vcpus", "0", "--vcpu-type", "EPYC-v4"}, exitUsage, "want 1 to 512"},
		{"too many vcpus", []string{"--vcpus", "513", "--vcpu-type", "EPYC-v4"}, exitUsage, "want 1 to 512"},
		{"no cpu for QEMU", []string{"--vcpus", "1"}, exitUsage, "missing --cpu"},
		{"unknown cpu", []string{"--vcpus", "1", "--vcpu-type", "Skylake"}, exitUsage, "unknown CPU model"},
		{"two cpu flags", []string{"--vcpus", "1", "--vcpu-type", "EPYC", "--vcpu-sig", "0x1"}, exitUsage, "one of"},
		{"partial fms", []string{"--vcpus", "1", "--vcpu-family", "25"}, exitUsage, "go together"},
		{"bad vmm", []string{"--vcpus", "1", "--vmm-type", "xen"}, exitUsage, "unknown VMM type"},
		{"initrd without kernel", []string{"--vcpus", "1", "--vcpu-type", "EPYC", "--initrd", "initrd-dev.cpio.gz"}, exitUsage, "need --kernel"},
		{"bad output format", []string{"--vcpus", "1", "--vcpu-type", "EPYC", "--output-format", "raw"}, exitUsage, "hex or base64"},
		{"bad ovmf hash", []string{"--vcpus", "1", "--vcpu-type", "EPYC", "--snp-ovmf-hash", "abcd"}, exitUsage, "digest has 2 bytes"},
		{"missing kernel", []string{"--vcpus", "1", "--vcpu-type", "EPYC", "--kernel", "nope"}, exitFailure, "nope"},
		{"missing ovmf", []string{"measure", "ovmf", "--ovmf", "nope.fd", "--vcpus", "1", "--cpu", "EPYC"}, exitFailure, "measure ovmf: nope.fd: "},
		{"not firmware", []string{"measure", "ovmf", "--ovmf", "kernel-synthetic.bin", "--vcpus", "1", "--vcpu-type", "EPYC"}, exitFailure, "multiple of 4096"},
		{"fms ok", []string{"--vcpus", "1", "--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "0"}, exitOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] != "measure" {
				args = append(append([]string(nil), base...), args...)
			}
			code, _, stderr := runCaptured(t, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d stderr %q, want %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
}

// The family/model/stepping spelling gives the --vcpu-type digest.
func TestMeasureOVMFCLISpellings(t *testing.T) {
	t.Chdir(filepath.Join("..", "..", "testdata", "measure", "ovmf"))
	base := []string{"measure", "ovmf", "--ovmf", "ovmf_AmdSev_suffix.bin", "--vcpus", "2"}
	var outs []string
	for _, cpu := range [][]string{
		{"--vcpu-type", "EPYC-Genoa"}, {"--vcpu-type", "EPYC-Genoa-v1"}, {"--vcpu-type", "genoa"},
		{"--vcpu-sig", "0xa10f10"}, {"--vcpu-sig", "10555152"},
		{"--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "0"},
	} {
		code, out, stderr := runCaptured(t, append(append([]string(nil), base...), cpu...)...)
		if code != 0 {
			t.Fatalf("%v: %d %s", cpu, code, stderr)
		}
		outs = append(outs, out)
	}
	for _, o := range outs[1:] {
		if o != outs[0] {
			t.Errorf("spellings differ: %q", outs)
		}
	}
}
