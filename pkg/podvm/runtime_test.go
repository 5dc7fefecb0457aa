package podvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

// TestPayloadOutputs checks the node payload of the reproducibility
// build (its qemu-ovmf target): the manifest lists its files, which pass
// pull's check of an output set; the install plan names the outputs by
// their digests; the Kata configuration holds the measured command line
// and the ID block of the CPU model and vCPU count it boots with; the
// firmware is the one measured; the reference values are keyed by the
// handler; and the directory installs.
func TestPayloadOutputs(t *testing.T) {
	out, m := reproBuild(t)
	r := m.Runtime
	if r == nil {
		t.Fatal("no runtime section in the manifest")
	}
	want := []string{payload.KataConfigFile("metal-qemu-snp"), payload.ContainerdDropInFile, payload.InstallPlanFile,
		payload.FirmwareFile("metal-qemu-snp"), payload.RuntimeClassFile}
	if strings.Join(r.Files, ",") != "configuration-metal-qemu-snp.toml,containerd-runtime.toml,install-plan.json,ovmf-metal-qemu-snp.fd,runtimeclass.yaml" {
		t.Errorf("runtime files %v, want %v", r.Files, want)
	}
	listed := map[string]Output{}
	var pulled []payload.PulledFile
	for _, o := range m.Outputs {
		listed[o.Name] = o
	}
	sums := outputSums(t, out)
	for name, sum := range sums {
		st, _ := os.Stat(filepath.Join(out, name))
		pulled = append(pulled, payload.PulledFile{Name: name, Size: st.Size(), SHA256: sum})
	}
	for _, f := range r.Files {
		if _, ok := listed[f]; !ok {
			t.Errorf("%s is not in the manifest's outputs", f)
		}
	}
	// What pull checks before it publishes a pulled directory.
	if err := payload.CheckOutputSet(context.Background(), out, pulled); err != nil {
		t.Errorf("pull would refuse the output set: %v", err)
	}

	planJSON, _ := os.ReadFile(filepath.Join(out, payload.InstallPlanFile))
	plan, err := payload.ParsePlan(planJSON, payload.InstallPlanFile)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Handler != r.Handler || plan.HandlerDigest != r.HandlerDigest || !strings.HasPrefix(r.HandlerDigest, strings.TrimPrefix(r.Handler, "contrast-cc-metal-qemu-snp-")) {
		t.Errorf("plan handler %s (%s), manifest %s (%s)", plan.Handler, plan.HandlerDigest, r.Handler, r.HandlerDigest)
	}
	if d, err := payload.HandlerDigest(r.HashedFiles); err != nil || d != r.HandlerDigest {
		t.Errorf("handler digest of the manifest's hashed files %s (%v), manifest %s", d, err, r.HandlerDigest)
	}
	for _, f := range plan.Files {
		if o, ok := listed[f.Source]; !ok || o.SHA256 != f.SHA256 || o.Size != f.Size {
			t.Errorf("plan file %s: %s %d, manifest %+v", f.Source, f.SHA256, f.Size, o)
		}
	}

	// The Kata configuration.
	raw, _ := os.ReadFile(filepath.Join(out, payload.KataConfigFile("metal-qemu-snp")))
	var kata struct {
		Hypervisor struct {
			QEMU map[string]any `toml:"qemu"`
		} `toml:"hypervisor"`
	}
	if err := toml.Unmarshal(raw, &kata); err != nil {
		t.Fatal(err)
	}
	q := kata.Hypervisor.QEMU
	if q["kernel_params"] != m.Cmdline.Line {
		t.Errorf("kernel_params %q, measured command line %q", q["kernel_params"], m.Cmdline.Line)
	}
	var ids IDBlocks
	idRaw, _ := os.ReadFile(filepath.Join(out, IDBlockFile("metal-qemu-snp")))
	if err := json.Unmarshal(idRaw, &ids); err != nil {
		t.Fatal(err)
	}
	var milan1 *IDBlockEntry
	for i, e := range ids.Blocks {
		if e.CPU == "EPYC-Milan" && e.VCPUs == 1 {
			milan1 = &ids.Blocks[i]
		}
	}
	if milan1 == nil || q["snp_id_block"] != milan1.IDBlock || q["snp_id_auth"] != milan1.IDAuth {
		t.Errorf("snp_id_block %v, want the EPYC-Milan 1-vCPU block %+v", q["snp_id_block"], milan1)
	}
	if q["snp_guest_policy"] != int64(0x30000) || q["rootfs_type"] != "erofs" {
		t.Errorf("policy %v rootfs_type %v", q["snp_guest_policy"], q["rootfs_type"])
	}
	fw, _ := os.ReadFile(filepath.Join("testdata", "repro", "ovmf_AmdSev_suffix.bin"))
	if got, _ := os.ReadFile(filepath.Join(out, payload.FirmwareFile("metal-qemu-snp"))); !bytes.Equal(got, fw) {
		t.Error("the payload's firmware is not the measured one")
	}

	// Reference values: the payload's target by its handler.
	var rv ReferenceValues
	rvRaw, _ := os.ReadFile(filepath.Join(out, FileReferenceValues))
	json.Unmarshal(rvRaw, &rv)
	for _, tg := range rv.Targets {
		wantHandler := ""
		if tg.Name == "metal-qemu-snp" {
			wantHandler = r.Handler
		}
		if tg.RuntimeHandler != wantHandler {
			t.Errorf("%s: runtime_handler %q, want %q", tg.Name, tg.RuntimeHandler, wantHandler)
		}
	}

	// The output directory installs.
	root := t.TempDir()
	res, err := payload.Install(context.Background(), out, payload.InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handler != r.Handler || len(res.Files) != 5 {
		t.Errorf("install: handler %s, %d files", res.Handler, len(res.Files))
	}
	disk, _ := os.ReadFile(filepath.Join(root, "opt", r.Handler, "share", "rootfs.img"))
	if sha256Hex(disk) != listed[FileRootfs].SHA256 {
		t.Error("installed rootfs.img differs from the output")
	}
}

// TestRuntimeFields: spec.runtime is payload.Options field for field
// (a field added to Options and not here fails), and pkg/payload's option
// errors map to the config's field paths.
func TestRuntimeFields(t *testing.T) {
	opts, rt := reflect.TypeFor[payload.Options](), reflect.TypeFor[Runtime]()
	for i := 0; i < opts.NumField(); i++ {
		name := opts.Field(i).Name
		if name == "KataConfigTemplateName" {
			continue // the as-written path of KataConfigTemplate
		}
		if _, ok := rt.FieldByName(name); !ok {
			t.Errorf("payload.Options.%s has no spec.runtime field", name)
		}
	}
	if rt.NumField() != opts.NumField()-1 {
		t.Errorf("spec.runtime has %d fields, payload.Options %d (one the template's name)", rt.NumField(), opts.NumField())
	}
	for opt, want := range map[string]string{"InstallPrefix": "spec.runtime.installPrefix", "VMMemoryMiB": "spec.runtime.vmMemoryMiB",
		"URLBase": "spec.runtime.urlBase", "CPU": "spec.runtime.cpu", "KataConfigTemplateName": "spec.runtime.kataConfigTemplate", "Nope": "spec.runtime"} {
		if got := runtimeField(opt); got != want {
			t.Errorf("runtimeField(%s) = %s, want %s", opt, got, want)
		}
	}
}

// TestRuntimeErrors: a bad spec.runtime is a config error at its field
// and line: what the config alone shows when it is loaded, what
// pkg/payload refuses when the build starts, before any stage runs.
func TestRuntimeErrors(t *testing.T) {
	dir := t.TempDir()
	cfgPath := reproTree(t, dir, false)
	orig, _ := os.ReadFile(cfgPath)
	const runtime = "  runtime:\n    target: metal-qemu-snp\n    cpu: EPYC-Milan\n    handlerPrefix: contrast-cc-\n"
	if !bytes.HasSuffix(orig, []byte(runtime)) {
		t.Fatalf("the repro config does not end with its runtime section")
	}
	base := string(orig[:len(orig)-len(runtime)])
	line := strings.Count(base, "\n") + 1 // of "runtime:"
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte("[hypervisor.clh]\ndefault_vcpus = 1\n"), 0o644)
	for _, c := range []struct {
		name    string
		runtime string
		atLoad  bool
		field   string
		line    int // relative to "runtime:"
		substr  string
	}{
		{"no target of two", "  runtime:\n    handlerPrefix: x-\n", true, "spec.runtime.target", 1, "the config has 2 targets (aks-clh-snp, metal-qemu-snp)"},
		{"unknown target", "  runtime:\n    target: nope\n", true, "spec.runtime.target", 1, `"nope": no such target`},
		{"cpu of no target", "  runtime:\n    target: metal-qemu-snp\n    cpu: turin\n", true, "spec.runtime.cpu", 2, `"turin" is none of target metal-qemu-snp's CPU models`},
		{"cpu on mshv", "  runtime:\n    target: aks-clh-snp\n    cpu: milan\n", true, "spec.runtime.cpu", 2, "target aks-clh-snp is igvm-mshv, whose launch digest depends on no CPU model"},
		{"unknown field", "  runtime:\n    target: aks-clh-snp\n    handler: x\n", true, "spec.runtime.handler", 2, "unknown field"},
		{"two CPU models, none named", "  runtime:\n    target: metal-qemu-snp\n", false, "spec.runtime.cpu", 1, "has ID blocks for EPYC-Milan, EPYC-Genoa"},
		{"relative install prefix", "  runtime:\n    target: aks-clh-snp\n    installPrefix: opt/x/\n", false, "spec.runtime.installPrefix", 2, `"opt/x/": want an absolute`},
		{"containerd config version", "  runtime:\n    target: aks-clh-snp\n    containerdConfigVersion: 4\n", false, "spec.runtime.containerdConfigVersion", 2, "4: want 2 or 3"},
		{"handler name too long", "  runtime:\n    target: aks-clh-snp\n    handlerPrefix: " + strings.Repeat("x", 60) + "-\n", false, "spec.runtime.handlerPrefix", 2, "want a DNS label"},
		{"template for another hypervisor", "  runtime:\n    target: metal-qemu-snp\n    cpu: milan\n    kataConfigTemplate: ../../../../bad.toml\n", false, "spec.runtime.kataConfigTemplate", 3, "no [hypervisor.qemu] table"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(cfgPath, []byte(base+c.runtime), 0o644)
			defer os.WriteFile(cfgPath, orig, 0o644)
			cfg, err := Load(cfgPath, LoadOptions{})
			if c.atLoad != (err != nil) {
				t.Fatalf("Load: %v (want an error: %v)", err, c.atLoad)
			}
			var rec *recorder
			out := filepath.Join(t.TempDir(), "out")
			if err == nil {
				rec = newRecorder()
				_, err = Build(context.Background(), cfg, BuildOptions{Output: out, Progress: rec, Tool: testTool})
			}
			var ce *Error
			var se *StageError
			if !errors.As(err, &ce) || errors.As(err, &se) {
				t.Fatalf("%v (%T): want a config *Error", err, err)
			}
			t.Log(err)
			if ce.Path != c.field || ce.Line != line+c.line || !strings.Contains(ce.Msg, c.substr) {
				t.Errorf("%v: want %s at line %d with %q", err, c.field, line+c.line, c.substr)
			}
			if rec != nil && len(rec.st) != 0 {
				t.Errorf("stages ran before the config error: %v", rec.st)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("output published")
			}
		})
	}
}

