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
		{"extra argument", []string{"version", "x"}, exitUsage, "version: takes 0 argument(s), got 1 (see 'imagebuilder version --help')"},
		{"missing argument", []string{"verity", "format", "x"}, exitUsage, "imagebuilder: verity format: takes 2 argument(s), got 1"},
		{"bad flag value", []string{"verity", "format", "x", "y", "--data-blocks=many"}, exitUsage, "invalid argument"},
		{"completion", []string{"completion", "bash"}, exitOK, ""},
		{"version flag", []string{"--version"}, exitOK, ""},
		{"typo in a subcommand", []string{"verity", "fromat"}, exitUsage, `unknown command "fromat" for "imagebuilder verity"; did you mean "format"?`},
		{"unknown rootfs subcommand", []string{"rootfs", "foo"}, exitUsage, `unknown command "foo" for "imagebuilder rootfs"`},
		{"typo in igvm", []string{"igvm", "biuld"}, exitUsage, `unknown command "biuld" for "imagebuilder igvm"`},
		{"typo in measure", []string{"measure", "igmv"}, exitUsage, `unknown command "igmv" for "imagebuilder measure"; did you mean "igvm"?`},
		{"typo at the top", []string{"verty"}, exitUsage, `unknown command "verty" for "imagebuilder"; did you mean "verity"?`},
		{"group without subcommand", []string{"initrd"}, exitOK, ""},
		{"completion zsh", []string{"completion", "zsh"}, exitOK, ""},
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
			if code != exitOK && (!strings.HasPrefix(stderr, "imagebuilder: ") || strings.Count(stderr, "\n") != 1 ||
				strings.HasPrefix(stderr, "imagebuilder: imagebuilder")) {
				t.Errorf("error not printed as one imagebuilder: line: %q", stderr)
			}
		})
	}
}
