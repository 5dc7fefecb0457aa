package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

func init() { register(newPushCmd) }

func newPushCmd() *cobra.Command {
	var layoutDir string
	var js jsonFlag
	cmd := &cobra.Command{
		Use:   "push OUT REF | push OUT --oci-layout DIR",
		Short: "Publish an output directory as one OCI artifact to a registry or an OCI layout",
		Long: `Pushes every file of the output directory OUT as one OCI artifact: an OCI
image manifest with artifactType ` + payload.ArtifactType + `, the empty
config, one layer per file (in name order, titled with its name). The
manifest depends only on the files, so the same output set always has the
same digest. Registry credentials come from the default keychain (the
docker config and its credential helpers); localhost and 127.0.0.1 are
spoken to over plain HTTP. Prints the reference with the pushed digest.
--oci-layout DIR writes the same artifact into an OCI image layout instead.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 2) == (layoutDir != "") {
				return usagef("%s: give either REF or --oci-layout DIR", commandName(cmd))
			}
			var res *payload.PushResult
			var err error
			if layoutDir != "" {
				res, err = payload.WriteLayout(cmd.Context(), args[0], layoutDir)
			} else {
				res, err = payload.Push(cmd.Context(), args[0], args[1], payload.DefaultRemoteOptions(cmd.Context())...)
			}
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			if err := writeResultJSON(&js, res); err != nil {
				return fmt.Errorf("push: %w", err)
			}
			if js.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d files, %d bytes, digest %s\n", res.Reference, res.Files, res.Size, res.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&layoutDir, "oci-layout", "", "write to the OCI image layout DIR instead of a registry")
	addJSONFlag(cmd, &js)
	return cmd
}
