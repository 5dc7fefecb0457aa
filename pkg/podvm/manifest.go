package podvm

import (
	"encoding/json"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// ManifestSchema names the manifest format and its version. A change that
// a reader of an older version would misread bumps the version;
// docs/manifest.md describes every field.
const ManifestSchema = "imagebuilder.podvm.manifest/v1"

// Output file names, fixed: a reader finds each artifact by its name.
const (
	FileRootfs             = "rootfs.img"
	FileInitrd             = "initrd.img"
	FileKernel             = "vmlinuz"
	FileCmdline            = "cmdline.txt"
	FileIGVM               = "podvm.igvm"
	FileReferenceValues    = "reference-values.json"
	FileContrastReferences = "reference-values.contrast.json"
	FileManifest           = "manifest.json"
)

// IDBlockFile is the name of a target's ID block file.
func IDBlockFile(target string) string { return "id-block-" + target + ".json" }

// Manifest is manifest.json: what went into a build and what came out,
// with nothing that depends on the machine, the time or the directories
// the build ran in (paths are as the config file writes them). Two builds
// of the same config and inputs give byte-identical manifests.
type Manifest struct {
	Schema string `json:"schema"`
	Tool   Tool   `json:"tool"`
	// Name and Labels are the config's metadata.
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Config ManifestConfig    `json:"config"`
	// SourceDateEpoch is the time of every timestamp in every output;
	// Seed derives every UUID and the verity salt.
	SourceDateEpoch int64  `json:"source_date_epoch"`
	Seed            string `json:"seed"`
	Inputs          Inputs `json:"inputs"`

	Kernel  KernelInfo  `json:"kernel"`
	Initrd  InitrdInfo  `json:"initrd"`
	Rootfs  RootfsInfo  `json:"rootfs"`
	Cmdline CmdlineInfo `json:"cmdline"`
	IGVM    IGVMInfo    `json:"igvm"`
	// Targets are the launch measurements, in the config's order.
	Targets []TargetInfo `json:"targets"`
	// Runtime is the node payload (spec.runtime), nil without one.
	Runtime *RuntimeInfo `json:"runtime,omitempty"`
	// Outputs are every file of the output directory but manifest.json,
	// by name.
	Outputs []Output `json:"outputs"`
}

// Tool names the program that made a build.
type Tool struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Revision string `json:"revision"`
}

// ManifestConfig is the config the build read.
type ManifestConfig struct {
	// File is the config file's base name.
	File string `json:"file"`
	// SHA256 is that of the file's bytes.
	SHA256 string `json:"sha256"`
	// Defaulted is the config with every default filled in
	// (CanonicalJSON of Config.Defaulted): it parses back as a config.
	Defaulted json.RawMessage `json:"defaulted"`
}

// Inputs are the files and images a build read, with their digests.
type Inputs struct {
	Kernel    KernelInput `json:"kernel"`
	GuestInit FileInput   `json:"guest_init"`
	Agent     FileInput   `json:"agent"`
	// RootfsSources are spec.rootfs.sources, resolved.
	RootfsSources []SourceInput `json:"rootfs_sources"`
	// RootfsFiles are the regular files of the root file system that
	// came from spec.rootfs.dirs and spec.rootfs.files, by path in the
	// image; RootfsInputs are those fields' host files and trees.
	RootfsFiles  []AddedFile `json:"rootfs_files"`
	RootfsInputs []FileInput `json:"rootfs_inputs"`
	// InitrdSources and InitrdInputs are spec.initrd.sources and the
	// host files, trees, spec files and early archive of spec.initrd.
	InitrdSources []SourceInput `json:"initrd_sources"`
	InitrdInputs  []FileInput   `json:"initrd_inputs"`
	// ACPI is spec.igvm.acpi's tables or pages, nil for the built-in
	// tables.
	ACPI *FileInput `json:"acpi,omitempty"`
	// Firmware are the targets' OVMF images.
	Firmware []FileInput `json:"firmware"`
	// IDKey and AuthorKey are the ID block keys, by the digests of their
	// public keys (never their private bytes); nil without them.
	IDKey     *KeyInput `json:"id_key,omitempty"`
	AuthorKey *KeyInput `json:"author_key,omitempty"`
	// KataConfigTemplate is spec.runtime.kataConfigTemplate, nil for
	// pkg/payload's built-in template.
	KataConfigTemplate *FileInput `json:"kata_config_template,omitempty"`
}

// FileInput is a host file or tree the build read.
type FileInput struct {
	// Field is the config field that names it ("spec.rootfs.agent").
	Field string `json:"field"`
	// Path is as the config writes it; "" for the built-in guest init.
	Path string `json:"path,omitempty"`
	// Kind is "file", or "tree" for a directory (its digest: see
	// docs/manifest.md), or "builtin" for the guest init the caller
	// gave (the one this project builds).
	Kind   string `json:"kind"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size,omitempty"`
}

