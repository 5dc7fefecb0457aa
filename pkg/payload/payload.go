package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Target platforms, as pkg/podvm names them.
const (
	PlatformIGVMMSHV = "igvm-mshv"
	PlatformIGVMKVM  = "igvm-kvm"
	PlatformQEMUOVMF = "qemu-ovmf"
)

// Hypervisors of the Kata configuration.
const (
	HypervisorCLH  = "clh"  // cloud-hypervisor booting the IGVM file
	HypervisorQEMU = "qemu" // QEMU with OVMF and kernel hashes
)

// Defaults of Options.
const (
	DefaultHandlerPrefix = "imagebuilder-cc-"
	DefaultInstallPrefix = "/opt/" + Placeholder + "/"
	DefaultShim          = "kata"
	DefaultURLBase       = "file:///payload/"
	// DefaultOverheadMemoryMiB is what a pod VM costs beyond its guest
	// memory (the VMM, the shim, virtiofsd): Contrast's figure.
	DefaultOverheadMemoryMiB = 170
	// DefaultOverheadCPU is kata-deploy's CPU overhead of a Kata pod.
	DefaultOverheadCPU = "250m"
)

// DefaultPodAnnotations lets pods pass Kata's annotations to the shim.
var DefaultPodAnnotations = []string{"io.katacontainers.*"}

// Output file names in the output directory.
const (
	RuntimeClassFile     = "runtimeclass.yaml"
	ContainerdDropInFile = "containerd-runtime.toml"
	InstallPlanFile      = "install-plan.json"
)

// KataConfigFile is the name of the Kata configuration of a target, in the
// output directory and under the install prefix's etc/.
func KataConfigFile(target string) string { return "configuration-" + target + ".toml" }

// FirmwareFile is the name under which the output directory carries a QEMU
// target's firmware.
func FirmwareFile(target string) string { return "ovmf-" + target + ".fd" }

// OutputSet is what a build produced: the artifacts in one directory, the
// final command line and the targets.
type OutputSet struct {
	// Dir is the output directory; artifacts are read from there.
	Dir string
	// Artifacts are the files of the output directory by name
	// (rootfs.img, initrd.img, vmlinuz, podvm.igvm, ...).
	Artifacts []Artifact
	// Cmdline is the final kernel command line, as measured.
	Cmdline string
	Targets []Target
}

// Artifact is one file.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Path is where to read the file (default OutputSet.Dir/Name).
	Path string `json:"-"`
}

// Target is one launch target of the build.
type Target struct {
	Name     string
	Platform string // PlatformIGVMMSHV, PlatformIGVMKVM or PlatformQEMUOVMF
	// Policy is the SEV-SNP guest policy the VM is launched with.
	Policy uint64
	// Firmware is the OVMF the QEMU digest was computed over (qemu-ovmf);
	// Path names the file, SHA256 may be empty (then it is computed).
	Firmware *Artifact
	// IDBlocks are the signed ID blocks, per CPU model and vCPU count.
	IDBlocks []IDBlock
}

// IDBlock is one ID block with its ID authentication structure.
type IDBlock struct {
	CPU   string // the CPU model as the target names it (milan, genoa, ...)
	VCPUs int
	Block []byte // 96 bytes
	Auth  []byte // 4096 bytes
}

