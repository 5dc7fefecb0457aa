package payload

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	nodev1 "k8s.io/api/node/v1"
	"sigs.k8s.io/yaml"
)

func TestHandlerNameFromContent(t *testing.T) {
	ctx := context.Background()
	set := writeOutputSet(t, t.TempDir())
	opts := Options{Target: "qemu", CPU: "milan", HandlerPrefix: "contrast-cc-"}
	p1, err := Generate(ctx, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p1.Handler, "contrast-cc-metal-qemu-snp-") || len(p1.Handler) != len("contrast-cc-metal-qemu-snp-")+8 {
		t.Fatalf("handler %q", p1.Handler)
	}
	// A second build of the same files, from another directory: same name.
	set2 := writeOutputSet(t, t.TempDir())
	p2, err := Generate(ctx, set2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Handler != p2.Handler || !bytes.Equal(p1.InstallPlanJSON(), p2.InstallPlanJSON()) || !bytes.Equal(p1.KataConfig(), p2.KataConfig()) {
		t.Fatalf("two identical builds: %s and %s", p1.Handler, p2.Handler)
	}

	// Any installed file changed by one byte renames the handler; files
	// the payload does not install do not.
	for i, a := range set.Artifacts {
		changed := set
		changed.Artifacts = append([]Artifact(nil), set.Artifacts...)
		sum := []byte(a.SHA256)
		sum[0] ^= 1 // stands for a one-byte change of the file
		changed.Artifacts[i].SHA256 = string(sum)
		p, err := Generate(ctx, changed, opts)
		if err != nil {
			t.Fatal(err)
		}
		installed := a.Name == "rootfs.img" || a.Name == "vmlinuz" || a.Name == "initrd.img"
		if (p.Handler != p1.Handler) != installed {
			t.Errorf("%s changed: handler %s (was %s); installed: %v", a.Name, p.Handler, p1.Handler, installed)
		}
	}
	fw := *set.Targets[1].Firmware
	data, _ := os.ReadFile(fw.Path)
	data[100] ^= 1
	fwPath := filepath.Join(t.TempDir(), "OVMF.fd")
	writeTestFile(t, fwPath, data)
	changed := set
	changed.Targets = append([]Target(nil), set.Targets...)
	changed.Targets[1].Firmware = &Artifact{Path: fwPath}
	if p, err := Generate(ctx, changed, opts); err != nil || p.Handler == p1.Handler {
		t.Errorf("firmware changed by one byte: handler %s, %v", p.Handler, err)
	}
	// The Kata configuration is installed too: one byte of the template,
	// the command line, the ID block, the policy.
	tmpl, _ := DefaultKataTemplate(HypervisorQEMU)
	for name, mod := range map[string]func(*OutputSet, *Options){
		"template": func(_ *OutputSet, o *Options) {
			o.KataConfigTemplate = bytes.Replace(tmpl, []byte("dial_timeout = 90"), []byte("dial_timeout = 91"), 1)
		},
		"cmdline": func(s *OutputSet, _ *Options) { s.Cmdline += " " },
		"cpu":     func(_ *OutputSet, o *Options) { o.CPU = "genoa" },
		"prefix":  func(_ *OutputSet, o *Options) { o.InstallPrefix = "/opt/kata-cc/" },
		"policy": func(s *OutputSet, _ *Options) {
			s.Targets = []Target{s.Targets[0], s.Targets[1]}
			s.Targets[1].Policy = 0x30001
		},
		"platform": func(_ *OutputSet, o *Options) { o.Platform = "metal-qemu-snp-gpu" },
	} {
		s, o := set, opts
		mod(&s, &o)
		p, err := Generate(ctx, s, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Handler == p1.Handler {
			t.Errorf("%s changed: handler stays %s", name, p.Handler)
		}
	}
}

// TestHandlerRecipe runs the recipe of docs/node-payload.md with
// sha256sum on an installed tree and gets the handler's digest.
func TestHandlerRecipe(t *testing.T) {
	for _, tool := range []string{"sha256sum", "sed", "find", "sort", "xargs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	for _, target := range []string{"azure", "qemu"} {
		t.Run(target, func(t *testing.T) {
			out := t.TempDir()
			set := writeOutputSet(t, out)
			p := writePayload(t, set, Options{Target: target, CPU: "milan"})
			root := t.TempDir()
			if _, err := Install(context.Background(), out, InstallOptions{Root: root}); err != nil {
				t.Fatal(err)
			}
			script := `set -e
cp -r "$ROOT/opt/$H" audit && cd audit
sed -i "s/$H/@@runtimeName@@/g" etc/*.toml
find * -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64`
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "ROOT="+root, "H="+p.Handler, "LC_ALL=C")
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, got)
			}
			if strings.TrimSpace(string(got)) != p.HandlerDigest {
				t.Fatalf("recipe gives %s, handler digest %s", got, p.HandlerDigest)
			}
			if !strings.HasSuffix(p.Handler, "-"+p.HandlerDigest[:8]) {
				t.Fatalf("handler %s does not end in the digest's first 8 hex digits", p.Handler)
			}
		})
	}
}

