package measure

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

var update = flag.Bool("update", false, "rewrite testdata/measure/kvm-ready.igvm")

const goldenDir = "../../testdata/measure"

// kvmReadyIGVM re-encodes vector d03 the way a KVM loader needs it (what
// igvmmeasure --check-kvm accepts): every directive but the VP context in
// the same order, then the VP context moved to 0xFFFFFFFFF000 as the last
// directive, with CR0 0x31, SNP_ACTIVE only, and the MXCSR/FCW that
// KVM_SEV_INIT2 writes. Its digest is then the file's own VMSA bytes.
func kvmReadyIGVM(t testing.TB) []byte {
	t.Helper()
	var c vectorCase
	for _, vc := range vectorCases(t) {
		if vc.Name == "d03_clh_empty_cpio" {
			c = vc
		}
	}
	f := openVector(t, c)
	var b igvm.Builder
	var ctx *igvm.VPContext
	var vmsa []byte
	for _, h := range f.Headers {
		if x, ok := h.(*igvm.VPContext); ok {
			page, err := f.Data(x)
			if err != nil {
				t.Fatal(err)
			}
			cp := *x
			cp.GPA = KVMVMSAGPA
			ctx, vmsa = &cp, page
			continue
		}
		if _, ok := h.(*igvm.SNPIDBlock); ok {
			continue // its LD would be stale
		}
		if igvm.HasData(h) {
			b.Add(h, f.DataReader(h))
		} else {
			b.Add(h, nil)
		}
	}
	binary.LittleEndian.PutUint64(vmsa[0x158:], 0x31)   // CR0
	binary.LittleEndian.PutUint64(vmsa[0x3b0:], 0x1)    // sev_features
	binary.LittleEndian.PutUint32(vmsa[0x408:], 0x1f80) // MXCSR
	binary.LittleEndian.PutUint16(vmsa[0x410:], 0x37f)  // FCW
	b.Add(ctx, igvm.Bytes(vmsa))
	return igvmtest.Write(t, &b)
}

type goldenCase struct {
	File          string  `json:"file"`
	VCPUs         int     `json:"vcpus"`
	CPU           string  `json:"cpu,omitempty"`
	HostKernel    string  `json:"host_kernel"`
	GuestFeatures *uint64 `json:"guest_features,omitempty"`
	SkipChecks    bool    `json:"skip_kvm_checks"`
	Digest        string  `json:"digest"`
}

// TestKVMGolden checks the kvm profile against testdata/measure/kvm-golden.json,
// digests computed by scripts/measure/kvm_golden.py, an independent
// re-implementation in Python (see testdata/README.md).
func TestKVMGolden(t *testing.T) {
	ready := kvmReadyIGVM(t)
	path := filepath.Join(goldenDir, "kvm-ready.igvm")
	if *update {
		if err := os.WriteFile(path, ready, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, ready) {
		t.Fatalf("%s differs from the file built from d03 (sha256 %x); run go test -run TestKVMGolden -update", path, sha256.Sum256(ready))
	}
	var golden []goldenCase
	b, err := os.ReadFile(filepath.Join(goldenDir, "kvm-golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden) < 10 {
		t.Fatalf("only %d golden cases", len(golden))
	}
	for _, g := range golden {
		data, err := os.ReadFile(filepath.Join(goldenDir, "..", g.File))
		if err != nil {
			t.Fatal(err)
		}
		hk, err := ParseHostKernel(g.HostKernel)
		if err != nil {
			t.Fatal(err)
		}
		opts := Options{Profile: ProfileKVM, VCPUs: g.VCPUs, HostKernel: hk, GuestFeatures: g.GuestFeatures, SkipKVMChecks: g.SkipChecks}
		if g.CPU != "" {
			m, err := LookupCPU(g.CPU)
			if err != nil {
				t.Fatal(err)
			}
			opts.CPU = &m
		}
		res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(data), int64(len(data)), opts)
		if err != nil {
			t.Errorf("%+v: %v", g, err)
			continue
		}
		if res.Digest.String() != g.Digest {
			t.Errorf("%s vcpus=%d cpu=%s host=%s: digest %s, golden %s", g.File, g.VCPUs, g.CPU, g.HostKernel, res.Digest, g.Digest)
		}
		if res.OneVCPUDigest != nil && res.APVMSAHash != nil {
			n, err := ExtendVCPUs(*res.OneVCPUDigest, *res.APVMSAHash, g.VCPUs)
			if err != nil || n != res.Digest {
				t.Errorf("%s: ExtendVCPUs(%d) = %s, want %s", g.File, g.VCPUs, n, res.Digest)
			}
		}
	}
}

// The KVM-ready file passes the checks with no warnings: its kvm digest is
// the chain over its directives with its own VMSA bytes (igvmmeasure
// --native-zero semantics), and it differs from its mshv digest.
func TestKVMReadyIsVerbatim(t *testing.T) {
	ready := kvmReadyIGVM(t)
	res, err := MeasureIGVMFile(context.Background(), bytes.NewReader(ready), int64(len(ready)), Options{Profile: ProfileKVM})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
	f, err := igvm.Parse(ready)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain(Digest{})
	for _, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.PageData:
			typ := snp.PageNormal
			switch {
			case x.DataType == igvm.DataSecrets:
				typ = snp.PageSecrets
			case x.DataType == igvm.DataCPUID:
				typ = snp.PageCPUID
			case !igvm.HasData(x):
				typ = snp.PageZero
			}
			d, _ := f.Data(x)
			must(t, c.AddPage(x.GPA, typ, d))
		case *igvm.ParameterInsert:
			must(t, c.AddPage(x.GPA, snp.PageUnmeasured, nil))
		case *igvm.VPContext:
			d, _ := f.Data(x)
			must(t, c.AddPage(x.GPA, snp.PageVMSA, d))
		}
	}
	if c.Digest() != res.Digest {
		t.Errorf("kvm %s, verbatim chain %s", res.Digest, c.Digest())
	}
	m, err := MeasureIGVMFile(context.Background(), bytes.NewReader(ready), int64(len(ready)), Options{Profile: ProfileMSHV})
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest == res.Digest {
		t.Error("mshv and kvm agree on a file with zero pages")
	}
}

// TestKVMGoldenPython re-runs the Python cross-check and compares it with
// the committed golden file, so the two implementations stay independent
// witnesses of each other.
func TestKVMGoldenPython(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI (scripts/testdeps.sh installs it)")
		}
		t.Skip("no python3")
	}
	out, err := exec.Command(py, "../../scripts/measure/kvm_golden.py", "--check", "../../testdata").CombinedOutput()
	if err != nil {
		t.Fatalf("kvm_golden.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
