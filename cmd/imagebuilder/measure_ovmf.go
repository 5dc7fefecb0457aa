package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func init() { registerSub("measure", newMeasureOVMFCmd) }

// ovmfFlags are the flags of "measure ovmf". The names of sev-snp-measure
// are accepted too, so its command lines work verbatim; --vcpu-type,
// --vcpu-sig and --vcpu-family/--vcpu-model/--vcpu-stepping are hidden
// aliases of --cpu.
type ovmfFlags struct {
	mode, ovmf, kernel, initrd, appendLine string
	vcpus                                  vcpusFlag
	cpu                                    cpusFlag
	vcpuType, vcpuSig                      string
	vcpuFamily, vcpuModel, vcpuStepping    int
	guestFeatures                          hexFlag
	vmmType, outputFormat                  string
	ovmfHash                               string
	json                                   jsonFlag
	explain                                bool
}

func newMeasureOVMFCmd() *cobra.Command {
	fl := ovmfFlags{guestFeatures: hexFlag{v: 1, set: true}}
	cmd := &cobra.Command{
		Use:   "ovmf --ovmf OVMF.fd --vcpus N[,N...] --cpu MODEL [--kernel K --initrd I --append CMDLINE]",
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

--vcpus takes a list: one digest is printed per count ("N vCPUs: DIGEST"
lines when there are several; with --json an array).

The vCPU model matters for QEMU only (its CPUID signature is in RDX): give
--cpu (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin and
their -vN aliases, milan/genoa/..., or a signature 0xa10f10).
sev-snp-measure's --vcpu-type, --vcpu-sig and --vcpu-family, --vcpu-model,
--vcpu-stepping are accepted for its command lines. --guest-features is the
VMSA's sev_features: 0x1 for host kernels other than 6.6/6.7 with
debug-swap (0x21). The VMSA is the one KVM builds on host kernels 6.10 and
newer (KVM_SEV_INIT2).

A kernel needs a firmware with an SNP_KERNEL_HASHES section (edk2 AmdSevX64
builds; Debian's OVMF.fd has none). A firmware without SEV metadata cannot
boot an SNP guest: its digest is printed with a warning.

--mode snp:ovmf-hash prints only the digest after the firmware pages, which
--snp-ovmf-hash takes back to skip re-hashing the firmware.`,
		Example: `  imagebuilder measure ovmf --ovmf OVMF.fd --vcpus 4 --cpu EPYC-Milan
  imagebuilder measure ovmf --ovmf OVMF.amdsev.fd --kernel vmlinuz --initrd initrd.img \
      --append 'console=ttyS0' --vcpus 1,2,4 --cpu genoa --guest-features 0x1 --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runMeasureOVMF(cmd, &fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.mode, "mode", "snp", "snp (the launch digest) or snp:ovmf-hash (only the firmware part)")
	f.StringVar(&fl.ovmf, "ovmf", "", "OVMF firmware image")
	f.StringVar(&fl.kernel, "kernel", "", "kernel given to QEMU with -kernel (hashed as is)")
	f.StringVar(&fl.initrd, "initrd", "", "initrd given with -initrd (needs --kernel)")
	f.StringVar(&fl.appendLine, "append", "", "kernel command line given with -append (needs --kernel)")
	f.Var(&fl.vcpus, "vcpus", "vCPU counts, 1 to 512, comma separated (required for --mode snp)")
	f.Var(&fl.cpu, "cpu", "vCPU model (QEMU): EPYC-v4, EPYC-Milan, genoa, ... or 0xSIGNATURE")
	f.StringVar(&fl.vcpuType, "vcpu-type", "", "sev-snp-measure's name of --cpu")
	f.StringVar(&fl.vcpuSig, "vcpu-sig", "", "sev-snp-measure's vCPU CPUID(1).EAX signature, e.g. 0xa10f10")
	f.IntVar(&fl.vcpuFamily, "vcpu-family", 0, "sev-snp-measure's vCPU family (with --vcpu-model and --vcpu-stepping)")
	f.IntVar(&fl.vcpuModel, "vcpu-model", 0, "sev-snp-measure's vCPU model")
	f.IntVar(&fl.vcpuStepping, "vcpu-stepping", 0, "sev-snp-measure's vCPU stepping")
	for _, name := range []string{"vcpu-type", "vcpu-sig", "vcpu-family", "vcpu-model", "vcpu-stepping"} {
		_ = f.MarkHidden(name)
	}
	f.Var(&fl.guestFeatures, "guest-features", "guest SEV features in the VMSA (sev_features), 0x-prefixed hex or decimal")
	f.StringVar(&fl.vmmType, "vmm-type", "QEMU", "VMM that launches the guest: QEMU, ec2 or gce")
	f.StringVar(&fl.outputFormat, "output-format", "hex", "digest output format: hex or base64")
	f.StringVar(&fl.ovmfHash, "snp-ovmf-hash", "", "precomputed firmware digest (from --mode snp:ovmf-hash) to start from")
	addJSONFlag(cmd, &fl.json)
	f.BoolVar(&fl.explain, "explain", false, "list the measured regions in order with the digest after each")
	requiredFlag(cmd, "ovmf")
	completeValues(cmd, "mode", "snp", "snp:ovmf-hash")
	completeValues(cmd, "vmm-type", "QEMU", "ec2", "gce")
	completeValues(cmd, "output-format", "hex", "base64")
	completeValues(cmd, "cpu", cpuCompletions()...)
	completeValues(cmd, "vcpu-type", cpuCompletions()...)
	return cmd
}

func runMeasureOVMF(cmd *cobra.Command, fl *ovmfFlags) error {
	name := cmd.CommandPath()
	if err := checkRequired(cmd, "ovmf"); err != nil {
		return err
	}
	if fl.outputFormat != "hex" && fl.outputFormat != "base64" {
		return usagef("%s: --output-format %q: want hex or base64", name, fl.outputFormat)
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
		return usagef("%s: --mode %q: want snp or snp:ovmf-hash", name, fl.mode)
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if fl.mode == "snp:ovmf-hash" {
		for _, flag := range []string{"vcpus", "cpu", "vcpu-type", "vcpu-sig", "vcpu-family", "vcpu-model", "vcpu-stepping",
			"kernel", "initrd", "append", "guest-features", "vmm-type", "snp-ovmf-hash", "explain"} {
			if flagChanged(cmd, flag) {
				return usagef("%s: --%s has no effect with --mode snp:ovmf-hash (the digest of the firmware pages alone)", name, flag)
			}
		}
		fw, err := readOVMF(cmd, fl.ovmf)
		if err != nil {
			return err
		}
		h, err := measure.OVMFHash(ctx, fw)
		if err != nil {
			return commandErr(cmd, fl.ovmf, err)
		}
		doc := &measure.OVMFMeasurement{Digest: h, OVMFHash: h}
		if err := writeJSONFile(cmd, &fl.json, doc); err != nil {
			return err
		}
		if fl.json.toStdout() {
			return printJSON(out, doc)
		}
		fmt.Fprintln(out, format(h))
		return nil
	}

	if !flagChanged(cmd, "vcpus") {
		return usagef("%s: missing --vcpus N", name)
	}
	vmm, err := measure.ParseVMMType(fl.vmmType)
	if err != nil {
		return usagef("%s: --vmm-type: %v", name, err)
	}
	sig, haveSig, err := ovmfVCPUSig(cmd, fl)
	if err != nil {
		return err
	}
	if vmm == measure.VMMQEMU && !haveSig {
		return usagef("%s: missing --cpu MODEL (QEMU puts the vCPU signature in the VMSA)", name)
	}
	if fl.kernel == "" && (fl.initrd != "" || fl.appendLine != "") {
		return usagef("%s: --initrd and --append need --kernel", name)
	}
	cfg := measure.OVMFConfig{VCPUSig: sig, GuestFeatures: fl.guestFeatures.v, VMM: vmm, Explain: fl.explain}
	if fl.ovmfHash != "" {
		d, err := snp.ParseDigest(fl.ovmfHash)
		if err != nil {
			return usagef("%s: --snp-ovmf-hash: %v", name, err)
		}
		cfg.OVMFHash = &d
	}
	fw, err := readOVMF(cmd, fl.ovmf)
	if err != nil {
		return err
	}
	if fl.kernel != "" {
		if !fw.HasSection(measure.SectionSNPKernelHashes) {
			return commandErr(cmd, fl.ovmf, measure.ErrNoKernelHashesSection)
		}
		kh, err := ovmfHashKernelFiles(cmd, fl.kernel, fl.initrd, fl.appendLine)
		if err != nil {
			return err
		}
		cfg.Kernel = &kh
	}
	var results []*measure.OVMFMeasurement
	for _, n := range fl.vcpus.counts {
		cfg.VCPUs = n
		m, err := measure.MeasureOVMF(ctx, fw, cfg)
		if err != nil {
			return commandErr(cmd, fl.ovmf, err)
		}
		results = append(results, m)
	}
	for _, w := range results[0].Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "imagebuilder: warning: measure ovmf: %s: %s\n", fl.ovmf, w)
	}
	var doc any = results
	if len(results) == 1 {
		doc = results[0]
	}
	if err := writeJSONFile(cmd, &fl.json, doc); err != nil {
		return err
	}
	if fl.json.toStdout() {
		return printJSON(out, doc)
	}
	for _, m := range results {
		if fl.explain {
			fmt.Fprintf(out, "%-20s %7s  %-10s %-98s %s\n", "GPA", "pages", "type", "digest after", "what")
			for _, r := range m.Regions {
				fmt.Fprintf(out, "%#-20x %7d  %-10s %-98s %s\n", uint64(r.GPA), r.Pages, r.Type, r.Digest, r.What)
			}
		}
		if len(results) > 1 {
			fmt.Fprintf(out, "%d vCPU%s: %s\n", m.VCPUs, plural(m.VCPUs), format(m.Digest))
		} else {
			fmt.Fprintln(out, format(m.Digest))
		}
	}
	return nil
}

// readOVMF reads the firmware; errors name the command and the file.
func readOVMF(cmd *cobra.Command, path string) (*measure.OVMF, error) {
	fw, err := measure.ReadOVMF(path)
	if err != nil {
		return nil, commandErr(cmd, path, err)
	}
	return fw, nil
}

// ovmfVCPUSig picks the vCPU signature from --cpu or its sev-snp-measure
// spellings; more than one way of giving it is a usage error.
func ovmfVCPUSig(cmd *cobra.Command, fl *ovmfFlags) (sig uint32, ok bool, err error) {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	name := cmd.CommandPath()
	fms := set("vcpu-family") || set("vcpu-model") || set("vcpu-stepping")
	n := 0
	for _, b := range []bool{set("cpu"), set("vcpu-type"), set("vcpu-sig"), fms} {
		if b {
			n++
		}
	}
	if n > 1 {
		return 0, false, usagef("%s: give the vCPU as one of --cpu, --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping", name)
	}
	switch {
	case set("cpu"):
		m, err := fl.cpu.one(cmd)
		if err != nil {
			return 0, false, err
		}
		return m.Signature, true, nil
	case set("vcpu-type"):
		m, err := measure.LookupCPU(fl.vcpuType)
		if err != nil {
			return 0, false, usagef("%s: --vcpu-type: %v", name, err)
		}
		return m.Signature, true, nil
	case set("vcpu-sig"):
		v, err := strconv.ParseUint(fl.vcpuSig, 0, 32)
		if err != nil {
			return 0, false, usagef("%s: --vcpu-sig %q: want a 32-bit number such as 0xa10f10", name, fl.vcpuSig)
		}
		return uint32(v), true, nil
	case fms:
		if !set("vcpu-family") || !set("vcpu-model") || !set("vcpu-stepping") {
			return 0, false, usagef("%s: --vcpu-family, --vcpu-model and --vcpu-stepping go together", name)
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"family", fl.vcpuFamily}, {"model", fl.vcpuModel}, {"stepping", fl.vcpuStepping}} {
			if f.v < 0 || f.v > 0xff {
				return 0, false, usagef("%s: --vcpu-%s %d: out of range", name, f.name, f.v)
			}
		}
		return measure.CPUSignature(uint32(fl.vcpuFamily), uint32(fl.vcpuModel), uint32(fl.vcpuStepping)), true, nil
	}
	return 0, false, nil
}

// ovmfHashKernelFiles streams the kernel and initrd through SHA-256.
func ovmfHashKernelFiles(cmd *cobra.Command, kernel, initrd, cmdline string) (measure.KernelHashes, error) {
	k, err := os.Open(kernel)
	if err != nil {
		return measure.KernelHashes{}, commandErr(cmd, "--kernel "+kernel, err)
	}
	defer k.Close()
	var kh measure.KernelHashes
	if initrd == "" {
		kh, err = measure.HashKernel(cmd.Context(), k, nil, cmdline)
	} else {
		i, err := os.Open(initrd)
		if err != nil {
			return measure.KernelHashes{}, commandErr(cmd, "--initrd "+initrd, err)
		}
		defer i.Close()
		kh, err = measure.HashKernel(cmd.Context(), k, i, cmdline)
		if err != nil {
			return measure.KernelHashes{}, commandErr(cmd, "--initrd "+initrd, err)
		}
		return kh, nil
	}
	if err != nil {
		return measure.KernelHashes{}, commandErr(cmd, "--kernel "+kernel, err)
	}
	return kh, nil
}
