package main

// Tests of the CLI conventions (docs/cli.md) for the igvm and measure
// commands; each failed on the main branch before the conventions were
// applied to them.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

// A bzImage cut inside its protected-mode code (its setup header's
// syssize says how long that is) is refused, not built.
func TestIgvmBuildTruncatedKernel(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	b, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[0x1f4:], uint32((len(b)-4*512+15)/16)) // syssize of the whole payload
	whole := filepath.Join(dir, "whole")
	cut := filepath.Join(dir, "cut")
	if err := os.WriteFile(whole, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.igvm")
	if code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", whole, "-o", out); code != exitOK {
		t.Fatalf("whole kernel: exit %d: %s", code, stderr)
	}
	os.Remove(out)
	code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", cut, "-o", out)
	if code != exitFailure || !strings.Contains(stderr, "igvm build: --kernel "+cut+": truncated: syssize") {
		t.Errorf("truncated kernel: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written for a truncated kernel")
	}
}

// Every error names the command and the file or flag it concerns.
func TestIgvmMeasureErrorsNameCommandAndFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.igvm")
	notIGVM := filepath.Join(dir, "not.igvm")
	if err := os.WriteFile(notIGVM, []byte("hello, not an IGVM file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"igvm", "inspect", missing}, exitFailure, "imagebuilder: igvm inspect: " + missing + ": no such file or directory\n"},
		{[]string{"measure", "igvm", missing, "--profile", "mshv"}, exitFailure, "imagebuilder: measure igvm: " + missing + ": no such file or directory\n"},
		{[]string{"measure", "reference-values", missing, "-o", "-"}, exitFailure, "imagebuilder: measure reference-values: " + missing + ": no such file or directory\n"},
		{[]string{"igvm", "sign", missing, "--keyless"}, exitFailure, "imagebuilder: igvm sign: " + missing + ": no such file or directory\n"},
		{[]string{"igvm", "sign", d01, "--key", missing}, exitFailure, "imagebuilder: igvm sign: --key " + missing + ": no such file or directory\n"},
		{[]string{"igvm", "build", "--kernel", missing, "-o", filepath.Join(dir, "x")}, exitFailure, "imagebuilder: igvm build: --kernel " + missing + ": no such file or directory\n"},
		{[]string{"measure", "ovmf", "--ovmf", missing, "--vcpus", "1", "--cpu", "milan"}, exitFailure, "imagebuilder: measure ovmf: " + missing + ": "},
		{[]string{"measure", "igvm", notIGVM, "--profile", "mshv"}, exitFailure, "imagebuilder: measure igvm: " + notIGVM + ": igvm: fixed header"},
		{[]string{"igvm", "sign", d01, "--keyless", "--family-id", "zz", "-o", filepath.Join(dir, "x")}, exitUsage, `igvm sign: invalid argument "zz" for "--family-id" flag: want 16 bytes as 32 hex digits`},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "1", "--cpu", "milan", "--snp-ovmf-hash", "zz"}, exitUsage, "measure ovmf: --snp-ovmf-hash: snp: digest \"zz\": not hex"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, _, stderr := runCaptured(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%v: exit %d, stderr %q, want %d and %q", tc.args, code, stderr, tc.code, tc.want)
			}
		})
	}
}