// Options are the runtime settings (spec.runtime of a PodVMImage).
type Options struct {
	// Target names the target to run (default: the only one).
	Target string
	// CPU picks the ID block of a QEMU target that has ID blocks for more
	// than one CPU model (default: the only one).
	CPU string
	// HandlerPrefix starts the handler name (DefaultHandlerPrefix;
	// "contrast-cc-" for Contrast).
	HandlerPrefix string
	// Platform is the handler name's platform part (default by target:
	// igvm-mshv aks-clh-snp, igvm-kvm metal-clh-snp, qemu-ovmf
	// metal-qemu-snp).
	Platform string
	// InstallPrefix is the node directory the files go to, ending in "/";
	// Placeholder in it stands for the handler (DefaultInstallPrefix).
	InstallPrefix string
	// Shim names the containerd shim: runtime_type io.containerd.<shim>.v2
	// (DefaultShim).
	Shim string
	// RuntimePath is the shim binary (runtime_path); "" lets containerd
	// find containerd-shim-<shim>-v2 on its PATH. Placeholder is expanded.
	RuntimePath string
	// PodAnnotations (default DefaultPodAnnotations); an empty non-nil
	// slice passes none.
	PodAnnotations []string
	// PrivilegedWithoutHostDevices (default true): privileged pods get no
	// host devices, which a VM cannot use anyway.
	PrivilegedWithoutHostDevices *bool
	// ContainerdConfigVersion is 2 (containerd 1.x and 2.x,
	// io.containerd.grpc.v1.cri) or 3 (containerd 2.x,
	// io.containerd.cri.v1.runtime); default 2.
	ContainerdConfigVersion int
	// VMMemoryMiB is the guest memory (default: the template's
	// default_memory).
	VMMemoryMiB int64
	// OverheadMemoryMiB is added to VMMemoryMiB for overhead.podFixed
	// (default DefaultOverheadMemoryMiB).
	OverheadMemoryMiB *int64
	// OverheadCPU is overhead.podFixed's cpu (default DefaultOverheadCPU).
	OverheadCPU string
	// NodeSelector goes to the RuntimeClass's scheduling.nodeSelector.
	NodeSelector map[string]string
	// Labels go to the RuntimeClass's metadata.labels.
	Labels map[string]string
	// KataConfigTemplate is the Kata configuration to start from (default
	// DefaultKataTemplate of the target's hypervisor);
	// KataConfigTemplateName names it in errors.
	KataConfigTemplate     []byte
	KataConfigTemplateName string
	// URLBase is where a node-installer image carries the output set: the
	// install plan's url of a file is URLBase + its name (DefaultURLBase).
	URLBase string
}

// Payload is the node payload of one target.
type Payload struct {
	Handler string `json:"handler"`
	// HandlerDigest is the full sha256 the name's 8 hex digits come from.
	HandlerDigest string `json:"handler_digest"`
	// HashedFiles are the lines the digest covers.
	HashedFiles   []HashedFile      `json:"hashed_files"`
	Platform      string            `json:"platform"`
	Target        string            `json:"target"`
	Hypervisor    string            `json:"hypervisor"`
	InstallPrefix string            `json:"install_prefix"`
	Plan          Plan              `json:"plan"`
	Runtime       ContainerdRuntime `json:"containerd"`
	// VMMemoryMiB and the RuntimeClass overhead it gives.
	VMMemoryMiB       int64  `json:"vm_memory_mib"`
	OverheadMemoryMiB int64  `json:"overhead_memory_mib"`
	OverheadCPU       string `json:"overhead_cpu"`

	kataConfig   []byte
	runtimeClass []byte
	dropIn       []byte
	planJSON     []byte
	firmware     *Artifact // copied into the output directory
}

// Output is one file Payload puts into the output directory: Data, or the
// file at Src.
type Output struct {
	Name string
	Data []byte
	Src  string
}