// kataKeys returns the decoded hypervisor table of a Kata config.
func kataTable(t *testing.T, data []byte, hv string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	tbl := lookupTable(m, []string{"hypervisor", hv})
	if tbl == nil {
		t.Fatalf("no [hypervisor.%s]", hv)
	}
	return tbl
}

func TestKataConfig(t *testing.T) {
	set := writeOutputSet(t, t.TempDir())
	for _, tc := range []struct {
		target, hv string
		want       func(p *Payload) map[string]any
	}{
		{"azure", HypervisorCLH, func(p *Payload) map[string]any {
			return map[string]any{
				"igvm":             p.InstallPrefix + "share/podvm.igvm",
				"image":            p.InstallPrefix + "share/rootfs.img",
				"kernel_params":    "",
				"snp_guest_policy": int64(0x30000),
			}
		}},
		{"qemu", HypervisorQEMU, func(p *Payload) map[string]any {
			return map[string]any{
				"firmware":         p.InstallPrefix + "share/OVMF.fd",
				"kernel":           p.InstallPrefix + "share/vmlinuz",
				"initrd":           p.InstallPrefix + "share/initrd.img",
				"image":            p.InstallPrefix + "share/rootfs.img",
				"rootfs_type":      "erofs",
				"kernel_params":    testCmdline,
				"snp_id_block":     base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 96)),
				"snp_id_auth":      base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 4096)),
				"snp_guest_policy": int64(0x30000),
			}
		}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			p, err := Generate(context.Background(), set, Options{Target: tc.target, CPU: "milan"})
			if err != nil {
				t.Fatal(err)
			}
			if p.InstallPrefix != "/opt/"+p.Handler+"/" {
				t.Fatalf("install prefix %s", p.InstallPrefix)
			}
			tmpl, _ := DefaultKataTemplate(tc.hv)
			got, want := kataTable(t, p.KataConfig(), tc.hv), tc.want(p)
			before := kataTable(t, tmpl, tc.hv)
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
				delete(got, k)
				delete(before, k)
			}
			if !reflect.DeepEqual(got, before) {
				t.Errorf("other keys of [hypervisor.%s] changed", tc.hv)
			}
			// Byte for byte: the lines that differ are our keys' lines.
			ours := func(line string) bool {
				for k := range want {
					if strings.HasPrefix(line, k+" = ") {
						return true
					}
				}
				return false
			}
			var a, b []string
			for _, l := range lines(string(tmpl)) {
				if !ours(l) {
					a = append(a, l)
				}
			}
			for _, l := range lines(string(p.KataConfig())) {
				if !ours(l) {
					b = append(b, l)
				}
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("the template's other lines changed")
			}
			if tc.hv == HypervisorQEMU {
				// The measured command line, byte for byte.
				if got["kernel_params"] != nil || want["kernel_params"] != testCmdline {
					t.Fatal("kernel_params")
				}
				if kp := kataTable(t, p.KataConfig(), tc.hv)["kernel_params"]; kp != set.Cmdline {
					t.Errorf("kernel_params %q, measured command line %q", kp, set.Cmdline)
				}
			}
		})
	}
}

