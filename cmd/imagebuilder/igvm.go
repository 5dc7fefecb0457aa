package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
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
	var asJSON bool
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
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fh, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			st, err := fh.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file", args[0])
			}
			f, err := igvm.Open(fh, st.Size())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			rep, err := inspect.Inspect(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(out)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
