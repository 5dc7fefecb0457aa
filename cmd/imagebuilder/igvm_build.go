package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func init() { registerSub("igvm", newIgvmBuildCmd) }

type igvmBuildFlags struct {
	layout                  layoutFlag
	kernel, initrd, cmdline string
	acpiDir, acpiPages      string
	policy                  policyFlag
	kata                    bool
	pvalidateOpt            bool
	encryptedPage           bool
	svme                    bool
	output                  string
	json                    jsonFlag
	allowTruncated          bool
}

func newIgvmBuildCmd() *cobra.Command {
	f := igvmBuildFlags{policy: policyFlag{hexFlag{v: uint64(linuxboot.DefaultPolicy), set: true}}}
	cmd := &cobra.Command{
		Use:   "build --kernel bzImage [--initrd F] [--cmdline \"...\"] [--kata] [--layout mshv|kvm] -o podvm.igvm",
		Short: "Lay out a Linux bzImage, initrd and command line as an IGVM file for a direct SEV-SNP boot",
		Long: `Build an IGVM file that boots a Linux bzImage directly (64-bit entry) as an
SEV-SNP guest, with the same pages and launch digest as Microsoft
igvm-tooling's igvmgen (-boot_mode x64) makes for the same inputs: ACPI
tables at 0xE0000/0x100000, the CPUID, secrets and parameter pages at
0x800000, the VMSA at 0x803000, the kernel at its pref_address, then page
tables, GDT, boot_params with the command line and e820, the initrd and the
SEV cc_blob. No ID block is added (see "igvm sign"). Identical inputs give
identical bytes.

--layout names the hypervisor loader the file is for:

  mshv  (default) igvmgen's layout above, for cloud-hypervisor on
        Microsoft's hypervisor; its mshv digest equals igvmgen's.
  kvm   for QEMU >= 10.1 (-object igvm-cfg) on KVM (host >= 6.11): the same
        guest memory without the parameter page, and vCPU 0's VP context
        last, at 0xFFFFFFFFF000, holding exactly the register values KVM
        measures (EFER.SVME, CR0.ET, CR4.MCE, TR.base = LDTR.base, x87
        FCW 0x37f and MXCSR 0x1f80, sev_features 0x1), so "igvm inspect"
        shows the measured VMSA. It satisfies the kvm profile of "measure"
        with no override. The kvm digests follow the QEMU and Linux sources;
        no attestation report has confirmed them yet.

The kernel's setup header is checked first (boot protocol 2.12 or later,
64-bit entry, pref_address above 3 MiB, init_size, cmdline_size,
initrd_addr_max, and a file as long as its syssize says); a kernel that
cannot boot this way is refused with the reason.

--kata sets the layout options Kata Containers and Contrast use for a pod
VM: --pvalidate-opt --encrypted-page --svme (igvmgen's -pvalidate_opt 1
-encrypted_page 1 -svme 1).

ACPI tables come from --acpi-dir (compiled .aml files: RSDP, XSDT, FACP,
DSDT and optionally FACS, APIC, MCFG, TPM2, TCPA, OEM0), from --acpi-pages
(a pages file: records of a u64 GPA and 4096 bytes), or, with neither, from
igvm-tooling's built-in default tables.

The file is written sequentially: -o - writes it to stdout (the summary
line then goes to stderr).`,
		Example: `  imagebuilder igvm build --kernel vmlinuz --initrd initrd.img \
    --cmdline "console=ttyS0 panic=-1" --acpi-dir acpi-clh --kata -o podvm.igvm`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIgvmBuild(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.Var(&f.layout, "layout", "the hypervisor loader the layout is for: mshv (igvmgen's, default) or kvm (QEMU >= 10.1 on KVM)")
	fl.StringVar(&f.kernel, "kernel", "", "bzImage to boot")
	fl.StringVar(&f.initrd, "initrd", "", "initial ramdisk (optional)")
	fl.StringVar(&f.cmdline, "cmdline", "", "kernel command line")
	fl.StringVar(&f.acpiDir, "acpi-dir", "", "directory of compiled ACPI tables (*.aml)")
	fl.StringVar(&f.acpiPages, "acpi-pages", "", "file of ready ACPI pages ([u64 GPA][4096 bytes] records)")
	fl.Var(&f.policy, "policy", "SEV-SNP guest policy, 0x-prefixed hex or decimal")
	fl.BoolVar(&f.kata, "kata", false, "the Kata Containers settings: --pvalidate-opt --encrypted-page --svme")
	fl.BoolVar(&f.pvalidateOpt, "pvalidate-opt", false, "emit only the kernel pages startup_32 touches (igvmgen -pvalidate_opt 1)")
	fl.BoolVar(&f.encryptedPage, "encrypted-page", false, "set the C-bit (bit 51) in the page tables and CR3 (igvmgen -encrypted_page 1)")
	fl.BoolVar(&f.svme, "svme", false, "set EFER.SVME (igvmgen -svme 1)")
	addOutputFlag(cmd, &f.output, "IGVM file to write, - for stdout", false)
	addJSONFlag(cmd, &f.json)
	fl.BoolVar(&f.allowTruncated, "allow-truncated", false, "accept a kernel file shorter than its syssize says (igvm-tooling's test_bzImage; such a kernel cannot boot)")
	_ = fl.MarkHidden("allow-truncated")
	completeValues(cmd, "layout", "mshv", "kvm")
	requiredFlag(cmd, "kernel")
	requiredFlag(cmd, "output")
	return cmd
}

// igvmBuildResult is what --json prints: the output's name and what
// linuxboot.Image.Write describes.
type igvmBuildResult struct {
	Output string `json:"output"`
	*linuxboot.Result
}

func runIgvmBuild(cmd *cobra.Command, f *igvmBuildFlags) error {
	if err := checkRequired(cmd, "kernel", "output"); err != nil {
		return err
	}
	if err := checkOutputPath(cmd, f.output, true); err != nil {
		return err
	}
	if f.acpiDir != "" && f.acpiPages != "" {
		return usagef("%s: --acpi-dir and --acpi-pages exclude each other", cmd.CommandPath())
	}
	if f.output == "-" && f.json.toStdout() {
		return usagef("%s: -o - and --json both write to stdout; give --json=FILE", cmd.CommandPath())
	}
	if f.kata {
		for _, name := range []string{"pvalidate-opt", "encrypted-page", "svme"} {
			if flagChanged(cmd, name) {
				return usagef("%s: --kata already sets --%s", cmd.CommandPath(), name)
			}
		}
	}
	ctx := cmd.Context()

	kdata, err := os.ReadFile(f.kernel)
	if err != nil {
		return commandErr(cmd, "--kernel "+f.kernel, err)
	}
	k, err := linuxboot.BzImageOptions{AllowTruncated: f.allowTruncated}.Parse(kdata)
	if err != nil {
		return commandErr(cmd, "--kernel "+f.kernel, err)
	}
	opts := linuxboot.Options{
		Layout:        f.layout.v,
		Cmdline:       f.cmdline,
		Policy:        snp.GuestPolicy(f.policy.v),
		PvalidateOpt:  f.pvalidateOpt,
		EncryptedPage: f.encryptedPage,
		SVME:          f.svme,
	}
	if f.kata {
		kata := linuxboot.Kata()
		opts.PvalidateOpt, opts.EncryptedPage, opts.SVME = kata.PvalidateOpt, kata.EncryptedPage, kata.SVME
	}
	if f.initrd != "" {
		if opts.Initrd, err = os.ReadFile(f.initrd); err != nil {
			return commandErr(cmd, "--initrd "+f.initrd, err)
		}
	}
	switch {
	case f.acpiDir != "":
		if opts.ACPI, err = linuxboot.ACPIFromDir(f.acpiDir); err != nil {
			return commandErr(cmd, "--acpi-dir "+f.acpiDir, err)
		}
	case f.acpiPages != "":
		if opts.ACPI, err = linuxboot.ReadACPIPagesFile(f.acpiPages); err != nil {
			return commandErr(cmd, "--acpi-pages "+f.acpiPages, err)
		}
	}
	img, err := linuxboot.Build(ctx, k, opts)
	if err != nil {
		return commandErr(cmd, buildErrSubject(f, err), err)
	}

	// The IGVM file (or stdout) and the JSON file are published together.
	var set atomicfile.Set
	defer set.Abort()
	var w io.Writer = cmd.OutOrStdout()
	summary := cmd.OutOrStdout()
	if f.output == "-" {
		summary = cmd.ErrOrStderr()
	} else {
		out, err := set.Create(f.output, 0o644)
		if err != nil {
			return commandErr(cmd, f.output, err)
		}
		w = out
	}
	writeJSON, err := f.json.stage(&set)
	if err != nil {
		return commandErr(cmd, "--json", err)
	}
	res, err := img.Write(ctx, w)
	if err != nil {
		return commandErr(cmd, f.output, err)
	}
	result := igvmBuildResult{Output: f.output, Result: res}
	if err := writeJSON(result); err != nil {
		return commandErr(cmd, "--json", err)
	}
	if err := set.Commit(); err != nil {
		return commandErr(cmd, f.output, err)
	}
	if f.json.toStdout() {
		return printJSON(cmd.OutOrStdout(), result)
	}
	initrd := ""
	if f.initrd != "" {
		initrd = fmt.Sprintf("initrd %d bytes", res.RamdiskSize)
	}
	printSummary(summary, f.output, res.Size, res.SHA256, "layout "+res.Layout.String(), fmt.Sprintf("%d pages", res.Pages),
		"kernel protocol "+res.BootProtocol, fmt.Sprintf("cmdline %d bytes", res.CmdlineBytes), initrd, "policy "+hexnum.Uint64(res.Policy).String())
	return nil
}

// layoutFlag is --layout: a linuxboot layout kind.
type layoutFlag struct{ v linuxboot.LayoutKind }

func (l *layoutFlag) String() string { return l.v.String() }
func (l *layoutFlag) Type() string   { return "mshv|kvm" }
func (l *layoutFlag) Set(s string) error {
	v, err := linuxboot.ParseLayoutKind(s)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "linuxboot: "))
	}
	l.v = v
	return nil
}

// buildErrSubject names the flag (and file) a layout error is about.
func buildErrSubject(f *igvmBuildFlags, err error) string {
	var le *linuxboot.LayoutError
	if !errors.As(err, &le) {
		return "--kernel " + f.kernel
	}
	switch le.Field {
	case "Cmdline":
		return "--cmdline"
	case "Initrd":
		return "--initrd " + f.initrd
	case "ACPI":
		if f.acpiDir != "" {
			return "--acpi-dir " + f.acpiDir
		}
		return "--acpi-pages " + f.acpiPages
	case "Policy":
		return "--policy"
	}
	return "--kernel " + f.kernel
}
