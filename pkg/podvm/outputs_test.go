package podvm

import (
	"bytes"
	"context"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// reproBuild builds the reproducibility config once per test binary run.
func reproBuild(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	cfg := reproTree(t, dir, false)
	out := filepath.Join(dir, "out")
	m, _, err := build(t, cfg, out, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out, m
}

// contrastSNP mirrors Contrast's SNPReferenceValues
// (internal/manifest/referencevalues.go), with its field types: the file
// must decode into it with unknown fields refused.
type contrastSNP struct {
	Platform           string
	ProductName        string
	TrustedMeasurement string
	MinimumTCB         struct {
		BootloaderVersion *uint8
		TEEVersion        *uint8
		SNPVersion        *uint8
		MicrocodeVersion  *uint8
	}
	GuestPolicy             abi.SnpPolicy
	PlatformInfo            abi.SnpPlatformInfo
	MinimumMitigationVector uint64
	AllowedChipIDs          []string
	CPUs                    uint64
}

func TestContrastReferenceValues(t *testing.T) {
	out, m := reproBuild(t)
	b, err := os.ReadFile(filepath.Join(out, FileContrastReferences))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var got map[string]struct {
		SNP []contrastSNP `json:"snp,omitempty"`
		TDX []struct{}    `json:"tdx,omitempty"`
	}
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("Contrast's decoder refuses the file: %v", err)
	}
	// The payload's target is keyed by its runtime handler, the other by
	// its name. mshv: Milan and Genoa; QEMU: 2 CPUs x 2 vCPU counts.
	if m.Runtime == nil || m.Runtime.Target != "metal-qemu-snp" || !strings.HasPrefix(m.Runtime.Handler, "contrast-cc-metal-qemu-snp-") {
		t.Fatalf("manifest runtime %+v", m.Runtime)
	}
	want := map[string]int{"aks-clh-snp": 2, m.Runtime.Handler: 4}
	for handler, rv := range got {
		if len(rv.SNP) != want[handler] {
			t.Errorf("%s: %d entries, want %d", handler, len(rv.SNP), want[handler])
		}
		for _, e := range rv.SNP {
			if e.MinimumTCB.BootloaderVersion != nil || e.MinimumTCB.MicrocodeVersion != nil {
				t.Errorf("%s: MinimumTCB filled in: %+v", handler, e.MinimumTCB)
			}
			if !e.GuestPolicy.SMT || e.GuestPolicy.Debug || !e.PlatformInfo.SMTEnabled {
				t.Errorf("%s: policy %+v platform %+v", handler, e.GuestPolicy, e.PlatformInfo)
			}
			if e.ProductName != "Milan" && e.ProductName != "Genoa" {
				t.Errorf("%s: product %q", handler, e.ProductName)
			}
			found := false
			for _, tg := range m.Targets {
				for _, d := range tg.Digests {
					if d.Digest.String() == e.TrustedMeasurement && uint64(d.VCPUs) == e.CPUs && (d.Product == "" || d.Product == e.ProductName) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("%s: %s (%s, %d vCPUs) is no digest of the manifest", handler, e.TrustedMeasurement, e.ProductName, e.CPUs)
			}
		}
	}
	if len(got) != 2 {
		t.Errorf("%d runtime handlers, want 2", len(got))
	}
}

// TestIDBlocks checks every ID block against the target digests: its
// signatures verify, its digest and policy are the target's, and the
// block in podvm.igvm is the igvm-mshv target's.
func TestIDBlocks(t *testing.T) {
	out, m := reproBuild(t)
	for _, tg := range m.Targets {
		if tg.IDBlock == "" {
			t.Fatalf("target %s has no ID block", tg.Name)
		}
		b, err := os.ReadFile(filepath.Join(out, tg.IDBlock))
		if err != nil {
			t.Fatal(err)
		}
		var doc IDBlocks
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Blocks) != len(tg.Digests) || doc.Keyless || !doc.AuthorKeyEnabled || doc.Policy != tg.Policy {
			t.Errorf("%s: %d blocks for %d digests, keyless %v, author key %v, policy %s", tg.Name, len(doc.Blocks), len(tg.Digests), doc.Keyless, doc.AuthorKeyEnabled, doc.Policy)
		}
		for i, e := range doc.Blocks {
			rawBlk, err1 := base64.StdEncoding.DecodeString(e.IDBlock)
			rawAuth, err2 := base64.StdEncoding.DecodeString(e.IDAuth)
			if err1 != nil || err2 != nil || len(rawBlk) != snp.IDBlockSize || len(rawAuth) != snp.IDAuthSize {
				t.Fatalf("%s block %d: %d and %d bytes (%v, %v)", tg.Name, i, len(rawBlk), len(rawAuth), err1, err2)
			}
			blk, err := snp.UnmarshalIDBlock(rawBlk)
			if err != nil {
				t.Fatal(err)
			}
			auth, err := snp.UnmarshalIDAuth(rawAuth)
			if err != nil {
				t.Fatal(err)
			}
			if err := auth.Verify(blk); err != nil {
				t.Errorf("%s block %d: %v", tg.Name, i, err)
			}
			d := tg.Digests[i]
			if blk.Digest != d.Digest || e.Digest != d.Digest || blk.Policy != tg.Policy || e.VCPUs != d.VCPUs || e.CPU != d.CPU {
				t.Errorf("%s block %d: digest %s policy %s (%s, %d), want %s %s (%s, %d)", tg.Name, i, blk.Digest, blk.Policy, e.CPU, e.VCPUs, d.Digest, tg.Policy, d.CPU, d.VCPUs)
			}
			if blk.GuestSVN != 1 || blk.FamilyID[15] != 1 || blk.ImageID[15] != 0xff {
				t.Errorf("%s block %d: ids %x %x svn %d", tg.Name, i, blk.FamilyID, blk.ImageID, blk.GuestSVN)
			}
			if auth.IDKeyDigest() != m.Inputs.IDKey.PublicKeyDigest || auth.AuthorKeyDigest() != m.Inputs.AuthorKey.PublicKeyDigest {
				t.Errorf("%s block %d: key digests differ from the manifest's", tg.Name, i)
			}
		}
	}
	f, size := openFile(t, filepath.Join(out, FileIGVM))
	ig, err := igvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	blk, _, err := measure.VerifyIGVMIDBlock(context.Background(), ig, measure.Options{Profile: measure.ProfileMSHV})
	if err != nil {
		t.Fatal(err)
	}
	if blk.Digest != m.Targets[0].Digests[0].Digest || *m.IGVM.IDBlockDigest != blk.Digest {
		t.Errorf("IGVM ID block digest %s, target %s", blk.Digest, m.Targets[0].Digests[0].Digest)
	}
}

func openFile(t *testing.T, p string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

// TestOutputsAgree checks the outputs against each other and the
// manifest: the disk's root hash is the command line's, podvm.igvm holds
// vmlinuz's payload, initrd.img and cmdline.txt byte for byte, and the
// manifest lists every output with its digest.
func TestOutputsAgree(t *testing.T) {
	out, m := reproBuild(t)
	disk, size := openFile(t, filepath.Join(out, FileRootfs))
	ins, err := rootfs.Inspect(context.Background(), disk, size, rootfs.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !ins.RootHashOK || ins.Verity.RootHash != m.Rootfs.Verity.RootHash || !strings.Contains(m.Cmdline.Line, "ibroot.hash="+ins.Verity.RootHash) {
		t.Errorf("root hash %s (ok %v), manifest %s, command line %q", ins.Verity.RootHash, ins.RootHashOK, m.Rootfs.Verity.RootHash, m.Cmdline.Line)
	}
	line, _ := os.ReadFile(filepath.Join(out, FileCmdline))
	if string(line) != m.Cmdline.Line+"\n" {
		t.Errorf("cmdline.txt %q, manifest %q", line, m.Cmdline.Line)
	}
	kernel, _ := os.ReadFile(filepath.Join(out, FileKernel))
	initrdImg, _ := os.ReadFile(filepath.Join(out, FileInitrd))
	f, fsize := openFile(t, filepath.Join(out, FileIGVM))
	ig, err := igvm.Open(f, fsize)
	if err != nil {
		t.Fatal(err)
	}
	bz, err := linuxboot.ParseBzImage(kernel)
	if err != nil {
		t.Fatal(err)
	}
	mem := ig.Memory()
	for _, c := range []struct {
		what string
		gpa  uint64
		want []byte
	}{
		{"kernel payload", bz.Header.PrefAddress, bz.Payload},
		{"initrd", uint64(m.IGVM.Ramdisk), initrdImg},
		{"command line", uint64(m.IGVM.Cmdline), append([]byte(m.Cmdline.Line), 0)},
	} {
		got := make([]byte, len(c.want))
		if _, err := mem.ReadAt(got, int64(c.gpa)); err != nil {
			t.Fatalf("%s at %#x: %v", c.what, c.gpa, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("the IGVM's %s at %#x differs from the output", c.what, c.gpa)
		}
	}
	sums := outputSums(t, out)
	if len(m.Outputs) != len(sums)-1 {
		t.Errorf("manifest lists %d outputs, the directory holds %d besides it", len(m.Outputs), len(sums)-1)
	}
	for _, o := range m.Outputs {
		if sums[o.Name] != o.SHA256 {
			t.Errorf("%s: sha256 %s, manifest %s", o.Name, sums[o.Name], o.SHA256)
		}
	}
	// No absolute path of the build machine in any text output.
	for _, name := range append([]string{FileManifest, FileReferenceValues, FileContrastReferences, IDBlockFile("aks-clh-snp")}, m.Runtime.Files...) {
		b, _ := os.ReadFile(filepath.Join(out, name))
		if bytes.Contains(b, []byte(filepath.Dir(out))) || bytes.Contains(b, []byte(os.TempDir())) {
			t.Errorf("%s holds a host path", name)
		}
	}
}

// jsonNames lists the JSON field names of t and of the types it holds
// (types that encode themselves are leaves).
func jsonNames(t reflect.Type, seen map[reflect.Type]bool, names map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Marshaler]()) || t.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			jsonNames(f.Type, seen, names)
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		names[tag] = true
		jsonNames(f.Type, seen, names)
	}
}

// TestManifestDoc: every field name of the manifest, the reference values
// and the ID block files is in docs/manifest.md, and the reference values
// example there is a real build's.
func TestManifestDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/manifest.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	seen := map[reflect.Type]bool{
		// Documented as wholes.
		reflect.TypeFor[bootparams.E820Entry](): true, reflect.TypeFor[linuxboot.Registers](): true,
		reflect.TypeFor[linuxboot.ACPITable](): true, reflect.TypeFor[rootfs.Partition](): true,
		// go-sev-guest's, documented there.
		reflect.TypeFor[abi.SnpPolicy](): true, reflect.TypeFor[abi.SnpPlatformInfo](): true,
	}
	for _, v := range []any{Manifest{}, ReferenceValues{}, ContrastSNP{}, IDBlocks{}} {
		jsonNames(reflect.TypeOf(v), seen, names)
	}
	for n := range names {
		if !bytes.Contains(doc, []byte("`"+n+"`")) && !bytes.Contains(doc, []byte("."+n+"`")) && !bytes.Contains(doc, []byte("\""+n+"\"")) {
			t.Errorf("docs/manifest.md does not name the field %q", n)
		}
	}
	out, _ := reproBuild(t)
	rv, _ := os.ReadFile(filepath.Join(out, FileReferenceValues))
	start := bytes.Index(doc, []byte("```json\n"))
	end := bytes.Index(doc[start+8:], []byte("```"))
	example := doc[start+8 : start+8+end]
	var ex ReferenceTarget
	if err := json.Unmarshal(example, &ex); err != nil {
		t.Fatal(err)
	}
	var got ReferenceValues
	json.Unmarshal(rv, &got)
	want := got.Targets[1]
	want.Values = want.Values[:1]
	if w, _ := marshalIndent(want); string(w) != string(example) {
		t.Errorf("the example of docs/manifest.md is not a build's:\n%s\nbuilt:\n%s", example, w)
	}
}

