package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version and VCS revision of this binary",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return nil
		},
	}
}

// revision is the VCS revision, set by the Makefile with -ldflags -X when
// the binary is built with -buildvcs=false (as reproducible builds are).
var revision = ""

// versionString describes the binary from its embedded build information.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "imagebuilder (no build information)"
	}
	version, rev := buildVersion()
	return fmt.Sprintf("imagebuilder %s revision %s %s", version, rev, info.GoVersion)
}

// buildVersion is the module version and the VCS revision ("+dirty" when
// the tree differed from it) of this binary.
func buildVersion() (version, rev string) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)", "unknown"
	}
	version = info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	rev, modified := revision, ""
	if rev == "" {
		rev = "unknown"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	return version, rev + modified
}
