package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/spf13/cobra"
)

func init() { register(newRootfsCmd) }

func newRootfsCmd() *cobra.Command {
	return newGroupCmd("rootfs", "Build and inspect the dm-verity protected root file system disk", "",
		newRootfsBuildCmd(), newRootfsInspectCmd())
}

// rootfsSourceDateEpoch reads SOURCE_DATE_EPOCH (default 0).
func rootfsSourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, usagef("SOURCE_DATE_EPOCH=%q: not a non-negative integer", s)
	}
	return v, nil
}

func newRootfsBuildCmd() *cobra.Command {
	var opts rootfs.Options
	var out, jsonOut string
	cmd := &cobra.Command{
		Use:   "build --source SRC [--source SRC...] --agent FILE --seed S -o rootfs.img",
		Short: "Build the root disk: erofs + dm-verity hash in a GPT image",
		Long: `Layers the sources in order (bottom first), adds the kata-agent as
/usr/bin/kata-agent with kata-agent.service and kata-containers.target (the
default target), tmpfs for /tmp and /var, an empty /etc/machine-id, then
--add directories and --file files, and writes a raw GPT disk: partition 1
the erofs (x86-64 root type), partition 2 its dm-verity hash tree (x86-64
root-verity type); the PARTUUIDs are the halves of the root hash.

Sources: ` + rootfs.SourceKinds + `.
All times are SOURCE_DATE_EPOCH (default 0); UUIDs and the salt derive from
--seed. The JSON description (--json-out, or stdout with --json-out -) holds
the root hash, geometry, partitions and kernel command line fragments.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(opts.Sources) == 0 {
				return usagef("rootfs build: --source is required")
			}
			if opts.Agent == "" {
				return usagef("rootfs build: --agent is required")
			}
			if opts.Seed == "" {
				return usagef("rootfs build: --seed is required")
			}
			if out == "" {
				return usagef("rootfs build: -o is required")
			}
			epoch, err := rootfsSourceDateEpoch()
			if err != nil {
				return err
			}
			opts.SourceDateEpoch = epoch
			if opts.CacheDir == "" {
				opts.CacheDir = rootfs.DefaultCacheDir()
			}
			f, err := atomicfile.Create(out, 0o644)
			if err != nil {
				return err
			}
			defer f.Abort()
			desc, err := rootfs.Build(opts, f)
			if err != nil {
				return err
			}
			js, err := json.MarshalIndent(desc, "", "  ")
			if err != nil {
				return err
			}
			js = append(js, '\n')
			var jf *atomicfile.File
			if jsonOut != "" && jsonOut != "-" {
				if jf, err = atomicfile.Create(jsonOut, 0o644); err != nil {
					return err
				}
				defer jf.Abort()
				if _, err := jf.Write(js); err != nil {
					return err
				}
			}
			if err := f.Commit(); err != nil {
				return err
			}
			if jf != nil {
				if err := jf.Commit(); err != nil {
					return err
				}
			}
			if jsonOut == "-" {
				_, err = cmd.OutOrStdout().Write(js)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d bytes, root hash %s\n", out, desc.DiskSize, desc.Verity.RootHash)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.Sources, "source", nil, "a base image or tree, repeatable, bottom first")
	fl.StringVar(&opts.Agent, "agent", "", "the kata-agent binary (required)")
	fl.StringArrayVar(&opts.AddDirs, "add", nil, "copy a directory's tree over the root (owned by root), repeatable")
	fl.StringArrayVar(&opts.Files, "file", nil, "add one file, SRC:DST[:MODE] (octal; DST names the file, not a directory), repeatable")
	fl.StringVar(&opts.Seed, "seed", "", "seed of the disk GUID, filesystem UUID, verity salt and UUID (required)")
	fl.StringVar(&opts.Platform, "platform", "linux/amd64", "platform of the image to pick from a multi-platform index")
	fl.StringVar(&opts.CacheDir, "cache", "", "registry blob cache directory (default "+rootfs.DefaultCacheDir()+")")
	fl.StringVarP(&out, "output", "o", "", "the disk image to write")
	fl.StringVar(&jsonOut, "json-out", "", "write the JSON description to this file (- for stdout)")
	return cmd
}