// Outputs lists the payload's files for the output directory, by name.
func (p *Payload) Outputs() []Output {
	out := []Output{
		{Name: RuntimeClassFile, Data: p.runtimeClass},
		{Name: ContainerdDropInFile, Data: p.dropIn},
		{Name: KataConfigFile(p.Target), Data: p.kataConfig},
		{Name: InstallPlanFile, Data: p.planJSON},
	}
	if p.firmware != nil {
		out = append(out, Output{Name: p.firmware.Name, Src: p.firmware.Path})
	}
	slices.SortFunc(out, func(a, b Output) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// KataConfig is the target's Kata configuration with installed paths.
func (p *Payload) KataConfig() []byte { return bytes.Clone(p.kataConfig) }

// RuntimeClass is runtimeclass.yaml.
func (p *Payload) RuntimeClass() []byte { return bytes.Clone(p.runtimeClass) }

// ContainerdDropIn is containerd-runtime.toml.
func (p *Payload) ContainerdDropIn() []byte { return bytes.Clone(p.dropIn) }

// InstallPlanJSON is install-plan.json.
func (p *Payload) InstallPlanJSON() []byte { return bytes.Clone(p.planJSON) }

//go:embed templates/*.toml
var templates embed.FS

// DefaultKataTemplate is the Kata configuration template shipped for a
// hypervisor (HypervisorCLH or HypervisorQEMU).
func DefaultKataTemplate(hypervisor string) ([]byte, error) {
	switch hypervisor {
	case HypervisorCLH:
		return templates.ReadFile("templates/configuration-clh-snp.toml")
	case HypervisorQEMU:
		return templates.ReadFile("templates/configuration-qemu-snp.toml")
	}
	return nil, fmt.Errorf("no Kata template for hypervisor %q", hypervisor)
}

// HypervisorOf is the Kata hypervisor that runs a target platform.
func HypervisorOf(platform string) (string, error) {
	switch platform {
	case PlatformIGVMMSHV, PlatformIGVMKVM:
		return HypervisorCLH, nil
	case PlatformQEMUOVMF:
		return HypervisorQEMU, nil
	}
	return "", fmt.Errorf("platform %q: Kata runs igvm-mshv, igvm-kvm (cloud-hypervisor) or qemu-ovmf (QEMU)", platform)
}

// DefaultPlatform is the handler platform part for a target platform, as
// Contrast names its platforms.
func DefaultPlatform(platform string) string {
	switch platform {
	case PlatformIGVMMSHV:
		return "aks-clh-snp"
	case PlatformIGVMKVM:
		return "metal-clh-snp"
	case PlatformQEMUOVMF:
		return "metal-qemu-snp"
	}
	return ""
}

// OptionError is a bad Options field.
type OptionError struct {
	Field string
	Err   error
}

func (e *OptionError) Error() string { return fmt.Sprintf("payload: %s: %v", e.Field, e.Err) }
func (e *OptionError) Unwrap() error { return e.Err }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Err: fmt.Errorf(format, args...)}
}

// defaulted fills the defaults in.
func (o Options) defaulted() Options {
	if o.HandlerPrefix == "" {
		o.HandlerPrefix = DefaultHandlerPrefix
	}
	if o.InstallPrefix == "" {
		o.InstallPrefix = DefaultInstallPrefix
	}
	if o.Shim == "" {
		o.Shim = DefaultShim
	}
	if o.PodAnnotations == nil {
		o.PodAnnotations = DefaultPodAnnotations
	}
	if o.PrivilegedWithoutHostDevices == nil {
		t := true
		o.PrivilegedWithoutHostDevices = &t
	}
	if o.ContainerdConfigVersion == 0 {
		o.ContainerdConfigVersion = 2
	}
	if o.OverheadMemoryMiB == nil {
		v := int64(DefaultOverheadMemoryMiB)
		o.OverheadMemoryMiB = &v
	}
	if o.OverheadCPU == "" {
		o.OverheadCPU = DefaultOverheadCPU
	}
	if o.URLBase == "" {
		o.URLBase = DefaultURLBase
	}
	if o.KataConfigTemplateName == "" {
		o.KataConfigTemplateName = "kata configuration template"
	}
	return o
}

var (
	shimName    = dnsLabel
	cpuQuantity = regexp.MustCompile(`^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$`)
)

func (o Options) validate() error {
	p := o.InstallPrefix
	if !path.IsAbs(p) || !strings.HasSuffix(p, "/") || path.Clean(p)+"/" != p || p == "/" {
		return optErr("InstallPrefix", "%q: want an absolute, clean directory path ending in /", p)
	}
	if strings.Count(p, Placeholder) > 1 {
		return optErr("InstallPrefix", "%q: %s may appear once", p, Placeholder)
	}
	if !shimName.MatchString(o.Shim) {
		return optErr("Shim", "%q: want lower case letters, digits and '-'", o.Shim)
	}
	if o.RuntimePath != "" && !path.IsAbs(o.RuntimePath) {
		return optErr("RuntimePath", "%q: want an absolute path", o.RuntimePath)
	}
	if o.ContainerdConfigVersion != 2 && o.ContainerdConfigVersion != 3 {
		return optErr("ContainerdConfigVersion", "%d: want 2 or 3", o.ContainerdConfigVersion)
	}
	if o.VMMemoryMiB < 0 {
		return optErr("VMMemoryMiB", "%d: negative", o.VMMemoryMiB)
	}
	if *o.OverheadMemoryMiB < 0 {
		return optErr("OverheadMemoryMiB", "%d: negative", *o.OverheadMemoryMiB)
	}
	if !cpuQuantity.MatchString(o.OverheadCPU) {
		return optErr("OverheadCPU", "%q: want a CPU quantity such as 250m or 1", o.OverheadCPU)
	}
	for _, a := range o.PodAnnotations {
		if a == "" || strings.ContainsAny(a, "\n\"") {
			return optErr("PodAnnotations", "%q: not an annotation pattern", a)
		}
	}
	return nil
}