// KeyInput is an ID block key.
type KeyInput struct {
	Field string `json:"field"`
	Path  string `json:"path"`
	// PublicKeyDigest is the SHA-384 of the public key in its SEV-SNP ABI
	// form: what attestation reports carry as ID_KEY_DIGEST or
	// AUTHOR_KEY_DIGEST.
	PublicKeyDigest snp.Digest `json:"public_key_digest"`
}

// KernelInput is the kernel as given.
type KernelInput struct {
	FileInput
	// Package, Version and Architecture are the Debian package's, when the
	// kernel came from a .deb.
	Package      string `json:"package,omitempty"`
	Version      string `json:"version,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	// ModulesDir is spec.kernel.modulesDir with a bzImage: its digest
	// covers the modules the build took from it (see docs/manifest.md).
	ModulesDir *FileInput `json:"modules_dir,omitempty"`
}

// SourceInput is one image source, resolved.
type SourceInput struct {
	Field string `json:"field"`
	// Source is as the config writes it; Pinned is it fixed to the digest
	// it resolved to (Source for kinds without a digest of their own).
	Source string `json:"source"`
	Pinned string `json:"pinned,omitempty"`
	// Kind, Platform, ManifestDigest, ConfigDigest, Layers and SHA256 are
	// pkg/source's Resolved fields.
	Kind           source.Kind          `json:"kind"`
	Platform       string               `json:"platform,omitempty"`
	ManifestDigest string               `json:"manifest_digest,omitempty"`
	ConfigDigest   string               `json:"config_digest,omitempty"`
	Layers         []source.LayerDigest `json:"layers,omitempty"`
	SHA256         string               `json:"sha256,omitempty"`
	// TreeSHA256 is a dir: source's tree digest.
	TreeSHA256 string `json:"tree_sha256,omitempty"`
}

// AddedFile is a host file as it went into the root file system.
type AddedFile struct {
	Path   string `json:"path"`   // in the image
	Source string `json:"source"` // the config field that brought it
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
}

// KernelInfo describes the kernel as booted (the vmlinuz output).
type KernelInfo struct {
	// Release is the kernel release (the modules tree's name), "" for a
	// bzImage without modules.
	Release      string `json:"release,omitempty"`
	BootProtocol string `json:"boot_protocol"`
	// CmdlineSize is the longest command line the kernel takes.
	CmdlineSize uint32 `json:"cmdline_size"`
}

// InitrdInfo describes initrd.img.
type InitrdInfo struct {
	Compression initrd.Compression `json:"compression"`
	Level       int                `json:"level"`
	Entries     int                `json:"entries"`
	// Modules are the kernel modules in the order the guest init loads
	// them.
	Modules []initrd.Module `json:"modules"`
	// InitSHA256 is the sha256 of /init.
	InitSHA256 string `json:"init_sha256"`
}

// RootfsInfo describes rootfs.img: the GPT disk, the erofs and the
// dm-verity tree.
type RootfsInfo struct {
	DiskSize   int64              `json:"disk_size"`
	DiskGUID   rootfs.GUID        `json:"disk_guid"`
	Partitions []rootfs.Partition `json:"partitions"`
	Filesystem rootfs.Filesystem  `json:"filesystem"`
	Verity     rootfs.VerityInfo  `json:"verity"`
}

// CmdlineInfo is the kernel command line.
type CmdlineInfo struct {
	// Line is the final command line: the base parameters, then the root
	// fragment (cmdline.txt holds it with a newline).
	Line string `json:"line"`
	// Root is the root fragment's kind (spec.cmdline.root) and Fragment
	// the fragment.
	Root     string `json:"root"`
	Fragment string `json:"fragment"`
}

// IGVMInfo describes podvm.igvm: its layout (pkg/igvm/linuxboot's
// Result, where the kernel, the command line and the initrd are in guest
// memory) and its ID block.
type IGVMInfo struct {
	// Layout is the IGVM layout kind (spec.igvm.layout.kind: "mshv",
	// igvmgen's, or "kvm").
	Layout       string                 `json:"layout"`
	Pages        int                    `json:"pages"`
	Policy       snp.GuestPolicy        `json:"policy"`
	BootProtocol string                 `json:"boot_protocol"`
	PrefAddress  hexnum.Uint64          `json:"pref_address"`
	InitSize     hexnum.Uint64          `json:"init_size"`
	KernelEntry  hexnum.Uint64          `json:"kernel_entry"`
	PayloadBytes int                    `json:"payload_bytes"`
	BootParams   hexnum.Uint64          `json:"boot_params"`
	Cmdline      hexnum.Uint64          `json:"cmdline_gpa"`
	CmdlineBytes int                    `json:"cmdline_bytes"`
	Ramdisk      hexnum.Uint64          `json:"ramdisk_gpa"`
	RamdiskSize  uint64                 `json:"ramdisk_size"`
	End          hexnum.Uint64          `json:"end"`
	E820         []bootparams.E820Entry `json:"e820"`
	ACPITables   []linuxboot.ACPITable  `json:"acpi_tables,omitempty"`
	VMSA         linuxboot.Registers    `json:"vmsa"`
	// IDBlockDigest is the launch digest of the file's SNP_ID_BLOCK (for
	// its igvm-mshv targets), nil without one; UnsignedSHA256 is then the
	// sha256 of the file before the block was added.
	IDBlockDigest  *snp.Digest `json:"id_block_digest,omitempty"`
	UnsignedSHA256 string      `json:"unsigned_sha256,omitempty"`
}

func igvmInfo(r *linuxboot.Result) IGVMInfo {
	return IGVMInfo{Layout: r.Layout.String(), Pages: r.Pages, Policy: r.Policy, BootProtocol: r.BootProtocol,
		PrefAddress: r.PrefAddress, InitSize: r.InitSize, KernelEntry: r.KernelEntry, PayloadBytes: r.PayloadBytes,
		BootParams: r.BootParams, Cmdline: r.Cmdline, CmdlineBytes: r.CmdlineBytes, Ramdisk: r.Ramdisk,
		RamdiskSize: r.RamdiskSize, End: r.End, E820: r.E820, ACPITables: r.ACPITables, VMSA: r.VMSA}
}

// RuntimeInfo describes the node payload (pkg/payload's Payload): the
// runtime handler that runs the image on a node, and the payload's files
// in the output directory.
type RuntimeInfo struct {
	// Handler is the runtime handler name; HandlerDigest the sha256 its
	// hex digits start, over HashedFiles (docs/node-payload.md).
	Handler       string               `json:"handler"`
	HandlerDigest string               `json:"handler_digest"`
	HashedFiles   []payload.HashedFile `json:"hashed_files"`
	// Target is the target the payload runs (spec.runtime.target),
	// Platform the handler name's platform part, Hypervisor Kata's
	// (clh or qemu).
	Target     string `json:"target"`
	Platform   string `json:"platform"`
	Hypervisor string `json:"hypervisor"`
	// InstallPrefix is the node directory the files go to.
	InstallPrefix string `json:"install_prefix"`
	// Files are the payload's files in the output directory (listed in
	// Outputs too).
	Files []string `json:"files"`
	// VMMemoryMiB is the guest memory, OverheadMemoryMiB and OverheadCPU
	// the RuntimeClass's overhead.podFixed.
	VMMemoryMiB       int64  `json:"vm_memory_mib"`
	OverheadMemoryMiB int64  `json:"overhead_memory_mib"`
	OverheadCPU       string `json:"overhead_cpu"`
}

// TargetInfo is one target's launch measurement.
type TargetInfo struct {
	Name     string          `json:"name"`
	Platform string          `json:"platform"`
	Profile  string          `json:"profile"`
	Policy   snp.GuestPolicy `json:"policy"`
	// Digests are the launch digests: one for igvm-mshv (independent of
	// the vCPU count and CPU model), one per CPU model and vCPU count for
	// igvm-kvm and qemu-ovmf.
	Digests []TargetDigest `json:"digests"`
	// Firmware is the OVMF image (qemu-ovmf), as the config writes it.
	Firmware string `json:"firmware,omitempty"`
	// HostKernel is the host Linux whose KVM builds the VMSAs (igvm-kvm).
	HostKernel    string        `json:"host_kernel,omitempty"`
	VMMType       string        `json:"vmm_type,omitempty"`
	GuestFeatures hexnum.Uint64 `json:"guest_features,omitempty"`
	// OVMFHash is the digest after the firmware pages (qemu-ovmf).
	OVMFHash *snp.Digest `json:"ovmf_hash,omitempty"`
	// KernelHashes are the SHA-256 of kernel, initrd and command line
	// that QEMU puts in the firmware's hashes page (qemu-ovmf).
	KernelHashes *KernelHashes `json:"kernel_hashes,omitempty"`
	// IDBlock is the target's ID block file, "" without one.
	IDBlock string `json:"id_block,omitempty"`
}

// KernelHashes are QEMU's kernel hashes.
type KernelHashes struct {
	Kernel  string `json:"kernel_sha256"`
	Initrd  string `json:"initrd_sha256"`
	Cmdline string `json:"cmdline_sha256"`
}

// TargetDigest is one launch digest of a target.
type TargetDigest struct {
	// CPU is the vCPU model as the config names it, CPUSignature its
	// CPUID(1).EAX and Product the AMD product (Milan, Genoa, ...); empty
	// where the digest does not depend on them.
	CPU          string        `json:"cpu,omitempty"`
	CPUSignature hexnum.Uint64 `json:"cpu_signature,omitempty"`
	Product      string        `json:"product,omitempty"`
	// VCPUs is the vCPU count, 0 where the digest does not depend on it.
	VCPUs  int        `json:"vcpus,omitempty"`
	Digest snp.Digest `json:"digest"`
}

// Output is one file of the output directory.
type Output struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}
