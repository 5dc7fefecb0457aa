package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIgvmInspect(t *testing.T) {
	ref := "../../testdata/igvm/d01_kata_clh_short.igvm"
	code, out, _ := runCaptured(t, "igvm", "inspect", ref)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"[ 125] 0x346e000-0x3472000         4 pages NORMAL data",
		`cmdline at 0x34710a0 (cmdline_size 22): "console=ttyS0 panic=-1"`,
		"sev_features 0x9: SNP_ACTIVE RESTRICTED_INJECTION",
		"signature valid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, js, _ := runCaptured(t, "igvm", "inspect", "--json", ref)
	var m map[string]any
	if code != exitOK || json.Unmarshal([]byte(js), &m) != nil || m["header_count"] != float64(132) {
		t.Fatalf("--json: exit %d, %.200s", code, js)
	}

	// A corrupt file: one line naming the header and offset, exit 1.
	b, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.igvm")
	b[0x48] = 0x01 // low byte of the first PAGE_DATA's gpa; the CRC is now wrong too
	os.WriteFile(bad, b, 0o644)
	stderr := captureStderr(t, func() { code = run([]string{"igvm", "inspect", bad}) })
	if code != exitFailure || !strings.Contains(stderr, "checksum") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("corrupt file: exit %d, stderr %q", code, stderr)
	}
	stderr = captureStderr(t, func() { code = run([]string{"igvm", "inspect"}) })
	if code != exitUsage {
		t.Errorf("no argument: exit %d (%q)", code, stderr)
	}
	stderr = captureStderr(t, func() { code = run([]string{"igvm", "inspect", filepath.Join(t.TempDir(), "missing")}) })
	if code != exitFailure || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d (%q)", code, stderr)
	}
}