// TestLayoutTargets: one build makes one IGVM file, and a target its
// layout cannot satisfy is a config error at load, naming the target's
// platform and its line; with the kvm layout an igvm-kvm target is built
// and measured, one digest per CPU model and vCPU count, each what
// pkg/measure's reference values give for the built file, after QEMU's
// and KVM's acceptance checks of every count; a host kernel without
// upstream SEV-SNP fails those checks, naming the rule.
func TestLayoutTargets(t *testing.T) {
	dir := t.TempDir()
	cfgPath := reproTree(t, dir, false)
	orig, _ := os.ReadFile(cfgPath)
	mshvTarget := "      - name: aks-clh-snp\n        platform: igvm-mshv\n"
	kvmTarget := "      - name: metal-qemu-snp-igvm\n        platform: igvm-kvm\n        vcpus: \"1-4\"\n        cpus: [EPYC-Milan, genoa]\n"
	if !bytes.Contains(orig, []byte(mshvTarget)) {
		t.Fatal("the repro config changed")
	}
	edit := func(t *testing.T, f func(string) string) {
		t.Helper()
		os.WriteFile(cfgPath, []byte(f(string(orig))), 0o644)
		t.Cleanup(func() { os.WriteFile(cfgPath, orig, 0o644) })
	}
	lineOf := func(s, sub string) int { return strings.Count(s[:strings.Index(s, sub)], "\n") + 1 }

	t.Run("igvm-kvm with the mshv layout", func(t *testing.T) {
		var doc string
		edit(t, func(s string) string {
			doc = strings.Replace(s, mshvTarget, kvmTarget, 1)
			return doc
		})
		_, err := Load(cfgPath, LoadOptions{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "spec.measurements.targets[0].platform" || ce.Line != lineOf(doc, "platform: igvm-kvm") ||
			!strings.Contains(ce.Msg, "igvm-kvm needs the kvm IGVM layout, and spec.igvm.layout.kind is mshv (the default)") {
			t.Fatalf("%v", err)
		}
		t.Log(err)
	})
	t.Run("igvm-mshv with the kvm layout", func(t *testing.T) {
		var doc string
		edit(t, func(s string) string {
			doc = strings.Replace(s, "  measurements:\n", "  igvm:\n    layout:\n      kind: kvm\n  measurements:\n", 1)
			return doc
		})
		_, err := Load(cfgPath, LoadOptions{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "spec.measurements.targets[0].platform" || ce.Line != lineOf(doc, "platform: igvm-mshv") ||
			!strings.Contains(ce.Msg, fmt.Sprintf("spec.igvm.layout.kind is kvm (line %d)", lineOf(doc, "kind: kvm"))) {
			t.Fatalf("%v", err)
		}
		t.Log(err)
	})
	t.Run("igvm-kvm with the kvm layout", func(t *testing.T) {
		edit(t, func(s string) string {
			s = strings.Replace(s, mshvTarget, kvmTarget, 1)
			return strings.Replace(s, "  measurements:\n", "  igvm:\n    layout:\n      kind: kvm\n  measurements:\n", 1)
		})
		out := filepath.Join(dir, "out-kvm")
		m, _, err := build(t, cfgPath, out, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m.IGVM.Layout != "kvm" || m.IGVM.IDBlockDigest != nil {
			t.Errorf("IGVM layout %q, ID block in the file %v", m.IGVM.Layout, m.IGVM.IDBlockDigest)
		}
		tg := m.Targets[0]
		if tg.Platform != PlatformIGVMKVM || tg.Profile != "kvm" || tg.HostKernel != "6.11" || len(tg.Digests) != 8 || tg.IDBlock == "" {
			t.Fatalf("kvm target %+v", tg)
		}
		want := kvmReferenceDigests(t, filepath.Join(out, FileIGVM), []string{"EPYC-Milan", "genoa"}, []int{1, 2, 3, 4})
		for _, d := range tg.Digests {
			if w := want[d.CPU][d.VCPUs]; d.Digest.String() != w {
				t.Errorf("%s %d vCPUs: %s, pkg/measure's reference values %s", d.CPU, d.VCPUs, d.Digest, w)
			}
		}
		if tg.Digests[0].Digest != tg.Digests[4].Digest || tg.Digests[1].Digest == tg.Digests[5].Digest || tg.Digests[1].Digest == tg.Digests[0].Digest {
			t.Errorf("1 vCPU must not depend on the CPU model, 2 vCPUs must: %v", tg.Digests)
		}
		if tg.Digests[4].Product != "Genoa" || tg.Digests[4].CPU != "genoa" {
			t.Errorf("digest %+v", tg.Digests[4])
		}
	})
	t.Run("host kernel without SEV-SNP", func(t *testing.T) {
		edit(t, func(s string) string {
			s = strings.Replace(s, mshvTarget, kvmTarget+"        hostKernel: \"6.8\"\n", 1)
			return strings.Replace(s, "  measurements:\n", "  igvm:\n    layout:\n      kind: kvm\n  measurements:\n", 1)
		})
		// No build could satisfy the target: a config error when the
		// file is loaded, before any stage runs.
		_, err := Load(cfgPath, LoadOptions{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "spec.measurements.targets[0].hostKernel" || ce.Line == 0 || !strings.Contains(err.Error(), "hypothetical-host") {
			t.Fatalf("%v", err)
		}
		t.Log(err)
	})
	t.Run("svme off with the kvm layout", func(t *testing.T) {
		edit(t, func(s string) string {
			s = strings.Replace(s, mshvTarget, kvmTarget, 1)
			return strings.Replace(s, "  measurements:\n", "  igvm:\n    layout:\n      kind: kvm\n      svme: false\n  measurements:\n", 1)
		})
		_, err := Load(cfgPath, LoadOptions{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "spec.igvm.layout.svme" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("payload for an igvm-kvm target", func(t *testing.T) {
		edit(t, func(s string) string {
			s = strings.Replace(s, mshvTarget, kvmTarget, 1)
			s = strings.Replace(s, "    target: metal-qemu-snp\n    cpu: EPYC-Milan\n", "    target: metal-qemu-snp-igvm\n", 1)
			return strings.Replace(s, "  measurements:\n", "  igvm:\n    layout:\n      kind: kvm\n  measurements:\n", 1)
		})
		_, err := Load(cfgPath, LoadOptions{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Path != "spec.runtime.target" || !strings.Contains(ce.Msg, "igvm-kvm target") {
			t.Fatalf("%v", err)
		}
	})
}

// kvmReferenceDigests are pkg/measure's reference values of an IGVM file
// under the kvm profile, by CPU model and vCPU count.
func kvmReferenceDigests(t *testing.T, file string, cpus []string, vcpus []int) map[string]map[int]string {
	t.Helper()
	f, size := openFile(t, file)
	ig, err := igvm.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	var models []measure.CPUModel
	for _, c := range cpus {
		m, err := measure.LookupCPU(c)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	rv, err := measure.ComputeReferenceValues(context.Background(), ig, measure.RefSpec{Profiles: []measure.Profile{measure.ProfileKVM}, CPUs: models, VCPUs: vcpus})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int]string{}
	for i, e := range rv.Entries {
		out[cpus[i]] = map[int]string{}
		for _, d := range e.ByVCPUs {
			out[cpus[i]][d.VCPUs] = d.Digest.String()
		}
	}
	return out
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
