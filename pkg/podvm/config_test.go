package podvm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

const base = `apiVersion: imagebuilder/v1alpha1
kind: PodVMImage
metadata:
  name: test
spec:
  kernel:
    deb: k.deb
  rootfs:
    sources: [oci-layout:oci]
    agent: agent
`

func parse(t testing.TB, doc string, opts LoadOptions) (*Config, error) {
	t.Helper()
	return Parse([]byte(doc), "podvm.yaml", "/work/conf", opts)
}

// TestStrict: every error names the file, the line and the field path.
func TestStrict(t *testing.T) {
	cases := []struct {
		name, doc, want string // want: "LINE: PATH: message part"
	}{
		{"unknown top field", base + "status: {}\n", `11: status: unknown field`},
		{"unknown spec field", base + "  rootFS: {}\n", `11: spec.rootFS: unknown field (did you mean "rootfs"?)`},
		{"unknown nested field", base + "    agnet: x\n", `11: spec.rootfs.agnet: unknown field (did you mean "agent"?)`},
		{"unknown field in list item", base + "  measurements:\n    targets:\n      - platform: igvm-mshv\n        vcpu: 2\n", `14: spec.measurements.targets[0].vcpu: unknown field (did you mean "vcpus"?)`},
		{"string for list", strings.Replace(base, "[oci-layout:oci]", "oci-layout:oci", 1), `9: spec.rootfs.sources: want a list, got the string "oci-layout:oci"`},
		{"int for string", base + "    seed: 42\n", `11: spec.rootfs.seed: want a string, got the integer 42`},
		{"mapping for string", strings.Replace(base, "name: test", "name: {a: b}", 1), `4: metadata.name: want a string, got a mapping`},
		{"string for bool", base + "  igvm:\n    layout:\n      svme: yes\n", `13: spec.igvm.layout.svme: want true or false, got the string "yes"`},
		{"string for int", base + "  sourceDateEpoch: soon\n", `11: spec.sourceDateEpoch: want an integer, got the string "soon"`},
		{"unknown scheme", base + "  initrd:\n    sources:\n      - oci-layout:x\n      - oci:foo\n", `14: spec.initrd.sources[1]: unknown scheme "oci"; write oci-layout:DIR for an OCI image layout directory`},
		{"unknown scheme in rootfs", strings.Replace(base, "[oci-layout:oci]", "[dir:a, oci:./b]", 1), `9: spec.rootfs.sources[1]: unknown scheme "oci"`},
		{"path without scheme", strings.Replace(base, "[oci-layout:oci]", "[./rootfs]", 1), `9: spec.rootfs.sources[0]: "./rootfs" is not a source: a host path needs its scheme`},
		{"bad digest", strings.Replace(base, "[oci-layout:oci]", "[oci-layout:oci@sha256:abc]", 1), `9: spec.rootfs.sources[0]: digest "sha256:abc" is not sha256: and 64 lowercase hex digits`},
		{"no sources", strings.Replace(base, "[oci-layout:oci]", "[]", 1), `9: spec.rootfs.sources: missing: give at least one source`},
		{"null list item", strings.Replace(base, "[oci-layout:oci]", "\n      -", 1), `10: spec.rootfs.sources[0]: empty list item`},
		{"bad compression", base + "  initrd:\n    compression: lz4\n", `12: spec.initrd.compression: "lz4": want none, gzip or zstd`},
		{"level with none", base + "  initrd:\n    compression: none\n    level: 3\n", `13: spec.initrd.level: a level with compression none`},
		{"vcpus zero", base + "  measurements:\n    targets:\n      - platform: igvm-kvm\n        vcpus: [0]\n", `14: spec.measurements.targets[0].vcpus[0]: "0": want 1 to 512 (vCPU counts)`},
		{"vcpus too many", base + "  measurements:\n    targets:\n      - platform: qemu-ovmf\n        vcpus: \"1-600\"\n", `14: spec.measurements.targets[0].vcpus: "1-600": want 1 to 512 (vCPU counts)`},
		{"vcpus twice", base + "  measurements:\n    targets:\n      - platform: igvm-kvm\n        vcpus: [1, \"1-2\"]\n", `14: spec.measurements.targets[0].vcpus[1]: vCPU count 1 given twice`},
		{"kvm needs cpus", base + "  measurements:\n    targets:\n      - platform: igvm-kvm\n        vcpus: [1, 2]\n", `13: spec.measurements.targets[0].cpus: needed for more than one vCPU`},
		{"unknown cpu", base + "  measurements:\n    targets:\n      - platform: igvm-kvm\n        cpus: [pentium]\n", `14: spec.measurements.targets[0].cpus[0]: unknown CPU model "pentium"`},
		{"qemu needs firmware", base + "  measurements:\n    targets:\n      - platform: qemu-ovmf\n        cpus: [milan]\n", `13: spec.measurements.targets[0].firmware: missing`},
		{"qemu needs cpus", base + "  measurements:\n    targets:\n      - platform: qemu-ovmf\n        firmware: OVMF.fd\n", `13: spec.measurements.targets[0].cpus: needed for QEMU`},
		{"field for another platform", base + "  measurements:\n    targets:\n      - platform: igvm-mshv\n        vcpus: 4\n", `14: spec.measurements.targets[0].vcpus: has no effect on a igvm-mshv target`},
		{"duplicate target names", base + "  measurements:\n    targets:\n      - platform: igvm-mshv\n      - platform: igvm-mshv\n", `14: spec.measurements.targets[1].name: "igvm-mshv" is also the name of spec.measurements.targets[0]`},
		{"unknown platform", base + "  measurements:\n    targets:\n      - platform: sev-es\n", `13: spec.measurements.targets[0].platform: "sev-es": want igvm-mshv, igvm-kvm, qemu-ovmf`},
		{"no targets", base + "  measurements:\n    targets: []\n", `12: spec.measurements.targets: empty`},
		{"bad host kernel", base + "  measurements:\n    targets:\n      - platform: igvm-kvm\n        hostKernel: six\n", `14: spec.measurements.targets[0].hostKernel: `},
		{"hypothetical host kernel", base + "  igvm: {layout: {kind: kvm}}\n  measurements:\n    targets:\n      - platform: igvm-kvm\n        hostKernel: \"6.8\"\n", `15: spec.measurements.targets[0].hostKernel: host kernel 6.8: upstream KVM launches SEV-SNP guests from 6.11`},
		{"host kernel 6.10", base + "  igvm: {layout: {kind: kvm}}\n  measurements:\n    targets:\n      - platform: igvm-kvm\n        hostKernel: \"6.10.3\"\n", `15: spec.measurements.targets[0].hostKernel: host kernel 6.10: upstream KVM launches SEV-SNP guests from 6.11`},
		{"kvm features without SNP", base + "  igvm: {layout: {kind: kvm}}\n  measurements:\n    targets:\n      - platform: igvm-kvm\n        guestFeatures: 0x4\n", `15: spec.measurements.targets[0].guestFeatures: sev_features 0x4 lacks SNP_ACTIVE (qemu:check_sev_features)`},
		{"kvm restricted injection", base + "  igvm: {layout: {kind: kvm}}\n  measurements:\n    targets:\n      - platform: igvm-kvm\n        guestFeatures: 0x9\n", `15: spec.measurements.targets[0].guestFeatures: sev_features 0x9 has bits KVM does not support (0x8, restricted injection)`},
		{"bad vmm", base + "  measurements:\n    targets:\n      - {platform: qemu-ovmf, firmware: f, cpus: [milan], vmmType: xen}\n", `13: spec.measurements.targets[0].vmmType: `},
		{"root param", base + "  cmdline:\n    parameters: [console=ttyS0, roothash=abc]\n", `12: spec.cmdline.parameters[1]: "roothash=abc": the pipeline appends the root fragment itself`},
		{"ibroot param", base + "  cmdline:\n    parameters: [ibroot.hash=abc]\n", `12: spec.cmdline.parameters[0]: "ibroot.hash=abc": the pipeline appends`},
		{"blank in param", base + "  cmdline:\n    parameters: [\"a b\"]\n", `12: spec.cmdline.parameters[0]: "a b": one parameter without blanks or quotes`},
		{"bad root kind", base + "  cmdline:\n    root: verity\n", `12: spec.cmdline.root: "verity": want ibroot, systemd or dm-mod.create`},
		{"deb and bzImage", strings.Replace(base, "deb: k.deb", "deb: k.deb\n    bzImage: b", 1), `8: spec.kernel.bzImage: give deb or bzImage, not both`},
		{"no kernel", strings.Replace(base, "    deb: k.deb\n", "    modules: []\n", 1), `7: spec.kernel: give the kernel as deb`},
		{"modules without dir", strings.Replace(base, "deb: k.deb", "bzImage: bz", 1), `7: spec.kernel.modules: loading modules with a bzImage needs spec.kernel.modulesDir`},
		{"modulesDir with deb", strings.Replace(base, "deb: k.deb", "deb: k.deb\n    modulesDir: m", 1), `8: spec.kernel.modulesDir: the modules come from the package`},
		{"module twice", strings.Replace(base, "deb: k.deb", "deb: k.deb\n    modules: [dm-verity, dm_verity]", 1), `8: spec.kernel.modules[1]: "dm_verity" is spec.kernel.modules[0] again`},
		{"bad mode", base + "    files:\n      - {src: a, dst: /a, mode: \"0999\"}\n", `12: spec.rootfs.files[0].mode: mode "0999": want octal`},
		{"relative dst", base + "    files:\n      - {src: a, dst: etc/a}\n", `12: spec.rootfs.files[0].dst: "etc/a": want an absolute path in the image`},
		{"dst twice", base + "    files:\n      - {src: a, dst: /a}\n      - {src: b, dst: /a/}\n", `13: spec.rootfs.files[1].dst: /a/ is also spec.rootfs.files[0].dst`},
		{"dotdot dst", base + "    dirs:\n      - {src: a, dst: /x/../..}\n", `12: spec.rootfs.dirs[0].dst: "/x/../..": no ".." in a path`},
		{"no agent", strings.Replace(base, "    agent: agent\n", "", 1), `9: spec.rootfs.agent: missing`},
		{"bad platform", base + "    platform: amd64\n", `11: spec.rootfs.platform: "amd64": want OS/ARCH[/VARIANT]`},
		{"policy bit 17", base + "  igvm:\n    policy: 0x10000\n", `12: spec.igvm.policy: guest policy 0x10000: bit 17`},
		{"policy not a number", base + "  igvm:\n    policy: strict\n", `12: spec.igvm.policy: "strict" is not a number`},
		{"acpi both", base + "  igvm:\n    acpi: {tables: t, pages: p}\n", `12: spec.igvm.acpi.pages: give tables or pages, not both`},
		{"family id short", base + "  idBlock:\n    keyless: true\n    familyID: \"0102\"\n", `13: spec.idBlock.familyID: "0102": want 16 bytes as 32 hex digits`},
		{"key and keyless", base + "  idBlock:\n    key: k.pem\n    keyless: true\n", `13: spec.idBlock.keyless: give key or keyless: true, not both`},
		{"no key", base + "  idBlock:\n    svn: 1\n", `12: spec.idBlock: give key`},
		{"author without key", base + "  idBlock:\n    keyless: true\n    authorKey: a.pem\n", `13: spec.idBlock.authorKey: an author key signs the ID key: it needs key`},
		{"svn negative", base + "  idBlock:\n    keyless: true\n    svn: -1\n", `13: spec.idBlock.svn: -1 is out of range (0 to 4294967295)`},
		{"epoch too big", base + "  sourceDateEpoch: 4294967296\n", `11: spec.sourceDateEpoch: 4294967296: want whole seconds since 1970`},
		{"key twice", base + "    agent: again\n", `11: spec.rootfs.agent: given twice`},
		{"anchor", base + "  cmdline: &c {root: ibroot}\n", `11: spec.cmdline: YAML anchors and aliases are not supported`},
		{"second document", base + "---\nkind: PodVMImage\n", `11: a second YAML document`},
		{"syntax", base + "  cmdline: [\n", "~YAML syntax: did not find expected node content"},
		{"tabs", base + "\tbad: 1\n", "~YAML syntax: found a tab character"},
		{"wrong apiVersion", strings.Replace(base, "v1alpha1", "v1", 1), `1: apiVersion: "imagebuilder/v1" is not supported (want imagebuilder/v1alpha1)`},
		{"wrong kind", strings.Replace(base, "kind: PodVMImage", "kind: Pod", 1), `2: kind: "Pod": want PodVMImage`},
		{"bad name", strings.Replace(base, "name: test", "name: My_Image", 1), `4: metadata.name: "My_Image": want lower case`},
		{"no metadata", strings.Replace(base, "metadata:\n  name: test\n", "", 1), `1: metadata.name: missing`},
		{"other variable", strings.Replace(base, "deb: k.deb", "deb: ${HOME}/k.deb", 1), `7: spec.kernel.deb: "${HOME}/k.deb": only ${IMAGEBUILDER_CACHE}, at the start of a path, is expanded`},
		{"tilde", strings.Replace(base, "deb: k.deb", "deb: ~/k.deb", 1), `7: spec.kernel.deb: "~/k.deb": ~ is not expanded`},
		{"cache without dir", strings.Replace(base, "deb: k.deb", "deb: ${IMAGEBUILDER_CACHE}/k.deb", 1), `7: spec.kernel.deb: "${IMAGEBUILDER_CACHE}/k.deb": ${IMAGEBUILDER_CACHE} is used but no cache directory is set`},
		{"cache glued", strings.Replace(base, "deb: k.deb", "deb: ${IMAGEBUILDER_CACHE}k.deb", 1), `7: spec.kernel.deb: "${IMAGEBUILDER_CACHE}k.deb": ${IMAGEBUILDER_CACHE} must be followed by /`},
		{"source cache without dir", strings.Replace(base, "[oci-layout:oci]", "\n      - oci-layout:${IMAGEBUILDER_CACHE}/oci", 1), `10: spec.rootfs.sources[0]: "${IMAGEBUILDER_CACHE}/oci": ${IMAGEBUILDER_CACHE} is used`},
		{"rootfs tree elsewhere than /", strings.Replace(base, "agent: agent", "agent: agent\n    dirs: [{src: t, dst: /opt}]", 1), `11: spec.rootfs.dirs[0].dst: /opt: root file system trees are copied onto / only`},
		{"not a mapping", "- a\n- b\n", `1: want a PodVMImage mapping`},
		{"empty", "", "~empty file"},
	}
	lineRE := regexp.MustCompile(`^podvm\.yaml:(\d+: )?`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, c.doc, LoadOptions{})
			if err == nil {
				t.Fatalf("accepted:\n%s", c.doc)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v (%T) is not a *podvm.Error", err, err)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") || !lineRE.MatchString(msg) {
				t.Fatalf("error %q: want one line starting with podvm.yaml:LINE:", msg)
			}
			got := strings.TrimPrefix(msg, "podvm.yaml:")
			if contains, ok := strings.CutPrefix(c.want, "~"); ok {
				if !strings.Contains(got, contains) {
					t.Errorf("error:\n  %s\nwant it to say\n  %s", msg, contains)
				}
				return
			}
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("error:\n  %s\nwant it to start with\n  podvm.yaml:%s", msg, c.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := parse(t, base, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := CanonicalJSON(c.Defaulted())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"imagebuilder/v1alpha1","kind":"PodVMImage","metadata":{"name":"test"},"spec":{"sourceDateEpoch":0,` +
		`"kernel":{"deb":"k.deb","modules":["virtio_pci","virtio_blk","dm-verity","erofs"]},` +
		`"initrd":{"compression":"zstd","level":0,"dirs":[],"files":[],"specs":[],"sources":[]},` +
		`"rootfs":{"sources":["oci-layout:oci"],"platform":"linux/amd64","agent":"agent","dirs":[],"files":[],"seed":"test"},` +
		`"cmdline":{"parameters":["console=ttyS0","panic=-1"],"root":"ibroot"},` +
		`"igvm":{"policy":"0x30000","acpi":{},"layout":{"kind":"mshv","svme":true,"encryptedPage":true,"pvalidateOpt":true}},` +
		`"measurements":{"targets":[{"name":"igvm-mshv","platform":"igvm-mshv"}]}}}`
	if string(b) != want {
		t.Errorf("defaulted:\n%s\nwant:\n%s", b, want)
	}
	// Defaulted leaves the config as written alone.
	if c.Spec.Kernel.Modules != nil || c.Spec.IGVM.Policy != nil || c.Spec.Rootfs.Seed != "" {
		t.Errorf("Defaulted changed its receiver: %+v", c.Spec)
	}
	// Per-platform defaults.
	c, err = parse(t, base+"  igvm: {policy: 0x70000, layout: {kind: kvm}}\n  measurements:\n    targets:\n      - {platform: igvm-kvm}\n      - {platform: qemu-ovmf, firmware: f.fd, cpus: [milan]}\n", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := c.Defaulted().Spec.Measurements.Targets
	if d[0].Name != "igvm-kvm" || len(d[0].VCPUs) != 1 || d[0].HostKernel != "6.11" || d[0].GuestFeatures != nil {
		t.Errorf("kvm defaults %+v", d[0])
	}
	if d[1].VMMType != "QEMU" || *d[1].GuestFeatures != 1 || *d[1].Policy != 0x70000 || d[1].VCPUs[0] != 1 {
		t.Errorf("qemu defaults %+v", d[1])
	}
	// The default target is the one the layout is for; spec.runtime's
	// defaults are pkg/payload's, and its target the only one.
	_, err = parse(t, base+"  igvm: {layout: {kind: kvm}}\n  runtime: {}\n", LoadOptions{})
	var ce *Error
	if !errors.As(err, &ce) || ce.Path != "spec.runtime.target" || !strings.Contains(ce.Msg, "igvm-kvm target") {
		t.Errorf("payload of the default kvm target: %v", err)
	}
	c, err = parse(t, base+"  runtime: {}\n", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = CanonicalJSON(c.Defaulted().Spec.Runtime)
	if want := `{"target":"igvm-mshv","handlerPrefix":"imagebuilder-cc-","platform":"aks-clh-snp","installPrefix":"/opt/@@runtimeName@@/",` +
		`"shim":"kata","podAnnotations":["io.katacontainers.*"],"privilegedWithoutHostDevices":true,"containerdConfigVersion":2,` +
		`"overheadMemoryMiB":170,"overheadCPU":"250m","urlBase":"file:///payload/"}`; string(b) != want {
		t.Errorf("runtime defaults:\n%s\nwant:\n%s", b, want)
	}
	roundTrip(t, c, LoadOptions{})
	c, err = parse(t, base+"  igvm: {layout: {kind: kvm}}\n", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Defaulted().Spec.Measurements.Targets; len(d) != 1 || d[0].Platform != PlatformIGVMKVM {
		t.Errorf("default target with the kvm layout: %+v", d)
	}
}

func TestPaths(t *testing.T) {
	doc := strings.Replace(base, "deb: k.deb", "deb: ${IMAGEBUILDER_CACHE}/debian-kernel/k.deb", 1)
	doc = strings.Replace(doc, "[oci-layout:oci]", "[oci-layout:../images/oci:v1, dir:/abs/tree, tar:t.tar, docker://example.org/r:1]", 1)
	doc += "  initrd:\n    files: [{src: ./f, dst: /f}]\n  igvm:\n    acpi:\n      tables: ${IMAGEBUILDER_CACHE}\n"
	c, err := parse(t, doc, LoadOptions{CacheDir: "/home/u/.cache/imagebuilder"})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Spec
	for _, p := range []struct{ got, want string }{
		{s.Kernel.Deb.Written, "${IMAGEBUILDER_CACHE}/debian-kernel/k.deb"},
		{s.Kernel.Deb.Resolved, "/home/u/.cache/imagebuilder/debian-kernel/k.deb"},
		{s.Rootfs.Agent.Resolved, "/work/conf/agent"},
		{s.Rootfs.Sources[0].Written, "oci-layout:../images/oci:v1"},
		{s.Rootfs.Sources[0].Resolved, "oci-layout:/work/images/oci:v1"},
		{s.Rootfs.Sources[1].Resolved, "dir:/abs/tree"},
		{s.Rootfs.Sources[2].Resolved, "tar:/work/conf/t.tar"},
		{s.Rootfs.Sources[3].Resolved, "example.org/r:1"},
		{s.Rootfs.Sources[3].Kind, "registry"},
		{s.Initrd.Files[0].Src.Resolved, "/work/conf/f"},
		{s.IGVM.ACPI.Tables.Resolved, "/home/u/.cache/imagebuilder"},
	} {
		if p.got != p.want {
			t.Errorf("got %q, want %q", p.got, p.want)
		}
	}
	// The canonical form keeps the paths as written.
	b, _ := CanonicalJSON(c.Defaulted())
	if strings.Contains(string(b), "/home/u") || strings.Contains(string(b), "/work/conf") {
		t.Errorf("resolved paths in the canonical JSON: %s", b)
	}
	// A relative cache directory ($IMAGEBUILDER_CACHE=cache, --cache
	// cache) is the working directory's, as the stage cache under it is:
	// not the config file's.
	c, err = parse(t, doc, LoadOptions{CacheDir: "rel/cache"})
	if err != nil {
		t.Fatal(err)
	}
	if wd, _ := os.Getwd(); c.Spec.Kernel.Deb.Resolved != filepath.Join(wd, "rel/cache/debian-kernel/k.deb") {
		t.Errorf("relative cache directory: resolved %s, want it under %s", c.Spec.Kernel.Deb.Resolved, wd)
	}
	// Load takes paths from the file's directory, not the working one.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(base), 0o644)
	c, err = Load(filepath.Join(dir, "p.yaml"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Rootfs.Agent.Resolved != filepath.Join(dir, "agent") || c.Source.Dir != dir {
		t.Errorf("agent resolved to %s, config dir %s", c.Spec.Rootfs.Agent.Resolved, c.Source.Dir)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	env := int64(1234)
	for _, c := range []struct {
		doc  string
		opt  *int64
		want int64
		from string
	}{
		{base, nil, 0, ""},
		{base + "  sourceDateEpoch: 99\n", nil, 99, "file"},
		{base + "  sourceDateEpoch: 99\n", &env, 1234, "environment"},
		{base, &env, 1234, "environment"},
	} {
		cfg, err := parse(t, c.doc, LoadOptions{SourceDateEpoch: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		if got := *cfg.Defaulted().Spec.SourceDateEpoch; got != c.want || cfg.Source.SourceDateEpochFrom != c.from {
			t.Errorf("got %d from %q, want %d from %q", got, cfg.Source.SourceDateEpochFrom, c.want, c.from)
		}
	}
	// A bad value from the environment is refused too.
	bad := int64(-1)
	if _, err := parse(t, base, LoadOptions{SourceDateEpoch: &bad}); err == nil {
		t.Error("SourceDateEpoch -1 accepted")
	}
}

// roundTrip checks that the canonical JSON of the defaulted config, read
// back as a config, gives the same canonical JSON.
func roundTrip(t testing.TB, c *Config, opts LoadOptions) {
	t.Helper()
	b, err := CanonicalJSON(c.Defaulted())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b, "canonical.json", c.Source.Dir, opts)
	if err != nil {
		t.Fatalf("canonical JSON does not load back: %v\n%s", err, b)
	}
	b2, err := CanonicalJSON(c2.Defaulted())
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the canonical JSON:\n%s\n%s", b, b2)
	}
}

// yamlBlocks returns the ```yaml blocks of a Markdown file.
func yamlBlocks(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	parts := strings.Split(string(b), "```yaml\n")
	for _, p := range parts[1:] {
		end := strings.Index(p, "```")
		if end < 0 {
			t.Fatalf("%s: unclosed yaml block", file)
		}
		out = append(out, p[:end])
	}
	return out
}

// TestExamples loads examples/podvm.yaml and every YAML example of
// docs/config.md, and round-trips each through its canonical JSON.
func TestExamples(t *testing.T) {
	opts := LoadOptions{CacheDir: "/cache"}
	c, err := Load("../../examples/podvm.yaml", opts)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, opts)
	blocks := yamlBlocks(t, "../../docs/config.md")
	if len(blocks) < 4 {
		t.Fatalf("docs/config.md has %d yaml examples", len(blocks))
	}
	for i, b := range blocks {
		c, err := Parse([]byte(b), fmt.Sprintf("docs/config.md example %d", i+1), "/docs", opts)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		roundTrip(t, c, opts)
	}
}

func TestRoundTripFull(t *testing.T) {
	blocks := yamlBlocks(t, "../../docs/config.md")
	full := blocks[1] // every initrd and rootfs field
	c, err := parse(t, full, LoadOptions{CacheDir: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, LoadOptions{CacheDir: "/c"})
	b, _ := CanonicalJSON(c.Defaulted())
	for _, want := range []string{`"mode":"0644"`, `"level":9`, `"labels":{"team":"platform"}`, `"root":"systemd"`, `"sourceDateEpoch":1700000000`, `"tables":"acpi-clh"`, `"dst":"/"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("canonical JSON lacks %s:\n%s", want, b)
		}
	}
}

// TestExampleFiles checks that the demo config's inputs are where the
// fixture scripts put them (the stand-in agent is built by make build).
func TestExampleFiles(t *testing.T) {
	fixtures.DebianKernelDeb(t)
	fixtures.DebianSystemd(t)
	c, err := Load("../../examples/podvm.yaml", LoadOptions{CacheDir: fixtures.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckFiles()
	var ce *Error
	if err != nil && !(errors.As(err, &ce) && ce.Path == "spec.rootfs.agent") {
		t.Fatal(err)
	}
	if err != nil {
		t.Logf("%v (make build builds it)", err)
	}
	// A missing input is one error at its line.
	c.Spec.Kernel.Deb.Resolved += ".missing"
	err = c.CheckFiles()
	if err == nil || !strings.Contains(err.Error(), "examples/podvm.yaml:20: spec.kernel.deb: ${IMAGEBUILDER_CACHE}/debian-kernel/linux-image-amd64.deb: no such file") {
		t.Errorf("missing kernel package: %v", err)
	}
}
