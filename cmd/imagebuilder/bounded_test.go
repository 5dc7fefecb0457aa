package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
)

// runBounded is runCaptured with a guard: a command that has not returned
// after limit fails the test instead of running until go test's own
// timeout. The limit is far above what the command needs; it only turns
// unbounded work (hours) into a failure with a name.
func runBounded(t *testing.T, limit time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.code, r.stdout, r.stderr = runCaptured(t, args...)
		done <- r
	}()
	select {
	case r := <-done:
		return r.code, r.stdout, r.stderr
	case <-time.After(limit):
		t.Fatalf("%v did not return within %v", args, limit)
		return 0, "", ""
	}
}

// The recipe of issue 10: kvm-ready.igvm with a PARAMETER_AREA of 2^44
// bytes (CRC fixed) made measure igvm --profile kvm, reference-values and
// igvm sign --profile kvm run for about 37 minutes. Each is now refused at
// once with one line naming the file and the header.
func TestHugeParameterAreaRefused(t *testing.T) {
	data, err := os.ReadFile(kvmReady)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "huge-area.igvm")
	if err := os.WriteFile(bad, igvmtest.HugeParameterArea(data), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"igvm", "inspect", bad},
		{"measure", "igvm", bad, "--profile", "kvm"},
		{"measure", "reference-values", bad, "--profile", "kvm", "--cpu", "milan", "-o", filepath.Join(dir, "rv.json")},
		{"igvm", "sign", bad, "--keyless", "--profile", "kvm", "-o", filepath.Join(dir, "signed.igvm")},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			code, _, stderr := runBounded(t, time.Minute, args...)
			if code != exitFailure || !strings.Contains(stderr, bad) || !strings.Contains(stderr, "PARAMETER_AREA") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q", code, stderr)
			}
		})
	}
}