// Every bad flag value is a usage error (exit 2) naming the flag.
func TestIgvmMeasureBadFlagValues(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	out := filepath.Join(dir, "out.igvm")
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"igvm", "build", "--kernel", kernel, "-o", out, "--policy", "x"}, "--policy"},
		{[]string{"igvm", "build", "--kernel", kernel, "-o", out, "--policy", "0x1001f"}, "--policy"},
		{[]string{"igvm", "sign", d01, "--keyless", "--guest-features", "zz"}, "--guest-features"},
		{[]string{"igvm", "sign", d01, "--keyless", "--vcpus", "0"}, "--vcpus"},
		{[]string{"igvm", "sign", d01, "--keyless", "--vcpus", "1,2"}, "--vcpus"},
		{[]string{"igvm", "sign", d01, "--keyless", "--profile", "xen"}, "--profile"},
		{[]string{"igvm", "sign", d01, "--keyless", "--host-kernel", "5.4"}, "--host-kernel"},
		{[]string{"measure", "igvm", d01, "--profile", "kvm", "--vcpus", "1,1"}, "--vcpus"},
		{[]string{"measure", "igvm", d01, "--profile", "kvm", "--cpu", "milan,genoa"}, "--cpu"},
		{[]string{"measure", "igvm", d01, "--profile", "mshv,kvm"}, "--profile"},
		{[]string{"measure", "reference-values", d01, "--vcpus", "x"}, "--vcpus"},
		{[]string{"measure", "reference-values", d01, "--cpu", "pentium"}, "--cpu"},
		{[]string{"measure", "reference-values", d01, "--json=x.json"}, "--json"},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "1", "--cpu", "milan", "--guest-features", "0xz"}, "--guest-features"},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "513", "--cpu", "milan"}, "--vcpus"},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "1", "--cpu", "milan", "--vmm-type", "xen"}, "--vmm-type"},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "1", "--cpu", "milan", "--mode", "sev"}, "--mode"},
		{[]string{"measure", "ovmf", "--ovmf", "x", "--vcpus", "1", "--mode", "snp:ovmf-hash"}, "measure ovmf: --vcpus has no effect"},
	} {
		code, _, stderr := runCaptured(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.flag) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written on a usage error")
	}
}

// --json prints the result on stdout; --json=FILE writes it to FILE and
// keeps the text.
func TestIgvmMeasureJSONFlag(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	for _, tc := range []struct {
		name string
		args []string
		key  string // a key of the JSON object (or of its first element)
	}{
		{"igvm inspect", []string{"igvm", "inspect", d01}, "header_count"},
		{"igvm build", []string{"igvm", "build", "--kernel", kernel, "-o", filepath.Join(dir, "b.igvm")}, "boot_params"},
		{"igvm sign", []string{"igvm", "sign", d01, "--keyless", "-o", filepath.Join(dir, "s.igvm")}, "id_key_digest"},
		{"measure igvm", []string{"measure", "igvm", d01, "--profile", "mshv"}, "digest"},
		{"measure ovmf", []string{"measure", "ovmf", "--ovmf", "../../testdata/measure/ovmf/ovmf_AmdSev_suffix.bin", "--vcpus", "1", "--cpu", "milan"}, "ovmf_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCaptured(t, append(tc.args, "--json")...)
			var m map[string]any
			if code != exitOK || json.Unmarshal([]byte(stdout), &m) != nil || m[tc.key] == nil {
				t.Fatalf("--json: exit %d, stdout %.300q, stderr %q", code, stdout, stderr)
			}
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			code, stdout, stderr = runCaptured(t, append(tc.args, "--json="+file)...)
			if code != exitOK || strings.HasPrefix(stdout, "{") || stdout == "" {
				t.Fatalf("--json=FILE: exit %d, stdout %.300q, stderr %q", code, stdout, stderr)
			}
			b, err := os.ReadFile(file)
			var m2 map[string]any
			if err != nil || json.Unmarshal(b, &m2) != nil || m2[tc.key] == nil {
				t.Fatalf("--json=FILE wrote %.300q (%v)", b, err)
			}
		})
	}
}

