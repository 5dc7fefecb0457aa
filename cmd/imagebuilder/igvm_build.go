package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func init() { registerSub("igvm", newIgvmBuildCmd) }

type igvmBuildFlags struct {
	kernel, initrd, cmdline string
	acpiDir, acpiPages      string
	policy                  string
	pvalidateOpt            bool
	encryptedPage           bool
	svme                    bool
	output                  string
	json                    bool
	allowEmptyPayload       bool
}

func newIgvmBuildCmd() *cobra.Command {
	var f igvmBuildFlags
	cmd := &cobra.Command{
		Use:   "build --kernel bzImage [--initrd F] --cmdline \"...\" -o podvm.igvm",
		Short: "Lay out a Linux bzImage, initrd and command line as an IGVM file for a direct SEV-SNP boot",
		Long: `Build an IGVM file that boots a Linux bzImage directly (64-bit entry) as an
SEV-SNP guest, with the same pages and launch digest as Microsoft
igvm-tooling's igvmgen (-boot_mode x64) makes for the same inputs: ACPI
tables at 0xE0000/0x100000, the CPUID, secrets and parameter pages at
0x800000, the VMSA at 0x803000, the kernel at its pref_address, then page
tables, GDT, boot_params with the command line and e820, the initrd and the
SEV cc_blob. No ID block is added. Identical inputs give identical bytes.

ACPI tables come from --acpi-dir (compiled .aml files: RSDP, XSDT, FACP,
DSDT and optionally FACS, APIC, MCFG, TPM2, TCPA, OEM0), from --acpi-pages
(a pages file: records of a u64 GPA and 4096 bytes), or, with neither, from
igvm-tooling's built-in default tables.`,
		Example: `  imagebuilder igvm build --kernel vmlinuz --initrd initrd.img \
    --cmdline "console=ttyS0 panic=-1" --acpi-dir acpi-clh \
    --pvalidate-opt --encrypted-page --svme -o podvm.igvm`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIgvmBuild(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kernel, "kernel", "", "bzImage to boot (required)")
	fl.StringVar(&f.initrd, "initrd", "", "initial ramdisk (optional)")
	fl.StringVar(&f.cmdline, "cmdline", "", "kernel command line")
	fl.StringVar(&f.acpiDir, "acpi-dir", "", "directory of compiled ACPI tables (*.aml)")
	fl.StringVar(&f.acpiPages, "acpi-pages", "", "file of ready ACPI pages ([u64 GPA][4096 bytes] records)")
	fl.StringVar(&f.policy, "policy", "0x3001f", "SEV-SNP guest policy")
	fl.BoolVar(&f.pvalidateOpt, "pvalidate-opt", false, "emit only the kernel pages startup_32 touches (igvmgen -pvalidate_opt 1)")
	fl.BoolVar(&f.encryptedPage, "encrypted-page", false, "set the C-bit (bit 51) in the page tables and CR3 (igvmgen -encrypted_page 1)")
	fl.BoolVar(&f.svme, "svme", false, "set EFER.SVME (igvmgen -svme 1)")
	fl.StringVarP(&f.output, "output", "o", "", "IGVM file to write (required)")
	fl.BoolVar(&f.json, "json", false, "print the layout as JSON")
	fl.BoolVar(&f.allowEmptyPayload, "allow-empty-payload", false, "accept a kernel file that ends inside its setup sectors (igvm-tooling's test_bzImage; such a kernel cannot boot)")
	_ = fl.MarkHidden("allow-empty-payload")
	return cmd
}

// igvmBuildResult is what --json prints.
type igvmBuildResult struct {
	Output      string                 `json:"output"`
	Size        int64                  `json:"size"`
	SHA256      string                 `json:"sha256"`
	Pages       int                    `json:"pages"`
	Policy      string                 `json:"policy"`
	Protocol    string                 `json:"boot_protocol"`
	PrefAddress string                 `json:"pref_address"`
	InitSize    string                 `json:"init_size"`
	BootParams  string                 `json:"boot_params"`
	Cmdline     string                 `json:"cmdline_gpa"`
	Ramdisk     string                 `json:"ramdisk_gpa"`
	RamdiskSize uint64                 `json:"ramdisk_size"`
	CCBlob      string                 `json:"cc_blob"`
	End         string                 `json:"end"`
	ACPIEnd     string                 `json:"acpi_end"`
	E820        []linuxboot.E820Entry  `json:"e820"`
	ACPITables  []linuxboot.ACPITable  `json:"acpi_tables,omitempty"`
	Registers   map[string]interface{} `json:"vmsa"`
}

func hx(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

func runIgvmBuild(cmd *cobra.Command, f *igvmBuildFlags) error {
	if f.kernel == "" {
		return usagef("%s: --kernel is required", cmd.CommandPath())
	}
	if f.output == "" {
		return usagef("%s: -o/--output is required", cmd.CommandPath())
	}
	if f.acpiDir != "" && f.acpiPages != "" {
		return usagef("%s: --acpi-dir and --acpi-pages exclude each other", cmd.CommandPath())
	}
	policy, err := strconv.ParseUint(f.policy, 0, 64)
	if err != nil {
		return usagef("%s: --policy %q: not a number", cmd.CommandPath(), f.policy)
	}
	if err := snp.GuestPolicy(policy).Validate(); err != nil {
		return fmt.Errorf("igvm build: --policy: %w", err)
	}

	kdata, err := os.ReadFile(f.kernel)
	if err != nil {
		return fmt.Errorf("igvm build: kernel: %w", err)
	}
	k, err := linuxboot.ParseBzImage(kdata)
	if err != nil {
		return fmt.Errorf("igvm build: kernel %s: %w", f.kernel, err)
	}
	opts := linuxboot.Options{
		Cmdline:       f.cmdline,
		Policy:        snp.GuestPolicy(policy),
		PvalidateOpt:  f.pvalidateOpt,
		EncryptedPage: f.encryptedPage,
		SVME:          f.svme,

		AllowEmptyPayload: f.allowEmptyPayload,
	}
	if f.initrd != "" {
		if opts.Initrd, err = os.ReadFile(f.initrd); err != nil {
			return fmt.Errorf("igvm build: initrd: %w", err)
		}
	}
	switch {
	case f.acpiDir != "":
		if opts.ACPI, err = linuxboot.ACPIFromDir(f.acpiDir); err != nil {
			return fmt.Errorf("igvm build: %w", err)
		}
	case f.acpiPages != "":
		if opts.ACPI, err = linuxboot.ReadACPIPagesFile(f.acpiPages); err != nil {
			return fmt.Errorf("igvm build: %w", err)
		}
	}
	img, err := linuxboot.Build(k, opts)
	if err != nil {
		return fmt.Errorf("igvm build: %s: %w", f.kernel, err)
	}

	out, err := atomicfile.Create(f.output, 0o644)
	if err != nil {
		return fmt.Errorf("igvm build: %w", err)
	}
	defer out.Abort()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(out, h), 1<<20)
	n, err := img.WriteTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("igvm build: write %s: %w", f.output, err)
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("igvm build: %w", err)
	}

	L := img.Layout
	sum := hex.EncodeToString(h.Sum(nil))
	w := cmd.OutOrStdout()
	if f.json {
		res := igvmBuildResult{
			Output: f.output, Size: n, SHA256: sum, Pages: len(img.Pages),
			Policy: hx(uint64(img.Policy)), Protocol: linuxboot.ProtocolString(k.Header.Version),
			PrefAddress: hx(k.Header.PrefAddress), InitSize: hx(uint64(k.Header.InitSize)),
			BootParams: hx(L.BootParams), Cmdline: hx(L.Cmdline), Ramdisk: hx(L.Ramdisk),
			RamdiskSize: L.RamdiskSize, CCBlob: hx(L.CCBlob), End: hx(L.End), ACPIEnd: hx(L.ACPIEnd),
			E820: L.E820,
			Registers: map[string]interface{}{
				"rip": hx(img.VMSA.RIP), "rsp": hx(img.VMSA.RSP), "rsi": hx(img.VMSA.RSI),
				"cr0": hx(img.VMSA.CR0), "cr3": hx(img.VMSA.CR3), "cr4": hx(img.VMSA.CR4),
				"efer": hx(img.VMSA.EFER), "sev_features": hx(img.VMSA.SEVFeatures),
			},
		}
		if opts.ACPI != nil {
			res.ACPITables = opts.ACPI.Tables
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(w, "%s: %d bytes, %d pages, sha256 %s\n", f.output, n, len(img.Pages), sum)
	fmt.Fprintf(w, "kernel: protocol %s, %d payload bytes at %s (init_size %s), entry %s\n",
		linuxboot.ProtocolString(k.Header.Version), L.PayloadBytes, hx(k.Header.PrefAddress), hx(uint64(k.Header.InitSize)), hx(L.KernelEntry))
	fmt.Fprintf(w, "boot_params %s, cmdline %s (%d bytes), initrd %s (%d bytes), cc_blob %s, end %s\n",
		hx(L.BootParams), hx(L.Cmdline), len(f.cmdline), hx(L.Ramdisk), L.RamdiskSize, hx(L.CCBlob), hx(L.End))
	fmt.Fprintf(w, "policy %s, efer %s, cr3 %s, ACPI up to %s\n", snp.GuestPolicy(img.Policy), hx(img.VMSA.EFER), hx(img.VMSA.CR3), hx(L.ACPIEnd))
	return nil
}
