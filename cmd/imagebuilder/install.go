package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

func init() { register(newInstallCmd) }

func newInstallCmd() *cobra.Command {
	var opts payload.InstallOptions
	var js jsonFlag
	cmd := &cobra.Command{
		Use:   "install OUT --root DIR",
		Short: "Install an output set's node payload under a root directory (files, Kata config, containerd runtime)",
		Long: `Does on a node file system what a node installer does, for people who
install by hand or bake node images: copies the files of OUT/install-plan.json
to their paths under DIR (checking each against the plan's sha256), and adds
the runtime handler to DIR's containerd config: in place in the file whose
CRI section containerd uses (containerd 1.x replaces a whole CRI section
with an imported one), as a drop-in where a version 3 config imports a
directory (containerd 2.x merges), or in a new config. Every file is written
first and all are renamed into place together, so a failure leaves DIR as it
was; a changed config is backed up as FILE.<sha256 prefix>.bak. A second run
changes nothing. Nothing is restarted: the command prints what to restart.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Root == "" {
				return usagef("%s: --root is required (use --root / on the node itself)", commandName(cmd))
			}
			res, err := payload.Install(cmd.Context(), args[0], opts)
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			if err := writeResultJSON(&js, res); err != nil {
				return fmt.Errorf("install: %w", err)
			}
			if js.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printInstall(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Root, "root", "", "the node's root directory (required)")
	cmd.Flags().StringVar(&opts.ContainerdConfig, "containerd-config", payload.DefaultContainerdConfig, "containerd's config file on the node")
	addJSONFlag(cmd, &js)
	return cmd
}

func printInstall(w io.Writer, res *payload.InstallResult) {
	written := 0
	for _, f := range res.Files {
		if f.Changed {
			written++
			fmt.Fprintf(w, "wrote %s\n", f.Path)
		}
	}
	fmt.Fprintf(w, "%s: %d files, %d written, %d unchanged\n", res.Handler, len(res.Files), written, len(res.Files)-written)
	switch res.Method {
	case payload.MethodUnchanged:
		fmt.Fprintf(w, "containerd: %s has the runtime already\n", res.ContainerdConfig)
	case payload.MethodEdited:
		fmt.Fprintf(w, "containerd: added the runtime to %s (backup %s)\n", res.ContainerdConfig, res.Backup)
	case payload.MethodCreated:
		fmt.Fprintf(w, "containerd: wrote %s with the runtime\n", res.ContainerdConfig)
	case payload.MethodDropIn:
		fmt.Fprintf(w, "containerd: wrote drop-in %s\n", res.ContainerdConfig)
	}
	for _, r := range res.Restart {
		fmt.Fprintf(w, "next: %s\n", r)
	}
}
