package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func TestIgvmSignCLI(t *testing.T) {
	src, err := filepath.Abs("../../testdata/igvm/d03_clh_empty_cpio.igvm")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := filepath.Abs("../../testdata/measure/ovmf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idKey, authorKey := filepath.Join(keys, "id-key.pem"), filepath.Join(keys, "author-key.pem")

	sign := func(args ...string) (int, string, string) {
		return runCaptured(t, append([]string{"igvm", "sign"}, args...)...)
	}
	verify := func(path string, opts measure.Options) *snp.IDAuth {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := igvm.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		_, auth, err := measure.VerifyIGVMIDBlock(context.Background(), f, opts)
		if err != nil {
			t.Fatal(err)
		}
		return auth
	}

	out1 := filepath.Join(dir, "a.igvm")
	if code, stdout, stderr := sign(src, "--key", idKey, "--author-key", authorKey, "-o", out1); code != 0 || !strings.Contains(stdout, "id key digest af505bae") {
		t.Fatalf("sign: %d %q %q", code, stdout, stderr)
	}
	if a := verify(out1, measure.Options{Profile: measure.ProfileMSHV}); !a.HasAuthorKey() {
		t.Error("author key missing")
	}
	// Deterministic: a second run writes the same bytes.
	out2 := filepath.Join(dir, "b.igvm")
	if code, _, stderr := sign(src, "--key", idKey, "--author-key", authorKey, "-o", out2); code != 0 {
		t.Fatal(stderr)
	}
	b1, _ := os.ReadFile(out1)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Error("two signing runs differ")
	}
	// Key-less, kvm profile, in place on a copy.
	inplace := filepath.Join(dir, "c.igvm")
	orig, err := os.ReadFile(kvmLayoutFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inplace, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := sign(inplace, "--keyless", "--profile", "kvm", "--vcpus", "2", "--cpu", "genoa", "--json"); code != 0 {
		t.Fatal(stderr)
	}
	g, _ := measure.LookupCPU("genoa")
	verify(inplace, measure.Options{Profile: measure.ProfileKVM, VCPUs: 2, CPU: &g})

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no key", []string{src, "-o", filepath.Join(dir, "x")}, exitUsage, "exactly one of"},
		{"key and keyless", []string{src, "--key", idKey, "--keyless", "-o", filepath.Join(dir, "x")}, exitUsage, "exactly one of"},
		{"author without key", []string{src, "--keyless", "--author-key", authorKey, "-o", filepath.Join(dir, "x")}, exitUsage, "needs --key"},
		{"bad family id", []string{src, "--keyless", "--family-id", "12", "-o", filepath.Join(dir, "x")}, exitUsage, "16 bytes"},
		{"kvm without cpu", []string{src, "--keyless", "--profile", "kvm", "--vcpus", "2", "-o", filepath.Join(dir, "x")}, exitUsage, "needs --cpu"},
		{"not a key", []string{src, "--key", src, "-o", filepath.Join(dir, "x")}, exitFailure, "no PEM block"},
		{"not igvm", []string{idKey, "--keyless", "-o", filepath.Join(dir, "x")}, exitFailure, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := sign(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d stderr %q, want %d %q", code, stderr, tc.code, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Error("output written on failure")
			}
		})
	}
}

// The signed files are read back by the other commands: "igvm inspect"
// finds the ID block and a valid signature, "measure igvm" reports the
// same digest for the file and its ID block, and a key-less block is
// rebuilt from the digest and policy alone, byte for byte.
func TestIgvmSignReread(t *testing.T) {
	src, err := filepath.Abs("../../testdata/igvm/d03_clh_empty_cpio.igvm")
	if err != nil {
		t.Fatal(err)
	}
	idKey, err := filepath.Abs("../../testdata/measure/ovmf/id-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"key", []string{"--key", idKey}},
		{"keyless", []string{"--keyless"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".igvm")
			code, stdout, stderr := runCaptured(t, append([]string{"igvm", "sign", src, "--json", "-o", out}, tc.args...)...)
			if code != 0 {
				t.Fatalf("sign: exit %d: %s", code, stderr)
			}
			var signed struct {
				Digest      string `json:"digest"`
				IDKeyDigest string `json:"id_key_digest"`
			}
			if err := json.Unmarshal([]byte(stdout), &signed); err != nil {
				t.Fatalf("sign --json: %v: %s", err, stdout)
			}

			code, stdout, stderr = runCaptured(t, "igvm", "inspect", "--json", out)
			if code != 0 {
				t.Fatalf("inspect: exit %d: %s", code, stderr)
			}
			var rep struct {
				IDBlock *struct {
					LD             string `json:"ld"`
					IDKeyDigest    string `json:"id_key_digest"`
					SignatureValid bool   `json:"signature_valid"`
				} `json:"id_block"`
			}
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.IDBlock == nil || !rep.IDBlock.SignatureValid || rep.IDBlock.LD != signed.Digest || rep.IDBlock.IDKeyDigest != signed.IDKeyDigest {
				t.Fatalf("inspect id_block %+v, signed digest %s key %s", rep.IDBlock, signed.Digest, signed.IDKeyDigest)
			}

			code, stdout, stderr = runCaptured(t, "measure", "igvm", "--profile", "mshv", "--json", out)
			if code != 0 {
				t.Fatalf("measure: exit %d: %s", code, stderr)
			}
			var m struct {
				Digest        string `json:"digest"`
				IDBlockDigest string `json:"id_block_digest"`
			}
			if err := json.Unmarshal([]byte(stdout), &m); err != nil {
				t.Fatal(err)
			}
			if m.Digest != signed.Digest || m.IDBlockDigest != signed.Digest {
				t.Fatalf("measure igvm: digest %s id block %s, signed %s", m.Digest, m.IDBlockDigest, signed.Digest)
			}

			if tc.name != "keyless" {
				return
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			f, err := igvm.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			var hdr *igvm.SNPIDBlock
			for _, h := range f.Directives() {
				if x, ok := h.(*igvm.SNPIDBlock); ok {
					hdr = x
				}
			}
			d, err := snp.ParseDigest(signed.Digest)
			if err != nil {
				t.Fatal(err)
			}
			blk := snp.NewIDBlock(d, 0x3001f) // the file's GUEST_POLICY
			auth, err := snp.KeylessIDAuth(blk)
			if err != nil {
				t.Fatal(err)
			}
			again := igvm.NewSNPIDBlock(hdr.CompatibilityMask, blk, auth)
			if *again != *hdr {
				t.Error("key-less ID block rebuilt from the digest differs from the file's")
			}
		})
	}
}
