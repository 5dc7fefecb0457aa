package main

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestStandin builds the stand-in as the demo does (static), runs it and
// checks its ready line and exit status.
func TestStandin(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kata-agent")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the stand-in is dynamically linked")
		}
	}
	f.Close()
	out, err := exec.Command(bin).Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitStatus {
		t.Fatalf("exit: %v, want status %d", err, exitStatus)
	}
	if !regexp.MustCompile(`^` + ReadyLine + ` kernel=\S+ root=\S+:\S+:(ro|rw)\n$`).Match(out) {
		t.Errorf("output %q", out)
	}
}
