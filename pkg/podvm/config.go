package podvm

import (
	"bytes"
	"encoding/json"
)

// APIVersion and Kind of the one document this package reads.
const (
	APIVersion = "imagebuilder/v1alpha1"
	Kind       = "PodVMImage"
)

// Config is a PodVMImage file. Fields that are pointers or slices are nil
// when the file does not give them; Defaulted fills every default in.
type Config struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source describes the file the config came from (not part of the
	// config's JSON).
	Source FileInfo `yaml:"-" json:"-"`

	pos map[string]Position
}

// FileInfo says where a config came from.
type FileInfo struct {
	File   string // as given to Load
	Dir    string // absolute directory that relative paths start from
	SHA256 string // of the file's bytes
	// SourceDateEpochFrom is "environment" when LoadOptions.SourceDateEpoch
	// overrode the file, "file" when spec.sourceDateEpoch gave it, ""
	// for the default 0.
	SourceDateEpochFrom string
}

// Metadata names the image.
type Metadata struct {
	// Name names the image (a DNS-1123 label: lower case letters,
	// digits, "-" and ".", at most 63); the default seed derives from it.
	Name string `yaml:"name" json:"name"`
	// Labels are recorded in the manifest.
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// Spec is what to build.
type Spec struct {
	// SourceDateEpoch is the time of every timestamp in every output
	// (seconds since 1970, default 0). The SOURCE_DATE_EPOCH environment
	// variable, passed as LoadOptions.SourceDateEpoch, wins over it.
	SourceDateEpoch *int64       `yaml:"sourceDateEpoch" json:"sourceDateEpoch"`
	Kernel          Kernel       `yaml:"kernel" json:"kernel"`
	Initrd          Initrd       `yaml:"initrd" json:"initrd"`
	Rootfs          Rootfs       `yaml:"rootfs" json:"rootfs"`
	Cmdline         Cmdline      `yaml:"cmdline" json:"cmdline"`
	IGVM            IGVM         `yaml:"igvm" json:"igvm"`
	Measurements    Measurements `yaml:"measurements" json:"measurements"`
	// IDBlock, when set, asks for an SNP ID block per target (per CPU
	// model and vCPU count where the digest depends on them).
	IDBlock *IDBlock `yaml:"idBlock" json:"idBlock,omitempty"`
	// Runtime, when set, asks for the node payload of one target
	// (pkg/payload): the runtime handler, its Kata configuration, the
	// containerd entry, the RuntimeClass and the install plan.
	Runtime *Runtime `yaml:"runtime" json:"runtime,omitempty"`
}

// Kernel is the guest kernel: a bzImage, or a Debian kernel package from
// which the bzImage and the modules tree are taken (no dpkg needed).
type Kernel struct {
	Deb     *Path `yaml:"deb" json:"deb,omitempty"`
	BzImage *Path `yaml:"bzImage" json:"bzImage,omitempty"`
	// ModulesDir is the lib/modules/VERSION tree that goes with BzImage;
	// with Deb the package's own tree is used.
	ModulesDir *Path `yaml:"modulesDir" json:"modulesDir,omitempty"`
	// Modules are the modules (or aliases) the guest init loads, with
	// their dependencies; default DefaultModules; [] loads none.
	Modules []string `yaml:"modules" json:"modules"`
}

// DefaultModules are what the guest init needs to open a dm-verity erofs
// root on a virtio disk, as module names of Debian's kernel (their
// dependencies, virtio_ring, dm_mod, dm_bufio, ..., follow).
var DefaultModules = []string{"virtio_pci", "virtio_blk", "dm-verity", "erofs"}

// Initrd is the initial ramdisk: the guest init, the kernel modules and
// any extra content.
type Initrd struct {
	// Compression is none, gzip or zstd (default zstd).
	Compression string `yaml:"compression" json:"compression"`
	// Level is the compression level; 0 means the tool's default (gzip 6,
	// zstd 3).
	Level int `yaml:"level" json:"level"`
	// Init is a static program to run as /init; nil means the guest init
	// this project builds (cmd/guest-init), which opens the verity root.
	Init *Path `yaml:"init" json:"init,omitempty"`
	// Dirs, Files, Specs and Sources are added in that order; the
	// modules and init come last and win over entries at their paths.
	Dirs    []DirEntry  `yaml:"dirs" json:"dirs"`
	Files   []FileEntry `yaml:"files" json:"files"`
	Specs   []Path      `yaml:"specs" json:"specs"` // gen_init_cpio spec files
	Sources []Source    `yaml:"sources" json:"sources"`
	// EarlyCPIO is an uncompressed newc archive put first (CPU microcode).
	EarlyCPIO *Path `yaml:"earlyCpio" json:"earlyCpio,omitempty"`
}

// Rootfs is the root file system: image layers in order, the agent and
// added content, on an erofs with a dm-verity tree in a GPT disk.
type Rootfs struct {
	// Sources are layered bottom first (SourceSyntax); at least one.
	Sources []Source `yaml:"sources" json:"sources"`
	// Platform picks the image of a multi-platform index (default
	// linux/amd64).
	Platform string `yaml:"platform" json:"platform"`
	// Agent is the kata-agent binary, installed as /usr/bin/kata-agent.
	Agent *Path `yaml:"agent" json:"agent"`
	// Dirs are host trees copied over the root (owned by root); their
	// Dst must be "/" (validation refuses another).
	Dirs []DirEntry `yaml:"dirs" json:"dirs"`
	// Files are single files.
	Files []FileEntry `yaml:"files" json:"files"`
	// Seed derives the disk and partition GUIDs, the file system UUID and
	// the verity salt; default metadata.name.
	Seed string `yaml:"seed" json:"seed"`
}

// DirEntry is a host directory added at Dst (default "/").
type DirEntry struct {
	Src Path   `yaml:"src" json:"src"`
	Dst string `yaml:"dst" json:"dst"`
}

// FileEntry is a host file added at Dst (the file's path, not a
// directory) with Mode (default 0644, or 0755 when Src is executable:
// the pipeline decides that from the file, so Mode stays unset here).
type FileEntry struct {
	Src  Path   `yaml:"src" json:"src"`
	Dst  string `yaml:"dst" json:"dst"`
	Mode *Mode  `yaml:"mode" json:"mode,omitempty"`
}

// Root fragment kinds: how the guest finds its verity root.
const (
	RootIBRoot      = "ibroot"        // the project's guest init (ibroot.* parameters)
	RootSystemd     = "systemd"       // systemd-veritysetup-generator (roothash=, systemd.verity_*)
	RootDMModCreate = "dm-mod.create" // the kernel's CONFIG_DM_INIT, no initrd needed
)

// Cmdline is the kernel command line; the pipeline appends the root
// fragment and records the final line.
type Cmdline struct {
	// Parameters are the base parameters, in order (default
	// DefaultParameters; [] gives none).
	Parameters []string `yaml:"parameters" json:"parameters"`
	// Root is the root fragment kind (default ibroot).
	Root string `yaml:"root" json:"root"`
}

// DefaultParameters: the serial console, and reboot at once on a panic
// (a VM started with -no-reboot or FailureAction ends then).
var DefaultParameters = []string{"console=ttyS0", "panic=-1"}

// IGVM is the IGVM file for a direct SEV-SNP boot of kernel, initrd and
// command line.
type IGVM struct {
	// Policy is the SEV-SNP guest policy (default DefaultPolicy).
	Policy *Hex `yaml:"policy" json:"policy"`
	// ACPI are the ACPI tables: a directory of .aml files or a pages
	// file; neither means igvm-tooling's built-in tables.
	ACPI ACPI `yaml:"acpi" json:"acpi"`
	// Layout is the layout kind (which hypervisor loader the file is
	// for) and igvmgen's layout switches; the switches default to true,
	// the settings Kata Containers uses.
	Layout Layout `yaml:"layout" json:"layout"`
}

// DefaultPolicy is Kata Containers' (and Contrast's) SEV-SNP guest
// policy: SMT allowed, the must-be-one bit 17, no debugging, no
// migration agent, no minimum firmware ABI.
const DefaultPolicy Hex = 0x30000

// ACPI names where the tables come from.
type ACPI struct {
	Tables *Path `yaml:"tables" json:"tables,omitempty"` // a directory of compiled .aml tables
	Pages  *Path `yaml:"pages" json:"pages,omitempty"`   // a pages file: [u64 GPA][4096 bytes] records
}

// IGVM layout kinds (pkg/igvm/linuxboot's LayoutKind names): which
// hypervisor loader the file is laid out for. One build makes one IGVM
// file, and each kind satisfies only its own loader's targets
// (measure.CheckLayout).
const (
	// LayoutMSHV is igvm-tooling igvmgen's layout, for cloud-hypervisor
	// on Microsoft's hypervisor (igvm-mshv targets). The default.
	LayoutMSHV = "mshv"
	// LayoutKVM is for QEMU (>= 10.1, -object igvm-cfg) on KVM (igvm-kvm
	// targets): the VMSA at 0xfffffffff000 holding the values KVM
	// measures.
	LayoutKVM = "kvm"
)

// Layout is the layout kind and the igvmgen switches.
type Layout struct {
	// Kind is LayoutMSHV (default) or LayoutKVM.
	Kind          string `yaml:"kind" json:"kind"`
	SVME          *bool  `yaml:"svme" json:"svme"`                   // EFER.SVME set
	EncryptedPage *bool  `yaml:"encryptedPage" json:"encryptedPage"` // C-bit in the page tables and CR3
	PvalidateOpt  *bool  `yaml:"pvalidateOpt" json:"pvalidateOpt"`   // only the kernel pages startup_32 touches
}

// Measurements are the launch digests to compute.
type Measurements struct {
	// Targets, default one igvm-mshv target.
	Targets []Target `yaml:"targets" json:"targets"`
}

// Platforms a target can name.
const (
	// PlatformIGVMMSHV is the IGVM under cloud-hypervisor on Microsoft's
	// hypervisor (Azure; Contrast's AKS-CLH-SNP).
	PlatformIGVMMSHV = "igvm-mshv"
	// PlatformIGVMKVM is the IGVM under cloud-hypervisor or QEMU on KVM.
	PlatformIGVMKVM = "igvm-kvm"
	// PlatformQEMUOVMF is QEMU with an OVMF firmware and kernel hashes
	// (-kernel, -initrd, -append; Contrast's Metal-QEMU-SNP).
	PlatformQEMUOVMF = "qemu-ovmf"
)

// Platforms lists the target platforms.
var Platforms = []string{PlatformIGVMMSHV, PlatformIGVMKVM, PlatformQEMUOVMF}

// Target is one launch digest (or one per vCPU count and CPU model).
type Target struct {
	// Name names the target in outputs (default: the platform).
	Name     string `yaml:"name" json:"name"`
	Platform string `yaml:"platform" json:"platform"`
	// VCPUs are the vCPU counts (igvm-kvm, qemu-ovmf; default [1]).
	VCPUs VCPUs `yaml:"vcpus" json:"vcpus,omitempty"`
	// CPUs are the vCPU models (QEMU names such as EPYC-Milan, or
	// milan, genoa, ...): qemu-ovmf needs at least one for the QEMU VMM;
	// igvm-kvm needs one for more than one vCPU.
	CPUs []string `yaml:"cpus" json:"cpus,omitempty"`
	// HostKernel is the host Linux version whose KVM builds the VMSAs
	// (igvm-kvm; default pkg/measure's DefaultHostKernel).
	HostKernel string `yaml:"hostKernel" json:"hostKernel,omitempty"`
	// GuestFeatures are the VMSA's SEV features (igvm-kvm: default the
	// IGVM's own; qemu-ovmf: default 0x1).
	GuestFeatures *Hex `yaml:"guestFeatures" json:"guestFeatures,omitempty"`
	// Firmware is the OVMF image (qemu-ovmf, required; it must carry a
	// kernel-hashes section, as edk2's AmdSevX64 builds do).
	Firmware *Path `yaml:"firmware" json:"firmware,omitempty"`
	// VMMType is QEMU, ec2 or gce (qemu-ovmf; default QEMU).
	VMMType string `yaml:"vmmType" json:"vmmType,omitempty"`
	// Policy is the guest policy QEMU launches with (qemu-ovmf; default
	// spec.igvm.policy).
	Policy *Hex `yaml:"policy" json:"policy,omitempty"`
}

// IDBlock asks for SNP ID blocks. The block's policy is always its
// target's launch policy (the firmware refuses any other).
type IDBlock struct {
	FamilyID ID16   `yaml:"familyID" json:"familyID"`
	ImageID  ID16   `yaml:"imageID" json:"imageID"`
	SVN      uint32 `yaml:"svn" json:"svn"`
	// Key is the ID key (ECDSA P-384, PEM); AuthorKey optionally signs it.
	Key       *Path `yaml:"key" json:"key,omitempty"`
	AuthorKey *Path `yaml:"authorKey" json:"authorKey,omitempty"`
	// Keyless signs without a key: a fixed signature with the public key
	// recovered from it (pkg/measure.KeylessIDAuth).
	Keyless bool `yaml:"keyless" json:"keyless"`
}

// Runtime is the node payload's settings: pkg/payload's Options, field
// for field (the Go field names are Options' own, the YAML names their
// camelCase), for the one target the payload runs. docs/config.md and
// docs/node-payload.md describe them.
type Runtime struct {
	// Target names the target whose payload is made (default: the only
	// one). An igvm-kvm target has none: see docs/config.md.
	Target string `yaml:"target" json:"target"`
	// CPU picks, for a qemu-ovmf target with ID blocks for more than one
	// CPU model, the model of the nodes (a name or signature that
	// spec.measurements.targets[].cpus lists); default the only one.
	CPU string `yaml:"cpu" json:"cpu,omitempty"`
	// HandlerPrefix starts the runtime handler name (default
	// payload.DefaultHandlerPrefix; "contrast-cc-" for Contrast).
	HandlerPrefix string `yaml:"handlerPrefix" json:"handlerPrefix"`
	// Platform is the handler name's platform part (default by target
	// platform: aks-clh-snp, metal-qemu-snp).
	Platform string `yaml:"platform" json:"platform"`
	// InstallPrefix is the node directory the files go to, ending in "/";
	// payload.Placeholder in it stands for the handler name.
	InstallPrefix string `yaml:"installPrefix" json:"installPrefix"`
	// Shim names the containerd shim (runtime_type io.containerd.SHIM.v2).
	Shim string `yaml:"shim" json:"shim"`
	// RuntimePath is the shim binary; "" lets containerd find it.
	RuntimePath string `yaml:"runtimePath" json:"runtimePath,omitempty"`
	// PodAnnotations are the annotations pods may pass to the shim; []
	// passes none.
	PodAnnotations               []string `yaml:"podAnnotations" json:"podAnnotations"`
	PrivilegedWithoutHostDevices *bool    `yaml:"privilegedWithoutHostDevices" json:"privilegedWithoutHostDevices"`
	// ContainerdConfigVersion is 2 or 3 (default 2).
	ContainerdConfigVersion int `yaml:"containerdConfigVersion" json:"containerdConfigVersion"`
	// VMMemoryMiB is the guest memory; 0 takes the Kata template's
	// default_memory.
	VMMemoryMiB int64 `yaml:"vmMemoryMiB" json:"vmMemoryMiB,omitempty"`
	// OverheadMemoryMiB and OverheadCPU are added for the RuntimeClass's
	// overhead.podFixed.
	OverheadMemoryMiB *int64 `yaml:"overheadMemoryMiB" json:"overheadMemoryMiB"`
	OverheadCPU       string `yaml:"overheadCPU" json:"overheadCPU"`
	// NodeSelector and Labels go to the RuntimeClass.
	NodeSelector map[string]string `yaml:"nodeSelector" json:"nodeSelector,omitempty"`
	Labels       map[string]string `yaml:"labels" json:"labels,omitempty"`
	// URLBase is where a node installer fetches the files from.
	URLBase string `yaml:"urlBase" json:"urlBase"`
	// KataConfigTemplate is the Kata configuration to start from
	// (default pkg/payload's template of the target's hypervisor).
	KataConfigTemplate *Path `yaml:"kataConfigTemplate" json:"kataConfigTemplate,omitempty"`
}

// CanonicalJSON is the stable JSON form of v (a Config or any part of
// it): compact, fields in declaration order, map keys sorted, paths as
// written, no HTML escaping. The manifest records it for the defaulted
// config, and stage cache keys hash it for their part.
func CanonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