func TestKataConfigTemplateErrors(t *testing.T) {
	set := writeOutputSet(t, t.TempDir())
	for name, tmpl := range map[string]string{
		"no table":    "[hypervisor.clh]\npath = \"x\"\n",
		"dotted key":  "[hypervisor.qemu]\npath = \"x\"\n[hypervisor]\nqemu.kernel = \"y\"\n",
		"array value": "[hypervisor.qemu]\nkernel = [\"a\"]\n",
		"bad toml":    "[hypervisor.qemu]\nkernel = \n",
		"bad vcpus":   "[hypervisor.qemu]\ndefault_vcpus = \"1\"\n",
	} {
		_, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "milan", KataConfigTemplate: []byte(tmpl), KataConfigTemplateName: "tmpl.toml"})
		if err == nil || !strings.Contains(err.Error(), "tmpl.toml") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A key the template lacks is added after the table's last key, and a
	// multi-line string value is replaced whole.
	tmpl := "# top\n[hypervisor.qemu]\npath = \"/q\" # the VMM\nkernel_params = \"\"\"\na\nb\"\"\"\n\n# next\n[runtime]\nx = 1\n"
	p, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "milan", KataConfigTemplate: []byte(tmpl)})
	if err != nil {
		t.Fatal(err)
	}
	got := string(p.KataConfig())
	if !strings.HasPrefix(got, "# top\n[hypervisor.qemu]\npath = \"/q\" # the VMM\nkernel_params = \"console=ttyS0") ||
		!strings.Contains(got, "\nfirmware = \"/opt/"+p.Handler+"/share/OVMF.fd\"\n") ||
		!strings.HasSuffix(got, "snp_guest_policy = 196608\n\n# next\n[runtime]\nx = 1\n") {
		t.Fatalf("edited template:\n%s", got)
	}
}

func TestIDBlockChoice(t *testing.T) {
	set := writeOutputSet(t, t.TempDir())
	var oe *OptionError
	if _, err := Generate(context.Background(), set, Options{Target: "qemu"}); !errors.As(err, &oe) || oe.Field != "CPU" {
		t.Errorf("two CPU models, none named: %v", err)
	}
	if _, err := Generate(context.Background(), set, Options{}); !errors.As(err, &oe) || oe.Field != "Target" {
		t.Errorf("two targets, none named: %v", err)
	}
	// default_vcpus = 2 picks the 2-vCPU block.
	tmpl, _ := DefaultKataTemplate(HypervisorQEMU)
	tmpl = bytes.Replace(tmpl, []byte("default_vcpus = 1"), []byte("default_vcpus = 2"), 1)
	p, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "milan", KataConfigTemplate: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	if got := kataTable(t, p.KataConfig(), "qemu")["snp_id_block"]; got != base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 96)) {
		t.Errorf("snp_id_block for 2 vCPUs: %v", got)
	}
	if _, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "genoa", KataConfigTemplate: tmpl}); !errors.As(err, &oe) {
		t.Errorf("no genoa block for 2 vCPUs: %v", err)
	}
}

