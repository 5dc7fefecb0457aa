package podvm

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// MaxSourceDateEpoch is the largest spec.sourceDateEpoch: the newc cpio
// and erofs formats store times in 32 bits.
const MaxSourceDateEpoch = 1<<32 - 1

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	moduleRE   = regexp.MustCompile(`^[A-Za-z0-9_\-:*?\[\].]+$`)
	platformRE = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
)

// validate checks everything that needs no input file: values, and the
// fields that go together. (What needs the built artifacts, such as
// whether the IGVM layout lets KVM launch it or whether the command line
// fits the kernel's cmdline_size, is the pipeline's to check.)
func (c *Config) validate() error {
	if c.APIVersion != APIVersion {
		if c.APIVersion == "" {
			return c.errorAt("apiVersion", "missing (want %s)", APIVersion)
		}
		return c.errorAt("apiVersion", "%q is not supported (want %s)", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		return c.errorAt("kind", "%q: want %s", c.Kind, Kind)
	}
	if c.Metadata.Name == "" {
		return c.errorAt("metadata.name", "missing: the image needs a name")
	}
	if len(c.Metadata.Name) > 63 || !nameRE.MatchString(c.Metadata.Name) {
		return c.errorAt("metadata.name", "%q: want lower case letters, digits, '-' and '.', starting and ending alphanumeric, at most 63", c.Metadata.Name)
	}
	for _, k := range sortedKeys(c.Metadata.Labels) {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return c.errorAt("metadata.labels", "label key %q", k)
		}
	}
	d := c.Defaulted()
	s := &d.Spec
	if v := *s.SourceDateEpoch; v < 0 || v > MaxSourceDateEpoch {
		return c.errorAt("spec.sourceDateEpoch", "%d: want whole seconds since 1970, 0 to %d", v, int64(MaxSourceDateEpoch))
	}
	for _, check := range []func(*Spec) error{c.checkKernel, c.checkInitrd, c.checkRootfs, c.checkCmdline, c.checkIGVM, c.checkTargets, c.checkLayout, c.checkIDBlock, c.checkRuntime} {
		if err := check(s); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) checkKernel(s *Spec) error {
	k := s.Kernel
	switch {
	case k.Deb == nil && k.BzImage == nil:
		return c.errorAt("spec.kernel", "give the kernel as deb (a Debian linux-image package) or bzImage")
	case k.Deb != nil && k.BzImage != nil:
		return c.errorAt("spec.kernel.bzImage", "give deb or bzImage, not both")
	case k.Deb != nil && k.ModulesDir != nil:
		return c.errorAt("spec.kernel.modulesDir", "the modules come from the package given as deb")
	case k.BzImage != nil && len(k.Modules) > 0 && k.ModulesDir == nil:
		return c.errorAt("spec.kernel.modules", "loading modules with a bzImage needs spec.kernel.modulesDir (a lib/modules/VERSION tree); modules: [] loads none")
	}
	seen := map[string]int{}
	for i, m := range k.Modules {
		p := fmt.Sprintf("spec.kernel.modules[%d]", i)
		if !moduleRE.MatchString(m) {
			return c.errorAt(p, "%q is not a module name or alias", m)
		}
		n := strings.ReplaceAll(m, "-", "_")
		if j, dup := seen[n]; dup {
			return c.errorAt(p, "%q is spec.kernel.modules[%d] again", m, j)
		}
		seen[n] = i
	}
	return nil
}

func (c *Config) checkInitrd(s *Spec) error {
	in := s.Initrd
	switch in.Compression {
	case "none":
		if in.Level != 0 {
			return c.errorAt("spec.initrd.level", "a level with compression none")
		}
	case "gzip":
		if in.Level < 0 || in.Level > 9 {
			return c.errorAt("spec.initrd.level", "%d: gzip levels are 1 to 9 (0: default 6)", in.Level)
		}
	case "zstd":
		if in.Level < 0 || in.Level > 22 {
			return c.errorAt("spec.initrd.level", "%d: zstd levels are 1 to 22 (0: default 3)", in.Level)
		}
	default:
		return c.errorAt("spec.initrd.compression", "%q: want none, gzip or zstd", in.Compression)
	}
	if err := c.checkEntries("spec.initrd", in.Dirs, in.Files); err != nil {
		return err
	}
	return nil
}

func (c *Config) checkRootfs(s *Spec) error {
	r := s.Rootfs
	if len(r.Sources) == 0 {
		return c.errorAt("spec.rootfs.sources", "missing: give at least one source (%s)", SourceSyntax)
	}
	if !platformRE.MatchString(r.Platform) {
		return c.errorAt("spec.rootfs.platform", "%q: want OS/ARCH[/VARIANT], e.g. linux/amd64", r.Platform)
	}
	if r.Agent == nil {
		return c.errorAt("spec.rootfs.agent", "missing: the kata-agent binary to install as /usr/bin/kata-agent")
	}
	if strings.ContainsRune(r.Seed, 0) {
		return c.errorAt("spec.rootfs.seed", "NUL in the seed")
	}
	if err := c.checkEntries("spec.rootfs", r.Dirs, r.Files); err != nil {
		return err
	}
	for i, d := range r.Dirs {
		// pkg/rootfs lays added trees over the root only; a tree for
		// elsewhere is refused rather than silently put at /.
		if path.Clean(d.Dst) != "/" {
			return c.errorAt(fmt.Sprintf("spec.rootfs.dirs[%d].dst", i), "%s: root file system trees are copied onto / only: leave dst out (or give /) and lay the tree out from the root, or add single files with spec.rootfs.files", d.Dst)
		}
	}
	return nil
}

// checkEntries checks added directories and files: absolute clean
// destinations, no file given twice.
func (c *Config) checkEntries(base string, dirs []DirEntry, files []FileEntry) error {
	for i, d := range dirs {
		if err := checkDst(d.Dst); err != nil {
			return c.errorAt(fmt.Sprintf("%s.dirs[%d].dst", base, i), "%v", err)
		}
	}
	seen := map[string]int{}
	for i, f := range files {
		p := fmt.Sprintf("%s.files[%d]", base, i)
		if f.Dst == "" {
			return c.errorAt(p+".dst", "missing: where the file goes in the image")
		}
		if err := checkDst(f.Dst); err != nil {
			return c.errorAt(p+".dst", "%v", err)
		}
		if f.Dst == "/" {
			return c.errorAt(p+".dst", "names the root, not a file")
		}
		if j, dup := seen[path.Clean(f.Dst)]; dup {
			return c.errorAt(p+".dst", "%s is also %s.files[%d].dst", f.Dst, base, j)
		}
		seen[path.Clean(f.Dst)] = i
	}
	return nil
}

func checkDst(dst string) error {
	if !strings.HasPrefix(dst, "/") {
		return fmt.Errorf("%q: want an absolute path in the image", dst)
	}
	for _, el := range strings.Split(dst, "/") {
		if el == ".." {
			return fmt.Errorf("%q: no \"..\" in a path in the image", dst)
		}
	}
	if strings.ContainsRune(dst, 0) {
		return fmt.Errorf("NUL in %q", dst)
	}
	return nil
}

// rootParams are the parameters the pipeline's root fragment sets.
var rootParams = []string{"root", "roothash", "usrhash", "systemd.verity", "systemd.verity_root_data", "systemd.verity_root_hash", "systemd.verity_root_options", "dm-mod.create", "dm-mod.waitfor"}

func (c *Config) checkCmdline(s *Spec) error {
	switch s.Cmdline.Root {
	case RootIBRoot, RootSystemd, RootDMModCreate:
	default:
		return c.errorAt("spec.cmdline.root", "%q: want %s, %s or %s", s.Cmdline.Root, RootIBRoot, RootSystemd, RootDMModCreate)
	}
	for i, p := range s.Cmdline.Parameters {
		at := fmt.Sprintf("spec.cmdline.parameters[%d]", i)
		if p == "" || strings.ContainsAny(p, " \t\n\r\x00\"") {
			return c.errorAt(at, "%q: one parameter without blanks or quotes", p)
		}
		key, _, _ := strings.Cut(p, "=")
		if slices.Contains(rootParams, key) || strings.HasPrefix(key, "ibroot.") {
			return c.errorAt(at, "%q: the pipeline appends the root fragment itself (choose its kind with spec.cmdline.root)", p)
		}
	}
	return nil
}

func (c *Config) checkIGVM(s *Spec) error {
	if err := snp.GuestPolicy(*s.IGVM.Policy).Validate(); err != nil {
		return c.errorAt("spec.igvm.policy", "%s", strings.TrimPrefix(err.Error(), "snp: "))
	}
	if s.IGVM.ACPI.Tables != nil && s.IGVM.ACPI.Pages != nil {
		return c.errorAt("spec.igvm.acpi.pages", "give tables or pages, not both")
	}
	l := s.IGVM.Layout
	if _, err := layoutKind(l.Kind); err != nil {
		return c.errorAt("spec.igvm.layout.kind", "%q: want %s (igvm-tooling igvmgen's, for cloud-hypervisor on Microsoft's hypervisor) or %s (for QEMU on KVM)", l.Kind, LayoutMSHV, LayoutKVM)
	}
	if l.Kind == LayoutKVM && !*l.SVME {
		return c.errorAt("spec.igvm.layout.svme", "false has no effect with the kvm layout: KVM measures EFER.SVME set whatever the file holds, so the kvm layout writes it set")
	}
	return nil
}

// layoutKind is the linuxboot layout kind of spec.igvm.layout.kind
// (exactly "mshv" or "kvm": the config is strict about case).
func layoutKind(s string) (linuxboot.LayoutKind, error) {
	k, err := linuxboot.ParseLayoutKind(s)
	if err != nil || k.String() != s {
		return 0, fmt.Errorf("unknown IGVM layout kind %q", s)
	}
	return k, nil
}

// checkLayout refuses a target the IGVM layout cannot satisfy: one build
// makes one IGVM file, laid out for one loader, and each layout kind
// satisfies only its own loader's profile (measure.CheckLayout decides).
// qemu-ovmf targets boot vmlinuz, initrd.img and cmdline.txt through the
// firmware and do not use the IGVM file at all.
func (c *Config) checkLayout(s *Spec) error {
	kind, err := layoutKind(s.IGVM.Layout.Kind)
	if err != nil {
		return c.errorAt("spec.igvm.layout.kind", "%v", err)
	}
	for i, t := range s.Measurements.Targets {
		profile, ok := igvmProfiles[t.Platform]
		if !ok {
			continue
		}
		err := measure.CheckLayout(kind, profile)
		if err == nil {
			continue
		}
		var pe *measure.ProfileError
		if !errors.As(err, &pe) {
			return c.errorAt(fmt.Sprintf("spec.measurements.targets[%d].platform", i), "%v", trimPkg(err, "measure: "))
		}
		given := "the default"
		if pos, ok := c.pos["spec.igvm.layout.kind"]; ok {
			given = fmt.Sprintf("line %d", pos.Line)
		}
		at := fmt.Sprintf("spec.measurements.targets[%d].platform", i)
		if i >= len(c.Spec.Measurements.Targets) {
			at = "spec.measurements.targets" // the default target
		}
		return c.errorAt(at, "%s needs the %s IGVM layout, and spec.igvm.layout.kind is %s (%s): %s; one build makes one IGVM file, so its targets must all fit its layout (qemu-ovmf targets fit any)",
			t.Platform, layoutFor[t.Platform], kind, given, pe.Reason)
	}
	return nil
}

// igvmProfiles are the measure profiles of the target platforms that
// launch the IGVM file, and layoutFor the layout kind each needs.
var (
	igvmProfiles = map[string]measure.Profile{PlatformIGVMMSHV: measure.ProfileMSHV, PlatformIGVMKVM: measure.ProfileKVM}
	layoutFor    = map[string]string{PlatformIGVMMSHV: LayoutMSHV, PlatformIGVMKVM: LayoutKVM}
)

// targetFields says which optional target fields each platform takes.
var targetFields = map[string][]string{
	PlatformIGVMMSHV: {},
	PlatformIGVMKVM:  {"vcpus", "cpus", "hostKernel", "guestFeatures"},
	PlatformQEMUOVMF: {"vcpus", "cpus", "guestFeatures", "firmware", "vmmType", "policy"},
}

func (c *Config) checkTargets(s *Spec) error {
	if len(s.Measurements.Targets) == 0 {
		return c.errorAt("spec.measurements.targets", "empty: give at least one target (or leave it out for the default igvm-mshv)")
	}
	names := map[string]int{}
	for i, t := range s.Measurements.Targets {
		at := fmt.Sprintf("spec.measurements.targets[%d]", i)
		// Check the written target: defaults fill fields a platform takes.
		var w Target
		if i < len(c.Spec.Measurements.Targets) {
			w = c.Spec.Measurements.Targets[i]
		}
		allowed, ok := targetFields[t.Platform]
		if !ok {
			if t.Platform == "" {
				return c.errorAt(at+".platform", "missing (want %s)", strings.Join(Platforms, ", "))
			}
			return c.errorAt(at+".platform", "%q: want %s", t.Platform, strings.Join(Platforms, ", "))
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"vcpus", w.VCPUs != nil}, {"cpus", w.CPUs != nil}, {"hostKernel", w.HostKernel != ""}, {"guestFeatures", w.GuestFeatures != nil},
			{"firmware", w.Firmware != nil}, {"vmmType", w.VMMType != ""}, {"policy", w.Policy != nil}} {
			if f.set && !slices.Contains(allowed, f.name) {
				return c.errorAt(at+"."+f.name, "has no effect on a %s target", t.Platform)
			}
		}
		if len(t.Name) > 63 || !nameRE.MatchString(t.Name) {
			return c.errorAt(at+".name", "%q: want lower case letters, digits, '-' and '.', at most 63", t.Name)
		}
		if j, dup := names[t.Name]; dup {
			return c.errorAt(at+".name", "%q is also the name of spec.measurements.targets[%d] (names default to the platform)", t.Name, j)
		}
		names[t.Name] = i
		cpus := map[uint32]int{}
		for j, m := range t.CPUs {
			cpu, err := measure.LookupCPU(m)
			if err != nil {
				return c.errorAt(fmt.Sprintf("%s.cpus[%d]", at, j), "%s", strings.TrimPrefix(err.Error(), "measure: "))
			}
			if k, dup := cpus[cpu.Signature]; dup {
				return c.errorAt(fmt.Sprintf("%s.cpus[%d]", at, j), "%q has the signature of cpus[%d]", m, k)
			}
			cpus[cpu.Signature] = j
		}
		maxVCPU := slices.Max(append([]int{1}, t.VCPUs...))
		switch t.Platform {
		case PlatformIGVMKVM:
			host, err := measure.ParseHostKernel(t.HostKernel)
			if err != nil {
				return c.errorAt(at+".hostKernel", "%s", strings.TrimPrefix(err.Error(), "measure: "))
			}
			// What no kvm layout can satisfy is a config error here,
			// before anything is built (the build has no override for
			// it); the file's own rules are checked when it is measured.
			var features *uint64
			if t.GuestFeatures != nil {
				f := uint64(*t.GuestFeatures)
				features = &f
			}
			for _, v := range measure.KVMLaunchViolations(host, features) {
				field := ".guestFeatures"
				if v.Rule == "hypothetical-host" {
					field = ".hostKernel"
				}
				return c.errorAt(at+field, "%s (%s)", v.Detail, v.Rule)
			}
			if maxVCPU > 1 && len(t.CPUs) == 0 {
				return c.errorAt(at+".cpus", "needed for more than one vCPU: KVM puts the CPU model's signature in the other vCPUs' VMSAs")
			}
		case PlatformQEMUOVMF:
			if t.Firmware == nil {
				return c.errorAt(at+".firmware", "missing: the OVMF image QEMU boots (with a kernel-hashes section, as edk2's AmdSevX64 build has)")
			}
			vmm, err := measure.ParseVMMType(t.VMMType)
			if err != nil {
				return c.errorAt(at+".vmmType", "%s", strings.TrimPrefix(err.Error(), "measure: "))
			}
			if vmm == measure.VMMQEMU && len(t.CPUs) == 0 {
				return c.errorAt(at+".cpus", "needed for QEMU: it puts the vCPU signature in the VMSAs")
			}
			if err := snp.GuestPolicy(*t.Policy).Validate(); err != nil {
				return c.errorAt(at+".policy", "%s", strings.TrimPrefix(err.Error(), "snp: "))
			}
		}
	}
	return nil
}