// Generate makes the payload of one target of set.
func Generate(ctx context.Context, set OutputSet, opts Options) (*Payload, error) {
	opts = opts.defaulted()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	tgt, err := pickTarget(set.Targets, opts.Target)
	if err != nil {
		return nil, err
	}
	hv, err := HypervisorOf(tgt.Platform)
	if err != nil {
		return nil, optErr("Target", "%s: %v", tgt.Name, err)
	}
	if !dnsLabel.MatchString(tgt.Name) {
		return nil, optErr("Target", "target name %q: want lower case letters, digits and '-' (it names configuration-<target>.toml)", tgt.Name)
	}
	platform := opts.Platform
	if platform == "" {
		platform = DefaultPlatform(tgt.Platform)
	}
	tmpl := opts.KataConfigTemplate
	if tmpl == nil {
		if tmpl, err = DefaultKataTemplate(hv); err != nil {
			return nil, err
		}
	}
	table := []string{"hypervisor", hv}
	vcpus, memory, err := templateSizes(tmpl, table)
	if err != nil {
		return nil, fmt.Errorf("payload: %s: %w", opts.KataConfigTemplateName, err)
	}
	if opts.VMMemoryMiB > 0 {
		memory = opts.VMMemoryMiB
	}

	// The files under the install prefix, by relative path.
	type file struct {
		rel    string
		src    Artifact
		kata   bool
		sha256 string // template form
	}
	byName := map[string]Artifact{}
	for _, a := range set.Artifacts {
		byName[a.Name] = a
	}
	artifact := func(name string) (Artifact, error) {
		a, ok := byName[name]
		if !ok {
			return a, fmt.Errorf("payload: output set has no %s (target %s needs it)", name, tgt.Name)
		}
		if err := checkSHA256(a.SHA256); err != nil {
			return a, fmt.Errorf("payload: %s: %w", name, err)
		}
		if a.Path == "" {
			a.Path = filepath.Join(set.Dir, name)
		}
		return a, nil
	}
	var files []file
	var firmware *Artifact
	var needs []struct{ rel, name string }
	switch hv {
	case HypervisorCLH:
		needs = append(needs, struct{ rel, name string }{"share/podvm.igvm", "podvm.igvm"})
	case HypervisorQEMU:
		needs = append(needs, struct{ rel, name string }{"share/vmlinuz", "vmlinuz"}, struct{ rel, name string }{"share/initrd.img", "initrd.img"})
	}
	needs = append(needs, struct{ rel, name string }{"share/rootfs.img", "rootfs.img"})
	for _, n := range needs {
		a, err := artifact(n.name)
		if err != nil {
			return nil, err
		}
		files = append(files, file{rel: n.rel, src: a, sha256: a.SHA256})
	}
	if hv == HypervisorQEMU {
		if tgt.Firmware == nil {
			return nil, fmt.Errorf("payload: target %s: no firmware", tgt.Name)
		}
		fw := *tgt.Firmware
		fw.Name = FirmwareFile(tgt.Name)
		if fw.Path == "" {
			return nil, fmt.Errorf("payload: target %s: firmware has no path", tgt.Name)
		}
		if fw.SHA256 == "" || fw.Size == 0 {
			if fw.Size, fw.SHA256, err = hashFile(ctx, fw.Path); err != nil {
				return nil, fmt.Errorf("payload: target %s: firmware: %w", tgt.Name, err)
			}
		} else if err := checkSHA256(fw.SHA256); err != nil {
			return nil, fmt.Errorf("payload: target %s: firmware: %w", tgt.Name, err)
		}
		firmware = &fw
		files = append(files, file{rel: "share/OVMF.fd", src: fw, sha256: fw.SHA256})
	}
	prefix := opts.InstallPrefix
	installed := func(rel string) string { return prefix + rel }

	// The Kata configuration, in template form.
	var settings []setting
	switch hv {
	case HypervisorCLH:
		settings = []setting{
			{"igvm", installed("share/podvm.igvm")},
			{"image", installed("share/rootfs.img")},
			{"kernel_params", ""},
			{"snp_guest_policy", int64(tgt.Policy)},
		}
	case HypervisorQEMU:
		idb, err := pickIDBlock(tgt, opts.CPU, vcpus)
		if err != nil {
			return nil, err
		}
		var block, auth string
		if idb != nil {
			block = base64.StdEncoding.EncodeToString(idb.Block)
			auth = base64.StdEncoding.EncodeToString(idb.Auth)
		}
		settings = []setting{
			{"firmware", installed("share/OVMF.fd")},
			{"kernel", installed("share/vmlinuz")},
			{"initrd", installed("share/initrd.img")},
			{"image", installed("share/rootfs.img")},
			{"rootfs_type", "erofs"},
			{"kernel_params", set.Cmdline},
			{"snp_id_block", block},
			{"snp_id_auth", auth},
			{"snp_guest_policy", int64(tgt.Policy)},
		}
	}
	if tgt.Policy > 1<<63-1 {
		return nil, fmt.Errorf("payload: target %s: policy %#x does not fit a TOML integer", tgt.Name, tgt.Policy)
	}
	kataTmpl, err := setTableKeys(tmpl, table, settings)
	if err != nil {
		return nil, fmt.Errorf("payload: %s: %w", opts.KataConfigTemplateName, err)
	}
	kataName := KataConfigFile(tgt.Name)
	kataRel := "etc/" + kataName
	files = append(files, file{rel: kataRel, kata: true, sha256: sha256Hex(kataTmpl)})

	hashed := make([]HashedFile, len(files))
	for i, f := range files {
		hashed[i] = HashedFile{Path: f.rel, SHA256: f.sha256}
	}
	digest, err := HandlerDigest(hashed)
	if err != nil {
		return nil, err
	}
	handler, err := HandlerName(opts.HandlerPrefix, platform, hashed)
	if err != nil {
		return nil, optErr("HandlerPrefix", "%v", err)
	}
	slices.SortFunc(hashed, func(a, b HashedFile) int { return strings.Compare(a.Path, b.Path) })
	expand := func(s string) string { return strings.ReplaceAll(s, Placeholder, handler) }
	kata := []byte(expand(string(kataTmpl)))
	kataSHA := sha256Hex(kata)

	p := &Payload{
		Handler: handler, HandlerDigest: digest, HashedFiles: hashed,
		Platform: platform, Target: tgt.Name, Hypervisor: hv,
		InstallPrefix:     expand(prefix),
		VMMemoryMiB:       memory,
		OverheadMemoryMiB: memory + *opts.OverheadMemoryMiB,
		OverheadCPU:       opts.OverheadCPU,
		kataConfig:        kata,
		firmware:          firmware,
	}
	p.Plan = Plan{
		Schema: PlanSchema, Handler: handler, Platform: platform, Target: tgt.Name,
		InstallPrefix: p.InstallPrefix, HandlerDigest: digest,
	}
	for _, f := range files {
		pf := PlanFile{Path: expand(installed(f.rel)), Mode: "0644"}
		if f.kata {
			pf.Source = kataName
			pf.SHA256 = kataSHA
			pf.Size = int64(len(kata))
			if kataSHA != f.sha256 {
				pf.TemplateSHA256 = f.sha256
			}
		} else {
			pf.Source = f.src.Name
			pf.SHA256 = f.src.SHA256
			pf.Size = f.src.Size
		}
		pf.URL = opts.URLBase + pf.Source
		pf.Integrity = sriSHA256(pf.SHA256)
		p.Plan.Files = append(p.Plan.Files, pf)
	}
	slices.SortFunc(p.Plan.Files, func(a, b PlanFile) int { return strings.Compare(a.Path, b.Path) })
	p.Runtime = ContainerdRuntime{
		Handler:                      handler,
		RuntimeType:                  "io.containerd." + opts.Shim + ".v2",
		RuntimePath:                  expand(opts.RuntimePath),
		PodAnnotations:               slices.Clone(opts.PodAnnotations),
		PrivilegedWithoutHostDevices: *opts.PrivilegedWithoutHostDevices,
		ConfigPath:                   expand(installed(kataRel)),
		ConfigVersion:                opts.ContainerdConfigVersion,
	}
	p.Plan.Containerd = p.Runtime
	if p.dropIn, err = p.Runtime.DropIn(); err != nil {
		return nil, err
	}
	if p.runtimeClass, err = runtimeClassYAML(p, opts); err != nil {
		return nil, err
	}
	if p.planJSON, err = p.Plan.Marshal(); err != nil {
		return nil, err
	}
	return p, nil
}

