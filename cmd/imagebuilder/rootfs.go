package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

func init() { register(newRootfsCmd) }

func newRootfsCmd() *cobra.Command {
	return newGroupCmd("rootfs", "Build and inspect the dm-verity protected root file system disk", "",
		newRootfsBuildCmd(), newRootfsInspectCmd())
}

func newRootfsBuildCmd() *cobra.Command {
	var (
		sources, addDirs, files           []string
		agent, seed, platform, cache, out string
		js                                jsonFlag
	)
	cmd := &cobra.Command{
		Use:   "build --source SRC [--source SRC...] --agent FILE --seed S -o rootfs.img",
		Short: "Build the root disk: erofs + dm-verity hash in a GPT image",
		Long: `Layers the sources in order (bottom first), adds the kata-agent as
/usr/bin/kata-agent with kata-agent.service and kata-containers.target (the
default target), tmpfs for /tmp and /var, an empty /etc/machine-id, then
--add directories and --file files, and writes a raw GPT disk: partition 1
the erofs (x86-64 root type), partition 2 its dm-verity hash tree (x86-64
root-verity type); the PARTUUIDs are the halves of the root hash.

Sources: ` + source.Kinds + `.
All times are SOURCE_DATE_EPOCH (default 0); UUIDs and the salt derive from
--seed. It prints "rootfs.img: SIZE bytes, sha256 HEX, root hash HEX";
--json prints the description instead (root hash, geometry, partitions,
kernel command line fragments, what each source resolved to, the sha256 of
the agent and of every added file), --json=FILE writes it to FILE. See
docs/rootfs.md.`,
		Example: `  imagebuilder rootfs build --source oci-layout:./base:latest --agent ./kata-agent \
      --seed demo -o rootfs.img --json=rootfs.json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputPath(cmd, out, false); err != nil {
				return err
			}
			for _, l := range []struct {
				flag   string
				values []string
			}{{"source", sources}, {"add", addDirs}, {"file", files}} {
				if err := checkDuplicates(cmd, l.flag, l.values); err != nil {
					return err
				}
			}
			if _, err := source.ParsePlatform(platform); err != nil {
				return usagef("%s: --platform: %v", cmd.CommandPath(), err)
			}
			opts := rootfs.Options{Agent: agent, AddDirs: addDirs, Seed: seed, Platform: platform, CacheDir: cache}
			for _, s := range sources {
				src, err := source.Parse(s)
				if err != nil {
					return usagef("%s: --source: %v", cmd.CommandPath(), err)
				}
				opts.Sources = append(opts.Sources, src)
			}
			for _, s := range files {
				f, err := source.ParseFile(s)
				if err != nil {
					return usagef("%s: --file: %v", cmd.CommandPath(), err)
				}
				opts.Files = append(opts.Files, f)
			}
			epoch, err := sourceDateEpoch()
			if err != nil {
				return err
			}
			opts.SourceDateEpoch = epoch
			if opts.CacheDir == "" {
				opts.CacheDir = source.DefaultCacheDir()
			}

			var set atomicfile.Set
			defer set.Abort()
			disk, err := set.Create(out, 0o644)
			if err != nil {
				return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
			}
			writeJSON, err := js.stage(&set)
			if err != nil {
				return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
			}
			desc, err := rootfs.Build(cmd.Context(), opts, disk)
			if err != nil {
				return rootfsBuildError(cmd, err)
			}
			var sum string
			if !js.toStdout() {
				// The disk is written at random offsets: its sha256
				// takes a read-back (from the page cache).
				if sum, err = readerSHA256(disk, desc.DiskSize); err != nil {
					return fmt.Errorf("%s: %s: %w", cmd.CommandPath(), out, err)
				}
			}
			if err := writeJSON(desc); err != nil {
				return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
			}
			if err := set.Commit(); err != nil {
				return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
			}
			if js.toStdout() {
				return printJSON(cmd.OutOrStdout(), desc)
			}
			printSummary(cmd.OutOrStdout(), out, desc.DiskSize, sum, "root hash "+desc.Verity.RootHash)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&sources, "source", nil, "a base image or tree, repeatable, bottom first (required)")
	fl.StringVar(&agent, "agent", "", "the kata-agent binary (required)")
	fl.StringArrayVar(&addDirs, "add", nil, "copy a directory's tree over the root (owned by root), repeatable")
	fl.StringArrayVar(&files, "file", nil, "add one file, SRC:DST[:MODE] (octal; DST names the file, not a directory), repeatable")
	fl.StringVar(&seed, "seed", "", "seed of the disk GUID, filesystem UUID, verity salt and UUID (required)")
	fl.StringVar(&platform, "platform", source.DefaultPlatform, "platform of the image to pick from a multi-platform index, OS/ARCH[/VARIANT]")
	fl.StringVar(&cache, "cache", "", "registry blob cache directory (default "+source.DefaultCacheDir()+")")
	addOutputFlag(cmd, &out, "the disk image to write (required)", true)
	addJSONFlag(cmd, &js)
	for _, f := range []string{"source", "agent", "seed"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// rootfsFlags maps rootfs.Options fields to the flags that set them.
var rootfsFlags = map[string]string{"Sources": "--source", "Agent": "--agent", "AddDirs": "--add",
	"Files": "--file", "Seed": "--seed", "Platform": "--platform", "SourceDateEpoch": "SOURCE_DATE_EPOCH"}

// rootfsBuildError names the command, and the flag where the library
// names an option field.
func rootfsBuildError(cmd *cobra.Command, err error) error {
	msg := strings.TrimPrefix(err.Error(), "rootfs: ")
	var oe *rootfs.OptionError
	if errors.As(err, &oe) && rootfsFlags[oe.Field] != "" {
		msg = rootfsFlags[oe.Field]
		if oe.Value != "" {
			msg += " " + oe.Value
		}
		msg += ": " + oe.Err.Error()
	}
	return wrappedError{fmt.Sprintf("%s: %s", cmd.CommandPath(), msg), err}
}

// wrappedError is an error with a message of the CLI's own that keeps the
// library error for errors.Is/As.
type wrappedError struct {
	msg string
	err error
}

func (e wrappedError) Error() string { return e.msg }
func (e wrappedError) Unwrap() error { return e.err }
