package main

import (
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // substring of stderr
	}{
		{"help", []string{"--help"}, exitOK, ""},
		{"version", []string{"version"}, exitOK, ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", []string{"version", "--bogus"}, exitUsage, "unknown flag"},
		{"extra argument", []string{"version", "x"}, exitUsage, "takes 0 argument"},
		{"completion", []string{"completion", "bash"}, exitOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCaptured(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if tc.want != "" && !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tc.want)
			}
			if code != exitOK && !strings.HasPrefix(stderr, "imagebuilder: ") {
				t.Errorf("error not printed as one imagebuilder: line: %q", stderr)
			}
		})
	}
}
