package measure

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/kvmmodel"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
)

// layoutIGVM builds the synthetic kernel with the tiny initrd and the Kata
// options in the given layout.
func layoutIGVM(t testing.TB, kind linuxboot.LayoutKind) []byte {
	t.Helper()
	kdata, err := os.ReadFile("../../testdata/igvm/inputs/synthetic-bzImage")
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile("../../testdata/igvm/inputs/initrd-tiny.cpio.gz")
	if err != nil {
		t.Fatal(err)
	}
	k, err := linuxboot.ParseBzImage(kdata)
	if err != nil {
		t.Fatal(err)
	}
	opts := linuxboot.Kata()
	opts.Layout, opts.Initrd, opts.Cmdline = kind, initrd, "console=ttyS0 panic=-1"
	img, err := linuxboot.Build(context.Background(), k, opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := img.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The kvm layout satisfies the kvm profile with no override, holds the
// VMSA KVM measures (no field differs), and its reference values for 1-8
// vCPUs are what the independent model computes for the file.
func TestKVMLayout(t *testing.T) {
	file := layoutIGVM(t, linuxboot.LayoutKVM)
	f, err := igvm.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	milan, _ := LookupCPU("EPYC-Milan")
	for n := 1; n <= 8; n++ {
		if err := CheckIGVM(context.Background(), f, Options{Profile: ProfileKVM, VCPUs: n, CPU: &milan}); err != nil {
			t.Fatalf("%d vCPUs: %v", n, err)
		}
	}
	res, err := MeasureIGVM(context.Background(), f, Options{Profile: ProfileKVM, CPU: &milan})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hypothetical || len(res.VMSAChanges) != 0 || len(res.Warnings) != 0 {
		t.Errorf("hypothetical %v, VMSA changes %v, warnings %q", res.Hypothetical, res.VMSAChanges, res.Warnings)
	}
	rv, err := ComputeReferenceValues(context.Background(), f, RefSpec{CPUs: []CPUModel{milan}, VCPUs: []int{1, 2, 3, 4, 5, 6, 7, 8}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Entries) != 2 || rv.Entries[1].Profile != ProfileKVM || len(rv.Skipped) != 0 {
		t.Fatalf("reference values %+v", rv)
	}
	path := filepath.Join(t.TempDir(), "kvm.igvm")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	m := kvmmodel.Measure(t, path, 8, "EPYC-Milan")
	if m.Hypothetical || m.Digest == nil {
		t.Fatalf("the model refuses the kvm layout: %v", m.Violations)
	}
	want := m.VMSADigests()
	for i, e := range rv.Entries[1].ByVCPUs {
		if e.VCPUs != i+1 || e.Digest.String() != want[i] {
			t.Errorf("%d vCPUs: reference %s, the model %s", e.VCPUs, e.Digest, want[i])
		}
	}
}

// The default (igvmgen) layout cannot launch under QEMU + KVM, and the
// layout-level check says so before anything is built.
func TestLayoutProfiles(t *testing.T) {
	f, err := igvm.Parse(layoutIGVM(t, linuxboot.LayoutMSHV))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckIGVM(context.Background(), f, Options{Profile: ProfileMSHV}); err != nil {
		t.Errorf("mshv: %v", err)
	}
	err = CheckIGVM(context.Background(), f, Options{Profile: ProfileKVM})
	var ce *KVMCheckError
	if !errors.As(err, &ce) {
		t.Fatalf("mshv layout under kvm: %v", err)
	}
	var rules []string
	for _, v := range ce.Violations {
		rules = append(rules, v.Rule)
	}
	if want := []string{"qemu:check_vmsa_supported", "qemu:check_sev_features"}; !slices.Equal(rules, want) {
		t.Errorf("violations %v, want %q", ce.Violations, want)
	}
	for _, tc := range []struct {
		kind linuxboot.LayoutKind
		want []Profile
	}{{linuxboot.LayoutMSHV, []Profile{ProfileMSHV}}, {linuxboot.LayoutKVM, []Profile{ProfileKVM}}} {
		if got := LayoutProfiles(tc.kind); !slices.Equal(got, tc.want) {
			t.Errorf("%s: profiles %v, want %v", tc.kind, got, tc.want)
		}
		for _, p := range Profiles {
			err := CheckLayout(tc.kind, p)
			var pe *ProfileError
			if slices.Contains(tc.want, p) != (err == nil) || err != nil && !errors.As(err, &pe) {
				t.Errorf("CheckLayout(%s, %s) = %v", tc.kind, p, err)
			}
		}
	}
	if err := CheckLayout(linuxboot.LayoutKVM, "xen"); err == nil {
		t.Error("unknown profile accepted")
	}
	if linuxboot.KVMVMSAGPA != KVMVMSAGPA {
		t.Error("linuxboot and measure disagree on the VMSA GPA")
	}
}