// TestRuntimeClassDecodesStrictly decodes runtimeclass.yaml into the
// Kubernetes type, refusing unknown fields.
func TestRuntimeClassDecodesStrictly(t *testing.T) {
	set := writeOutputSet(t, t.TempDir())
	over := int64(200)
	p, err := Generate(context.Background(), set, Options{
		Target: "azure", OverheadMemoryMiB: &over, OverheadCPU: "500m", VMMemoryMiB: 1024,
		NodeSelector: map[string]string{"kubernetes.azure.com/kata": "true", "node.kubernetes.io/instance-type": "DC4as_cc_v5"},
		Labels:       map[string]string{"app.kubernetes.io/part-of": "podvm"},
	})
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(p.RuntimeClass())
	if err != nil {
		t.Fatal(err)
	}
	var rc nodev1.RuntimeClass
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		t.Fatalf("%v\n%s", err, p.RuntimeClass())
	}
	if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" || rc.Name != p.Handler || rc.Handler != p.Handler {
		t.Errorf("RuntimeClass %+v", rc)
	}
	mem := rc.Overhead.PodFixed["memory"]
	cpu := rc.Overhead.PodFixed["cpu"]
	if mem.Value() != (1024+200)<<20 || cpu.MilliValue() != 500 {
		t.Errorf("overhead memory %s cpu %s", mem.String(), cpu.String())
	}
	if rc.Scheduling == nil || rc.Scheduling.NodeSelector["node.kubernetes.io/instance-type"] != "DC4as_cc_v5" || rc.Labels["app.kubernetes.io/part-of"] != "podvm" {
		t.Errorf("scheduling %+v labels %v", rc.Scheduling, rc.Labels)
	}
	// Without a node selector there is no scheduling field; the VM memory
	// defaults to the template's default_memory.
	p, err = Generate(context.Background(), set, Options{Target: "azure"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.RuntimeClass(), []byte("scheduling")) || !bytes.Contains(p.RuntimeClass(), []byte("memory: 2218Mi")) {
		t.Errorf("default RuntimeClass:\n%s", p.RuntimeClass())
	}
}

func TestInstallPlan(t *testing.T) {
	set := writeOutputSet(t, t.TempDir())
	p, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "genoa", RuntimePath: "/opt/" + Placeholder + "/bin/containerd-shim-kata-v2"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := ParsePlan(p.InstallPlanJSON(), InstallPlanFile)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range plan.Files {
		paths = append(paths, strings.TrimPrefix(f.Path, plan.InstallPrefix))
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(f.Integrity, "sha256-"))
		if sumHexRaw(raw) != f.SHA256 || f.URL != DefaultURLBase+f.Source || f.Mode != "0644" {
			t.Errorf("file %+v", f)
		}
	}
	want := []string{"etc/configuration-qemu.toml", "share/OVMF.fd", "share/initrd.img", "share/rootfs.img", "share/vmlinuz"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	if plan.Containerd.RuntimePath != "/opt/"+p.Handler+"/bin/containerd-shim-kata-v2" ||
		plan.Containerd.ConfigPath != "/opt/"+p.Handler+"/etc/configuration-qemu.toml" ||
		plan.Containerd.RuntimeType != "io.containerd.kata.v2" {
		t.Errorf("containerd %+v", plan.Containerd)
	}
	// Contrast's node installer reads files[].{url,path,integrity,executable}.
	var contrast struct {
		Files []struct {
			URL        string `json:"url"`
			Path       string `json:"path"`
			Integrity  string `json:"integrity"`
			Executable bool   `json:"executable"`
		} `json:"files"`
	}
	if err := json.Unmarshal(p.InstallPlanJSON(), &contrast); err != nil || len(contrast.Files) != 5 || !strings.HasPrefix(contrast.Files[0].Integrity, "sha256-") {
		t.Errorf("as Contrast reads it: %+v %v", contrast, err)
	}
	for name, mod := range map[string]func(*Plan){
		"escape":    func(p *Plan) { p.Files[0].Path = "/etc/shadow" },
		"dotdot":    func(p *Plan) { p.Files[0].Path = p.InstallPrefix + "../x" },
		"source":    func(p *Plan) { p.Files[0].Source = "../x" },
		"integrity": func(p *Plan) { p.Files[0].Integrity = "sha256-AAAA" },
		"mode":      func(p *Plan) { p.Files[0].Mode = "4755" },
		"handler":   func(p *Plan) { p.Handler = "Bad_Name" },
		"version":   func(p *Plan) { p.Containerd.ConfigVersion = 1 },
		// containerd would run a Kata configuration the handler name
		// does not hash.
		"config_path": func(p *Plan) { p.Containerd.ConfigPath = p.InstallPrefix + "etc/other.toml" },
	} {
		bad := *plan
		bad.Files = append([]PlanFile(nil), plan.Files...)
		mod(&bad)
		data, _ := bad.Marshal()
		var pe *PlanError
		if _, err := ParsePlan(data, "plan.json"); !errors.As(err, &pe) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func sumHexRaw(b []byte) string { return hexString(b) }