func (c *Config) checkIDBlock(s *Spec) error {
	b := s.IDBlock
	if b == nil {
		return nil
	}
	switch {
	case b.Key == nil && !b.Keyless:
		return c.errorAt("spec.idBlock", "give key (an ECDSA P-384 private key, PEM) or keyless: true")
	case b.Key != nil && b.Keyless:
		return c.errorAt("spec.idBlock.keyless", "give key or keyless: true, not both")
	case b.AuthorKey != nil && b.Key == nil:
		return c.errorAt("spec.idBlock.authorKey", "an author key signs the ID key: it needs key")
	}
	return nil
}

// checkRuntime checks what spec.runtime says about the targets: which
// one the payload is for, and its CPU model. The payload's own settings
// are checked by pkg/payload when the build starts (Build, before any
// stage: it reads the Kata template), with the same field paths.
func (c *Config) checkRuntime(s *Spec) error {
	r := s.Runtime
	if r == nil {
		return nil
	}
	targets := s.Measurements.Targets
	if r.Target == "" {
		var names []string
		for _, t := range targets {
			names = append(names, t.Name)
		}
		return c.errorAt("spec.runtime.target", "missing: the config has %d targets (%s) and the payload runs one: name it", len(targets), strings.Join(names, ", "))
	}
	i := slices.IndexFunc(targets, func(t Target) bool { return t.Name == r.Target })
	if i < 0 {
		var names []string
		for _, t := range targets {
			names = append(names, t.Name)
		}
		return c.errorAt("spec.runtime.target", "%q: no such target (the targets are %s)", r.Target, strings.Join(names, ", "))
	}
	t := targets[i]
	if t.Platform == PlatformIGVMKVM {
		// pkg/payload's Kata configuration for the IGVM is cloud-
		// hypervisor's, and the kvm digests are those of QEMU's IGVM
		// loader: a node running it would launch with a digest no
		// reference value lists.
		return c.errorAt("spec.runtime.target", "%q is an igvm-kvm target: its digests are QEMU's IGVM loader's, and the node payload has no Kata configuration that boots the IGVM file with QEMU (its IGVM configuration is cloud-hypervisor's); make the payload for an igvm-mshv or qemu-ovmf target", r.Target)
	}
	if r.CPU != "" {
		switch {
		case t.Platform != PlatformQEMUOVMF:
			return c.errorAt("spec.runtime.cpu", "has no effect: target %s is %s, whose launch digest depends on no CPU model", t.Name, t.Platform)
		case s.IDBlock == nil:
			return c.errorAt("spec.runtime.cpu", "has no effect without spec.idBlock: it picks the CPU model's ID block")
		}
		if _, err := runtimeCPU(r.CPU, t); err != nil {
			return c.errorAt("spec.runtime.cpu", "%v", err)
		}
	}
	for _, m := range []struct {
		at string
		m  map[string]string
	}{{"spec.runtime.labels", r.Labels}, {"spec.runtime.nodeSelector", r.NodeSelector}} {
		for _, k := range sortedKeys(m.m) {
			if k == "" || strings.ContainsAny(k, " \t\n") {
				return c.errorAt(m.at, "key %q", k)
			}
		}
	}
	return nil
}

// runtimeCPU is the name target t gives the CPU model spec.runtime.cpu
// names (by name or signature): the ID blocks carry the target's names.
func runtimeCPU(cpu string, t Target) (string, error) {
	want, err := measure.LookupCPU(cpu)
	if err != nil {
		return "", errors.New(strings.TrimPrefix(err.Error(), "measure: "))
	}
	for _, name := range t.CPUs {
		if m, err := measure.LookupCPU(name); err == nil && m.Signature == want.Signature {
			return name, nil
		}
	}
	return "", fmt.Errorf("%q is none of target %s's CPU models (%s)", cpu, t.Name, strings.Join(t.CPUs, ", "))
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