// igvm build and igvm sign write their file sequentially: -o - gives the
// same bytes on stdout, with the summary line on stderr. Their summary is
// the one line of every build command.
func TestIgvmStdoutAndSummary(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	file := filepath.Join(dir, "podvm.igvm")
	code, stdout, stderr := runCaptured(t, "igvm", "build", "--kernel", kernel, "--cmdline", "console=ttyS0", "-o", file)
	if code != exitOK {
		t.Fatal(stderr)
	}
	b, _ := os.ReadFile(file)
	sum := sha256.Sum256(b)
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `: \d+ bytes, sha256 ` + hex.EncodeToString(sum[:]) + `, layout mshv, \d+ pages, kernel protocol 2\.15, cmdline 13 bytes, policy 0x3001f\n$`)
	if !want.MatchString(stdout) {
		t.Errorf("igvm build summary %q", stdout)
	}
	code, stdout, stderr = runCaptured(t, "igvm", "build", "--kernel", kernel, "--cmdline", "console=ttyS0", "-o", "-")
	if code != exitOK || stdout != string(b) || !strings.HasPrefix(stderr, "-: ") {
		t.Errorf("-o -: exit %d, %d bytes on stdout (want %d), stderr %q", code, len(stdout), len(b), stderr)
	}
	if code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", kernel, "-o", "-", "--json"); code != exitUsage {
		t.Errorf("-o - with --json: exit %d %q", code, stderr)
	}

	signed := filepath.Join(dir, "signed.igvm")
	code, stdout, stderr = runCaptured(t, "igvm", "sign", file, "--keyless", "-o", signed)
	if code != exitOK {
		t.Fatal(stderr)
	}
	sb, _ := os.ReadFile(signed)
	ssum := sha256.Sum256(sb)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(signed) + `: \d+ bytes, sha256 ` + hex.EncodeToString(ssum[:]) + `, digest [0-9a-f]{96} \(mshv\), policy 0x3001f, id key digest [0-9a-f]{96}\n$`).MatchString(stdout) {
		t.Errorf("igvm sign summary %q", stdout)
	}
	code, stdout, _ = runCaptured(t, "igvm", "sign", file, "--keyless", "-o", "-")
	if code != exitOK || stdout != string(sb) {
		t.Errorf("igvm sign -o -: exit %d, %d bytes", code, len(stdout))
	}
	// reference-values -o - is the JSON document.
	code, stdout, _ = runCaptured(t, "measure", "reference-values", signed, "-o", "-")
	if code != exitOK || !json.Valid([]byte(stdout)) {
		t.Errorf("reference-values -o -: exit %d %.100q", code, stdout)
	}
}

