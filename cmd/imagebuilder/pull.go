package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/audit"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

func init() { register(newPullCmd) }

func newPullCmd() *cobra.Command {
	var layoutDir, out string
	var js jsonFlag
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR | pull --oci-layout LAYOUT [DIGEST] -o DIR",
		Short: "Fetch an output set pushed as an OCI artifact, checking every digest",
		Long: `Fetches the artifact that 'imagebuilder push' made into the directory DIR:
checks the manifest's artifactType, every file against its layer digest and
size, and the files against the set's own manifest.json (every output with
its size and sha256) and install-plan.json. DIR appears complete or not at
all; an existing DIR is replaced only if it is empty or an output set. A
file that does not match is named and the command exits 1.
--oci-layout LAYOUT reads from an OCI image layout instead of a registry
(DIGEST picks the manifest when the layout holds several).`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("%s: -o DIR is required", commandName(cmd))
			}
			if out == "-" {
				return usagef("%s: -o -: an output set is a directory; give a directory name", commandName(cmd))
			}
			if layoutDir == "" && len(args) != 1 {
				return usagef("%s: give REF, or --oci-layout LAYOUT", commandName(cmd))
			}
			opts := payload.PullOptions{}
			var verified *audit.Report
			if !noVerify {
				opts.Verify = func(ctx context.Context, dir string) error {
					rep, err := audit.Verify(ctx, audit.Artifacts{Dir: dir}, audit.Options{})
					if err != nil {
						return err
					}
					if failed := rep.Failed(); len(failed) > 0 {
						l := failed[0]
						return fmt.Errorf("link %d %s failed: %s", l.Number, l.Name, l.Detail)
					}
					verified = rep
					return nil
				}
			}
			var res *payload.PullResult
			var err error
			if layoutDir != "" {
				digest := ""
				if len(args) == 1 {
					digest = args[0]
				}
				res, err = payload.PullLayout(cmd.Context(), layoutDir, digest, out, opts)
			} else {
				opts.Remote = payload.DefaultRemoteOptions(cmd.Context())
				res, err = payload.Pull(cmd.Context(), args[0], out, opts)
			}
			if err != nil {
				return fmt.Errorf("pull: %w", err)
			}
			if err := writeResultJSON(&js, res); err != nil {
				return fmt.Errorf("pull: %w", err)
			}
			if js.toStdout() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			var size int64
			for _, f := range res.Files {
				size += f.Size
			}
			line := fmt.Sprintf("%s: %d files, %d bytes, digest %s, checked", out, len(res.Files), size, res.Digest)
			if verified != nil {
				line += ", verified (" + linkCounts(verified) + ")"
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	addOutputFlag(cmd, &out, "the directory to write the output set to", true)
	cmd.Flags().StringVar(&layoutDir, "oci-layout", "", "read from the OCI image layout LAYOUT instead of a registry")
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "do not run 'imagebuilder verify' on the pulled set (the digests are checked in any case)")
	addJSONFlag(cmd, &js)
	return cmd
}