// TestIDBlocksKeyless: key-less ID blocks verify with the key recovered
// from their fixed signature, and carry no author key.
func TestIDBlocksKeyless(t *testing.T) {
	dir := t.TempDir()
	cfg := reproTree(t, dir, false)
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte("    key: id-key.pem\n    authorKey: author-key.pem\n"), []byte("    keyless: true\n"), 1)
	os.WriteFile(cfg, b, 0o644)
	out := filepath.Join(dir, "out")
	m, _, err := build(t, cfg, out, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Inputs.IDKey != nil {
		t.Errorf("keyless build records an ID key: %+v", m.Inputs.IDKey)
	}
	for _, tg := range m.Targets {
		raw, _ := os.ReadFile(filepath.Join(out, tg.IDBlock))
		var doc IDBlocks
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if !doc.Keyless || doc.AuthorKeyEnabled || doc.AuthorKeyDigest != nil {
			t.Errorf("%s: keyless %v, author key %v %v", tg.Name, doc.Keyless, doc.AuthorKeyEnabled, doc.AuthorKeyDigest)
		}
		for i, e := range doc.Blocks {
			rb, _ := base64.StdEncoding.DecodeString(e.IDBlock)
			ra, _ := base64.StdEncoding.DecodeString(e.IDAuth)
			blk, err1 := snp.UnmarshalIDBlock(rb)
			auth, err2 := snp.UnmarshalIDAuth(ra)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if err := auth.Verify(blk); err != nil || blk.Digest != tg.Digests[i].Digest {
				t.Errorf("%s block %d: %v", tg.Name, i, err)
			}
		}
	}
	f, size := openFile(t, filepath.Join(out, FileIGVM))
	ig, err := igvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := measure.VerifyIGVMIDBlock(context.Background(), ig, measure.Options{Profile: measure.ProfileMSHV}); err != nil {
		t.Error(err)
	}
}