// --vcpus takes a list: one digest per count, each equal to the digest of
// that count alone.
func TestVCPUsList(t *testing.T) {
	ovmf := "../../testdata/measure/ovmf/ovmf_AmdSev_suffix.bin"
	for _, base := range [][]string{
		{"measure", "igvm", kvmLayoutFile(t), "--profile", "kvm", "--cpu", "genoa"},
		{"measure", "ovmf", "--ovmf", ovmf, "--cpu", "genoa"},
	} {
		code, stdout, stderr := runCaptured(t, append(base, "--vcpus", "1,2", "--vcpus", "4")...)
		if code != exitOK {
			t.Fatalf("%v: %s", base, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 3 {
			t.Fatalf("%v: %q", base, stdout)
		}
		for i, n := range []string{"1", "2", "4"} {
			_, one, _ := runCaptured(t, append(base, "--vcpus", n)...)
			want := n + " vCPU"
			if n != "1" {
				want += "s"
			}
			if lines[i] != want+": "+strings.TrimSpace(one) {
				t.Errorf("%v: line %q, alone %q", base, lines[i], one)
			}
		}
		// A range is its counts, as in the config file.
		if _, ranged, _ := runCaptured(t, append(base, "--vcpus", "1-2,4")...); ranged != stdout {
			t.Errorf("%v --vcpus 1-2,4: %q, want %q", base, ranged, stdout)
		}
		for _, bad := range []string{"2-1", "0-2", "1-513", "1-2,2", "x-3"} {
			if code, _, _ := runCaptured(t, append(base, "--vcpus", bad)...); code != exitUsage {
				t.Errorf("%v --vcpus %s: exit %d, want %d", base, bad, code, exitUsage)
			}
		}
		code, stdout, _ = runCaptured(t, append(base, "--vcpus", "1,2", "--json")...)
		var arr []map[string]any
		if code != exitOK || json.Unmarshal([]byte(stdout), &arr) != nil || len(arr) != 2 {
			t.Errorf("%v --json: %.200q", base, stdout)
		}
	}
}

// The same things are spelled the same way: --cpu on measure ovmf equals
// sev-snp-measure's --vcpu-type (hidden); --guest-features reads hex or
// decimal everywhere.
func TestFlagSpellings(t *testing.T) {
	ovmf := []string{"measure", "ovmf", "--ovmf", "../../testdata/measure/ovmf/ovmf_AmdSev_suffix.bin", "--vcpus", "2"}
	var outs []string
	for _, extra := range [][]string{
		{"--cpu", "EPYC-Milan", "--guest-features", "0x21"},
		{"--vcpu-type", "EPYC-Milan", "--guest-features", "33"},
		{"--cpu", "0xa00f11", "--guest-features", "0x21"},
	} {
		code, out, stderr := runCaptured(t, append(append([]string(nil), ovmf...), extra...)...)
		if code != exitOK {
			t.Fatalf("%v: %s", extra, stderr)
		}
		outs = append(outs, out)
	}
	if outs[0] != outs[1] || outs[0] != outs[2] {
		t.Errorf("spellings differ: %q", outs)
	}
	a := []string{"measure", "igvm", kvmLayoutFile(t), "--profile", "kvm"}
	_, hexOut, _ := runCaptured(t, append(a, "--guest-features", "0x21")...)
	_, decOut, _ := runCaptured(t, append(a, "--guest-features", "33")...)
	if hexOut == "" || hexOut != decOut {
		t.Errorf("--guest-features 0x21 %q, 33 %q", hexOut, decOut)
	}
	code, out, _ := runCaptured(t, "measure", "ovmf", "--help")
	_, flags, _ := strings.Cut(out, "\nFlags:\n")
	if code != exitOK || strings.Contains(flags, "--vcpu-type") || !strings.Contains(flags, "--cpu") {
		t.Errorf("measure ovmf --help shows the aliases or lacks --cpu:\n%s", out)
	}
}

// Required flags say so in --help; enumerated values complete in the shell.
func TestHelpAndCompletion(t *testing.T) {
	for _, tc := range []struct {
		cmd   []string
		flags []string
	}{
		{[]string{"igvm", "build"}, []string{"--kernel", "--output"}},
		{[]string{"measure", "igvm"}, []string{"--profile"}},
		{[]string{"measure", "ovmf"}, []string{"--ovmf"}},
	} {
		_, out, _ := runCaptured(t, append(tc.cmd, "--help")...)
		for _, f := range tc.flags {
			re := regexp.MustCompile(`(?m)^.*` + f + `\b.*\(required\)$`)
			if !re.MatchString(out) {
				t.Errorf("%v --help does not mark %s required", tc.cmd, f)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "measure", "igvm", "x", "--profile", ""}, []string{"mshv", "kvm"}},
		{[]string{"__complete", "measure", "reference-values", "x", "--cpu", ""}, []string{"genoa", "EPYC-Milan"}},
		{[]string{"__complete", "igvm", "sign", "x", "--profile", ""}, []string{"kvm"}},
		{[]string{"__complete", "measure", "ovmf", "--vmm-type", ""}, []string{"QEMU", "ec2", "gce"}},
		{[]string{"__complete", "measure", "ovmf", "--cpu", ""}, []string{"milan"}},
		{[]string{"__complete", "measure", "igvm", "x", "--host-kernel", ""}, []string{"6.11"}},
	} {
		code, out, _ := runCaptured(t, tc.args...)
		for _, w := range tc.want {
			if code != exitOK || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(w)+`$`).MatchString(out) {
				t.Errorf("%v: completions %q lack %q", tc.args, out, w)
			}
		}
	}
}

// measure reference-values works on what igvm build makes with its
// defaults: kvm is skipped with one warning that says why; asked for
// explicitly it is an error; --skip-kvm-checks lists the values marked
// hypothetical, in the JSON and on stderr.
func TestReferenceValuesOnIgvmBuildOutput(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	file := filepath.Join(dir, "podvm.igvm")
	if code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", kernel, "-o", file); code != exitOK {
		t.Fatal(stderr)
	}
	code, stdout, stderr := runCaptured(t, "measure", "reference-values", file, "-o", "-")
	var rv struct {
		Entries []struct {
			Profile      string                 `json:"profile"`
			Hypothetical bool                   `json:"hypothetical"`
			Skipped      []measure.KVMViolation `json:"kvm_checks_skipped"`
		} `json:"reference_values"`
		Skipped []struct {
			Profile, Reason string
		} `json:"skipped"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &rv) != nil {
		t.Fatalf("exit %d, stdout %.200q, stderr %q", code, stdout, stderr)
	}
	if len(rv.Entries) != 1 || rv.Entries[0].Profile != "mshv" || len(rv.Skipped) != 1 || rv.Skipped[0].Profile != "kvm" ||
		!strings.Contains(rv.Skipped[0].Reason, "0xfffffffff000") {
		t.Errorf("reference values %s", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "warning: measure reference-values: "+file+": no kvm values: QEMU/KVM would refuse this launch: qemu:check_vmsa_supported: vCPU 0: VMSA at GPA 0x803000") {
		t.Errorf("stderr %q", stderr)
	}
	if code, _, stderr := runCaptured(t, "measure", "reference-values", file, "--profile", "kvm", "-o", "-"); code != exitFailure || !strings.Contains(stderr, "0xfffffffff000") {
		t.Errorf("--profile kvm: exit %d %q", code, stderr)
	}
	code, stdout, stderr = runCaptured(t, "measure", "reference-values", file, "--skip-kvm-checks", "--cpu", "milan", "-o", "-")
	if code != exitOK || json.Unmarshal([]byte(stdout), &rv) != nil || len(rv.Entries) != 2 || len(rv.Entries[1].Skipped) == 0 || !rv.Entries[1].Hypothetical || len(rv.Entries[0].Skipped) != 0 {
		t.Fatalf("--skip-kvm-checks: exit %d %s", code, stdout)
	}
	if !strings.Contains(stderr, "HYPOTHETICAL kvm digests (--skip-kvm-checks)") {
		t.Errorf("--skip-kvm-checks stderr %q", stderr)
	}
}

// --kata is --pvalidate-opt --encrypted-page --svme, said in --help.
func TestIgvmBuildKata(t *testing.T) {
	dir := t.TempDir()
	kernel := testBzImage(t, dir)
	a, b := filepath.Join(dir, "a.igvm"), filepath.Join(dir, "b.igvm")
	if code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", kernel, "--kata", "-o", a); code != exitOK {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCaptured(t, "igvm", "build", "--kernel", kernel, "--pvalidate-opt", "--encrypted-page", "--svme", "-o", b); code != exitOK {
		t.Fatal(stderr)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ab) == 0 || !bytes.Equal(ab, bb) {
		t.Error("--kata differs from the three flags")
	}
	if code, _, _ := runCaptured(t, "igvm", "build", "--kernel", kernel, "--kata", "--svme", "-o", a); code != exitUsage {
		t.Errorf("--kata --svme: exit %d", code)
	}
	_, help, _ := runCaptured(t, "igvm", "build", "--help")
	if !strings.Contains(help, "--kata") || !strings.Contains(help, "--pvalidate-opt --encrypted-page --svme") {
		t.Error("--help does not document --kata")
	}
}

// igvm sign takes the key as `openssl ecparam -name secp384r1 -genkey`
// writes it (an EC PARAMETERS block first).
func TestIgvmSignOpensslKey(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (pkg/snp tests build the same PEM in Go)")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	if out, err := exec.Command(openssl, "ecparam", "-name", "secp384r1", "-genkey", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	code, stdout, stderr := runCaptured(t, "igvm", "sign", d01, "--key", key, "-o", filepath.Join(dir, "s.igvm"))
	if code != exitOK || !strings.Contains(stdout, "id key digest") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
