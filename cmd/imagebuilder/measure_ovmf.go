package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

func init() { registerSub("measure", newMeasureOVMFCmd) }

// ovmfFlags are the flags of "measure ovmf", named as sev-snp-measure names
// them.
type ovmfFlags struct {
	mode, ovmf, kernel, initrd, appendLine string
	vcpus                                  int
	vcpuType, vcpuSig                      string
	vcpuFamily, vcpuModel, vcpuStepping    int
	guestFeatures, vmmType, outputFormat   string
	ovmfHash                               string
	asJSON, explain                        bool
}

func newMeasureOVMFCmd() *cobra.Command {
	var fl ovmfFlags
	cmd := &cobra.Command{
		Use:   "ovmf --ovmf OVMF.fd --vcpus N --vcpu-type TYPE [--kernel K --initrd I --append CMDLINE]",
		Short: "Print the SEV-SNP launch digest of an OVMF boot (QEMU, EC2, GCE)",
		Long: `ovmf prints the SEV-SNP launch digest of a guest booted from an OVMF
firmware, optionally with a measured direct kernel boot (QEMU -kernel, -initrd,
-append with kernel hashes), exactly as virtee sev-snp-measure 0.0.13 computes
it (--mode snp):

  1. the firmware pages (the image ends at 4 GiB), as NORMAL pages;
  2. the sections of the firmware's SEV metadata in table order: SNP_SEC_MEM
     as ZERO pages (UNMEASURED under gce), the SECRETS and CPUID pages (ec2
     measures CPUID after all other sections), the kernel-hashes page
     (SHA-256 of kernel, initrd and command line plus NUL, in QEMU's GUID
     table; a ZERO page without --kernel), SVSM_CAA as ZERO pages;
  3. one VMSA per vCPU: vCPU 0 at the reset vector, the others at the AP
     entry point of the firmware's SEV-ES reset block.

The vCPU model matters for QEMU only (its CPUID signature is in RDX): give
--vcpu-type (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin and
their -vN aliases, or milan/genoa/...), --vcpu-sig, or --vcpu-family,
--vcpu-model and --vcpu-stepping. --guest-features is the VMSA's sev_features:
0x1 for host kernels other than 6.6/6.7 with debug-swap (0x21). The VMSA is
the one KVM builds on host kernels 6.10 and newer (KVM_SEV_INIT2).

A kernel needs a firmware with an SNP_KERNEL_HASHES section (edk2 AmdSevX64
builds; Debian's OVMF.fd has none). A firmware without SEV metadata cannot
boot an SNP guest: its digest is printed with a warning.

--mode snp:ovmf-hash prints only the digest after the firmware pages, which
--snp-ovmf-hash takes back to skip re-hashing the firmware.`,
		Example: `  imagebuilder measure ovmf --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan
  imagebuilder measure ovmf --ovmf OVMF.amdsev.fd --kernel vmlinuz --initrd initrd.img \
      --append 'console=ttyS0' --vcpus 2 --vcpu-type EPYC-Genoa --guest-features 0x1 --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runMeasureOVMF(cmd, &fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.mode, "mode", "snp", "snp (the launch digest) or snp:ovmf-hash (only the firmware part)")
	f.StringVar(&fl.ovmf, "ovmf", "", "OVMF firmware image (required)")
	f.StringVar(&fl.kernel, "kernel", "", "kernel given to QEMU with -kernel (hashed as is)")
	f.StringVar(&fl.initrd, "initrd", "", "initrd given with -initrd (needs --kernel)")
	f.StringVar(&fl.appendLine, "append", "", "kernel command line given with -append (needs --kernel)")
	f.IntVar(&fl.vcpus, "vcpus", 0, "number of vCPUs, 1 to 512 (required for --mode snp)")
	f.StringVar(&fl.vcpuType, "vcpu-type", "", "QEMU CPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa")
	f.StringVar(&fl.vcpuSig, "vcpu-sig", "", "vCPU CPUID(1).EAX signature, e.g. 0xa10f10")
	f.IntVar(&fl.vcpuFamily, "vcpu-family", 0, "vCPU family (with --vcpu-model and --vcpu-stepping)")
	f.IntVar(&fl.vcpuModel, "vcpu-model", 0, "vCPU model")
	f.IntVar(&fl.vcpuStepping, "vcpu-stepping", 0, "vCPU stepping")
	f.StringVar(&fl.guestFeatures, "guest-features", "0x1", "guest SEV features in the VMSA (sev_features)")
	f.StringVar(&fl.vmmType, "vmm-type", "QEMU", "VMM that launches the guest: QEMU, ec2 or gce")
	f.StringVar(&fl.outputFormat, "output-format", "hex", "digest output format: hex or base64")
	f.StringVar(&fl.ovmfHash, "snp-ovmf-hash", "", "precomputed firmware digest (from --mode snp:ovmf-hash) to start from")
	f.BoolVar(&fl.asJSON, "json", false, "print a JSON object with the digest, inputs and measured regions")
	f.BoolVar(&fl.explain, "explain", false, "list the measured regions in order with the digest after each")
	return cmd
}

// ovmfResult is the --json output of "measure ovmf".
type ovmfResult struct {
	Digest        string            `json:"digest"`
	OVMFHash      string            `json:"ovmf_hash"`
	VCPUs         int               `json:"vcpus,omitempty"`
	VCPUSignature string            `json:"vcpu_signature,omitempty"`
	GuestFeatures string            `json:"guest_features,omitempty"`
	VMMType       string            `json:"vmm_type,omitempty"`
	KernelHashes  *ovmfKernelHashes `json:"kernel_hashes,omitempty"`
	Warnings      []string          `json:"warnings,omitempty"`
	Regions       []measure.Region  `json:"regions,omitempty"`
}

type ovmfKernelHashes struct {
	Kernel  string `json:"kernel_sha256"`
	Initrd  string `json:"initrd_sha256"`
	Cmdline string `json:"cmdline_sha256"`
}

func runMeasureOVMF(cmd *cobra.Command, fl *ovmfFlags) error {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if fl.ovmf == "" {
		return usagef("measure ovmf: --ovmf is required")
	}
	if fl.outputFormat != "hex" && fl.outputFormat != "base64" {
		return usagef("measure ovmf --output-format %q: want hex or base64", fl.outputFormat)
	}
	format := func(d measure.Digest) string {
		if fl.outputFormat == "base64" {
			return base64.StdEncoding.EncodeToString(d[:])
		}
		return d.String()
	}
	switch fl.mode {
	case "snp", "snp:ovmf-hash":
	default:
		return usagef("measure ovmf --mode %q: want snp or snp:ovmf-hash", fl.mode)
	}
	fw, err := measure.ReadOVMF(fl.ovmf)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if fl.mode == "snp:ovmf-hash" {
		h, err := measure.OVMFHash(fw)
		if err != nil {
			return fmt.Errorf("%s: %w", fl.ovmf, err)
		}
		if fl.asJSON {
			return ovmfWriteJSON(out, ovmfResult{Digest: h.String(), OVMFHash: h.String()})
		}
		fmt.Fprintln(out, format(h))
		return nil
	}

	if !set("vcpus") {
		return usagef("measure ovmf: missing --vcpus N")
	}
	if fl.vcpus < 1 || fl.vcpus > measure.MaxVCPUs {
		return usagef("measure ovmf --vcpus %d: want 1 to %d", fl.vcpus, measure.MaxVCPUs)
	}
	vmm, err := measure.ParseVMMType(fl.vmmType)
	if err != nil {
		return usagef("measure ovmf --vmm-type: %v", err)
	}
	gf, err := strconv.ParseUint(fl.guestFeatures, 0, 64)
	if err != nil {
		return usagef("measure ovmf --guest-features %q: want a number such as 0x1", fl.guestFeatures)
	}
	sig, haveSig, err := ovmfVCPUSig(cmd, fl)
	if err != nil {
		return err
	}
	if vmm == measure.VMMQEMU && !haveSig {
		return usagef("measure ovmf: missing --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping (QEMU puts the vCPU signature in the VMSA)")
	}
	if fl.kernel == "" && (fl.initrd != "" || fl.appendLine != "") {
		return usagef("measure ovmf: --initrd and --append need --kernel")
	}
	cfg := measure.OVMFConfig{VCPUs: fl.vcpus, VCPUSig: sig, GuestFeatures: gf, VMM: vmm}
	if fl.ovmfHash != "" {
		d, err := measure.ParseDigest(fl.ovmfHash)
		if err != nil {
			return usagef("measure ovmf --snp-ovmf-hash: %v", err)
		}
		cfg.OVMFHash = &d
	}
	res := ovmfResult{VCPUs: fl.vcpus, GuestFeatures: fmt.Sprintf("%#x", gf), VMMType: vmm.String()}
	if vmm == measure.VMMQEMU {
		res.VCPUSignature = fmt.Sprintf("%#x", sig)
	}
	if fl.kernel != "" {
		if !fw.HasSection(measure.SectionSNPKernelHashes) {
			return fmt.Errorf("%s: %w", fl.ovmf, measure.ErrNoKernelHashesSection)
		}
		kh, err := ovmfHashKernelFiles(fl.kernel, fl.initrd, fl.appendLine)
		if err != nil {
			return err
		}
		cfg.Kernel = &kh
		res.KernelHashes = &ovmfKernelHashes{
			Kernel:  hex.EncodeToString(kh.Kernel[:]),
			Initrd:  hex.EncodeToString(kh.Initrd[:]),
			Cmdline: hex.EncodeToString(kh.Cmdline[:]),
		}
	}
	m, err := measure.MeasureOVMF(fw, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", fl.ovmf, err)
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(os.Stderr, "imagebuilder: warning: %s: %s\n", fl.ovmf, w)
	}
	res.Digest, res.OVMFHash, res.Warnings = m.Digest.String(), m.OVMFHash.String(), m.Warnings
	if fl.asJSON {
		if fl.explain {
			res.Regions = m.Regions
		}
		return ovmfWriteJSON(out, res)
	}
	if fl.explain {
		fmt.Fprintf(out, "%-20s %7s  %-10s %-98s %s\n", "GPA", "pages", "type", "digest after", "what")
		for _, r := range m.Regions {
			fmt.Fprintf(out, "%#-20x %7d  %-10s %-98s %s\n", r.GPA, r.Pages, r.Type, r.Digest, r.What)
		}
	}
	fmt.Fprintln(out, format(m.Digest))
	return nil
}

// ovmfVCPUSig picks the vCPU signature from the CPU flags; more than one
// way of giving it is a usage error.
func ovmfVCPUSig(cmd *cobra.Command, fl *ovmfFlags) (sig uint32, ok bool, err error) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	fms := set("vcpu-family") || set("vcpu-model") || set("vcpu-stepping")
	n := 0
	for _, b := range []bool{set("vcpu-type"), set("vcpu-sig"), fms} {
		if b {
			n++
		}
	}
	if n > 1 {
		return 0, false, usagef("measure ovmf: give the vCPU as one of --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping")
	}
	switch {
	case set("vcpu-type"):
		m, err := measure.LookupCPU(fl.vcpuType)
		if err != nil {
			return 0, false, usagef("measure ovmf --vcpu-type: %v", err)
		}
		return m.Signature, true, nil
	case set("vcpu-sig"):
		v, err := strconv.ParseUint(fl.vcpuSig, 0, 32)
		if err != nil {
			return 0, false, usagef("measure ovmf --vcpu-sig %q: want a 32-bit number such as 0xa10f10", fl.vcpuSig)
		}
		return uint32(v), true, nil
	case fms:
		if !set("vcpu-family") || !set("vcpu-model") || !set("vcpu-stepping") {
			return 0, false, usagef("measure ovmf: --vcpu-family, --vcpu-model and --vcpu-stepping go together")
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"family", fl.vcpuFamily}, {"model", fl.vcpuModel}, {"stepping", fl.vcpuStepping}} {
			if f.v < 0 {
				return 0, false, usagef("measure ovmf --vcpu-%s %d: out of range", f.name, f.v)
			}
		}
		return measure.CPUSignature(uint32(fl.vcpuFamily), uint32(fl.vcpuModel), uint32(fl.vcpuStepping)), true, nil
	}
	return 0, false, nil
}

// ovmfHashKernelFiles streams the kernel and initrd through SHA-256.
func ovmfHashKernelFiles(kernel, initrd, cmdline string) (measure.KernelHashes, error) {
	k, err := os.Open(kernel)
	if err != nil {
		return measure.KernelHashes{}, err
	}
	defer k.Close()
	if initrd == "" {
		return measure.HashKernel(k, nil, cmdline)
	}
	i, err := os.Open(initrd)
	if err != nil {
		return measure.KernelHashes{}, err
	}
	defer i.Close()
	return measure.HashKernel(k, i, cmdline)
}

// ovmfWriteJSON prints v as indented JSON with a final newline.
func ovmfWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