func pickTarget(targets []Target, name string) (Target, error) {
	if len(targets) == 0 {
		return Target{}, errors.New("payload: the output set has no target")
	}
	if name == "" {
		if len(targets) > 1 {
			names := make([]string, len(targets))
			for i, t := range targets {
				names[i] = t.Name
			}
			return Target{}, optErr("Target", "the output set has %d targets (%s): name one", len(targets), strings.Join(names, ", "))
		}
		return targets[0], nil
	}
	for _, t := range targets {
		if t.Name == name {
			return t, nil
		}
	}
	return Target{}, optErr("Target", "%q: no such target in the output set", name)
}

// pickIDBlock is the ID block for the CPU model and the vCPU count Kata
// boots with; nil when the target has none.
func pickIDBlock(t Target, cpu string, vcpus int64) (*IDBlock, error) {
	if len(t.IDBlocks) == 0 {
		return nil, nil
	}
	if cpu == "" {
		var cpus []string
		for _, b := range t.IDBlocks {
			if !slices.Contains(cpus, b.CPU) {
				cpus = append(cpus, b.CPU)
			}
		}
		if len(cpus) > 1 {
			return nil, optErr("CPU", "target %s has ID blocks for %s: name the CPU model of the nodes", t.Name, strings.Join(cpus, ", "))
		}
		cpu = cpus[0]
	}
	for i, b := range t.IDBlocks {
		if b.CPU == cpu && int64(b.VCPUs) == vcpus {
			if len(b.Block) != 96 || len(b.Auth) != 4096 {
				return nil, fmt.Errorf("payload: target %s: ID block %s/%d vCPUs: want 96 and 4096 bytes, have %d and %d", t.Name, cpu, vcpus, len(b.Block), len(b.Auth))
			}
			return &t.IDBlocks[i], nil
		}
	}
	return nil, optErr("CPU", "target %s has no ID block for CPU %q with %d vCPUs (the template's default_vcpus)", t.Name, cpu, vcpus)
}

