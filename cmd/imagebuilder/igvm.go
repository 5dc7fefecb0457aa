package main

import (
	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/inspect"
)

func init() { register(newIgvmCmd) }

// newIgvmCmd is the "igvm" command group; other areas add subcommands with
// registerSub("igvm", ...).
func newIgvmCmd() *cobra.Command {
	return newGroupCmd("igvm", "Build and inspect IGVM files (the SEV-SNP guest image cloud-hypervisor loads)", "",
		newIgvmInspectCmd())
}

func newIgvmInspectCmd() *cobra.Command {
	var js jsonFlag
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Validate an IGVM file and describe its headers, VMSA, Linux boot data, ACPI tables and ID block",
		Long: `inspect validates FILE with every rule of the IGVM format (the first
violation is reported with its header index and file offset, exit 1) and
describes it: platforms, the guest policy decoded into bits, the directives
with consecutive pages folded into ranges, the VMSA registers, the Linux
boot_params found through the VMSA's rsi (command line, initrd, e820 map),
the ACPI tables reached from the RSDP (with their checksums) and the SNP ID
block (with its signature checked). Only the headers and the few pages it
decodes are read. --json prints the same as one JSON object.`,
		Example: `  imagebuilder igvm inspect podvm.igvm
  imagebuilder igvm inspect podvm.igvm --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, fh, err := openIGVM(cmd, args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			rep, err := inspect.Inspect(f)
			if err != nil {
				return commandErr(cmd, args[0], err)
			}
			var set atomicfile.Set
			defer set.Abort()
			writeJSON, err := js.stage(&set)
			if err != nil {
				return commandErr(cmd, "--json", err)
			}
			if err := writeJSON(rep); err != nil {
				return commandErr(cmd, "--json", err)
			}
			if err := set.Commit(); err != nil {
				return commandErr(cmd, "--json", err)
			}
			out := cmd.OutOrStdout()
			if js.toStdout() {
				return printJSON(out, rep)
			}
			return rep.WriteText(out)
		},
	}
	addJSONFlag(cmd, &js)
	return cmd
}