// TestContrastLeavesOutOtherProducts: a target whose CPU models are no
// product Contrast accepts is left out of its file, and said so, rather
// than written as an empty entry or dropped in silence.
func TestContrastLeavesOutOtherProducts(t *testing.T) {
	var d snp.Digest
	d[0] = 1
	ms := &measureStage{Targets: []targetMeasurement{
		{Name: "rome", Platform: PlatformQEMUOVMF, Policy: 0x30000, Digests: []TargetDigest{{CPU: "EPYC-v4", Product: "Rome", VCPUs: 1, Digest: d}}},
		{Name: "milan", Platform: PlatformQEMUOVMF, Policy: 0x30000, Digests: []TargetDigest{{CPU: "EPYC-Milan", Product: "Milan", VCPUs: 1, Digest: d}}},
		{Name: "mshv", Platform: PlatformIGVMMSHV, Policy: 0x30000, Digests: []TargetDigest{{Digest: d}}},
	}}
	rv, crv, left, err := referenceValues("t", ms, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Targets) != 3 {
		t.Errorf("reference-values.json has %d targets, want all 3", len(rv.Targets))
	}
	if !reflect.DeepEqual(left, []string{"rome"}) {
		t.Errorf("left out %q, want [rome]", left)
	}
	if _, ok := crv["rome"]; ok || len(crv["milan"].SNP) != 1 || len(crv["mshv"].SNP) != len(ContrastProducts) {
		t.Errorf("Contrast's file: %+v", crv)
	}
}
