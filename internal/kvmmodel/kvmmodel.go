// Package kvmmodel runs scripts/measure/kvm_model.py, the independent model
// of how QEMU (>= 10.1) and KVM measure an IGVM file, for tests that compare
// the Go kvm profile with it (pkg/measure, cmd/imagebuilder).
package kvmmodel

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// Run is what kvm_model.py --json --explain prints.
type Run struct {
	Digest       *string `json:"digest"` // nil when the model refuses the launch
	Hypothetical bool    `json:"hypothetical"`
	Violations   []struct {
		Rule   string `json:"rule"`
		Detail string `json:"detail"`
	} `json:"violations"`
	PageInfo []struct {
		GPA      string `json:"gpa"`
		Type     string `json:"type"`
		Contents string `json:"contents"`
		Digest   string `json:"digest"`
	} `json:"page_info"`
}

// VMSADigests are the digests after each VMSA record: the launch digest
// for 1, 2, ... vCPUs (the VMSAs come last, one per vCPU).
func (r *Run) VMSADigests() []string {
	var out []string
	for _, row := range r.PageInfo {
		if row.Type == "VMSA" {
			out = append(out, row.Digest)
		}
	}
	return out
}

// Measure runs the model on the IGVM file at path for vcpus vCPUs of the
// CPU model cpu (a QEMU name the model knows: EPYC-v4, EPYC-Milan,
// EPYC-Genoa) on host kernel 6.11. A missing python3 fails the test in CI
// and skips it otherwise (fixtures.Missing).
func Measure(t testing.TB, path string, vcpus int, cpu string) *Run {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		fixtures.Missing(t, "python3 not found: the independent QEMU+KVM model (scripts/measure/kvm_model.py) needs it")
	}
	_, self, _, _ := runtime.Caller(0)
	model := filepath.Join(filepath.Dir(self), "..", "..", "scripts", "measure", "kvm_model.py")
	out, err := exec.Command(py, model, path, "--vcpus", strconv.Itoa(vcpus), "--cpu", cpu, "--json", "--explain").Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) { // 2: refused, still JSON
		t.Fatalf("kvm_model.py %s: %v", path, err)
	}
	r := new(Run)
	if err := json.Unmarshal(out, r); err != nil {
		t.Fatalf("kvm_model.py output: %v", err)
	}
	return r
}