// templateSizes reads default_vcpus and default_memory of the hypervisor
// table (Kata's defaults 1 and 2048 when absent).
func templateSizes(tmpl []byte, table []string) (vcpus, memoryMiB int64, err error) {
	if _, _, err := scanTOML(tmpl); err != nil {
		return 0, 0, err
	}
	var m map[string]any
	if err := toml.Unmarshal(tmpl, &m); err != nil {
		return 0, 0, fmt.Errorf("not valid TOML: %v", err)
	}
	t := lookupTable(m, table)
	if t == nil {
		return 0, 0, fmt.Errorf("no [%s] table", strings.Join(table, "."))
	}
	vcpus, memoryMiB = 1, 2048
	for _, f := range []struct {
		key string
		dst *int64
	}{{"default_vcpus", &vcpus}, {"default_memory", &memoryMiB}} {
		key, dst := f.key, f.dst
		v, ok := t[key]
		if !ok {
			continue
		}
		n, ok := v.(int64)
		if !ok || n <= 0 {
			return 0, 0, fmt.Errorf("[%s] %s: want a positive integer, have %v", strings.Join(table, "."), key, v)
		}
		*dst = n
	}
	return vcpus, memoryMiB, nil
}

func checkSHA256(s string) error {
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size || strings.ToLower(s) != s {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", s)
	}
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sriSHA256 is the subresource-integrity form of a hex sha256.
func sriSHA256(hexSum string) string {
	b, _ := hex.DecodeString(hexSum)
	return "sha256-" + base64.StdEncoding.EncodeToString(b)
}

// hashFile streams a file through sha256, checking ctx between blocks.
func hashFile(ctx context.Context, name string) (int64, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, h, f)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", name, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// copyCtx copies in 1 MiB blocks and stops when ctx is done.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
