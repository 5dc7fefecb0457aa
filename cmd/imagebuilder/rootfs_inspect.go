package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/spf13/cobra"
)

func newRootfsInspectCmd() *cobra.Command {
	var opts rootfs.InspectOptions
	var js jsonFlag
	cmd := &cobra.Command{
		Use:   "inspect rootfs.img",
		Short: "Show the partitions, erofs and verity geometry of a root disk and check its root hash",
		Long: `Reads the GPT, the erofs and the dm-verity superblocks of a root disk made
by 'rootfs build', checks the hash tree in partition 2 against every block
of partition 1 and against the root hash the PARTUUIDs carry, and prints
the geometry and the kernel command-line fragments; with --files, every
file of the erofs. Exit 1 when the root hash does not match (the result is
still printed) or the disk is malformed (one line naming the file and where).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			set := &atomicfile.Set{}
			defer set.Abort()
			writeJSON, err := js.stage(set)
			if err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("rootfs inspect: %s: not a regular file", name)
			}
			in, err := rootfs.Inspect(cmd.Context(), f, fi.Size(), opts)
			if err != nil {
				return fmt.Errorf("rootfs inspect: %s: %w", name, err)
			}
			if err := writeJSON(in); err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			if err := set.Commit(); err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			w := cmd.OutOrStdout()
			if js.toStdout() {
				err = printJSON(w, in)
			} else {
				err = printRootfsInspection(w, in)
			}
			if err != nil {
				return fmt.Errorf("rootfs inspect: %w", err)
			}
			if !in.RootHashOK {
				return fmt.Errorf("rootfs inspect: %s: %s", name, in.Mismatch)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.Files, "files", false, "list every file of the erofs")
	addJSONFlag(cmd, &js)
	return cmd
}

func printRootfsInspection(w io.Writer, in *rootfs.Inspection) error {
	bw := bufio.NewWriter(w)
	w = bw
	fmt.Fprintf(w, "disk: %d bytes, GUID %s\n", in.DiskSize, in.DiskGUID)
	for _, p := range in.Partitions {
		fmt.Fprintf(w, "partition %d %-19s offset %d size %d type %s uuid %s attrs %s\n",
			p.Number, p.Name, p.Offset, p.Size, p.Type, p.UUID, p.Attrs)
	}
	fs := in.Filesystem
	if fs.Type != "" {
		fmt.Fprintf(w, "erofs: %d blocks of %d, %d inodes, uuid %s\n", fs.Blocks, fs.BlockSize, fs.Inodes, fs.UUID)
	}
	v := in.Verity
	if v.RootHash != "" {
		fmt.Fprintf(w, "verity: %s, %d data blocks of %d, hash blocks of %d, hash start block %d, salt %s\n",
			v.HashAlgorithm, v.DataBlocks, v.DataBlockSize, v.HashBlockSize, v.HashStartBlock, v.Salt)
		if in.RootHashOK {
			fmt.Fprintf(w, "root hash: %s (ok)\n", v.RootHash)
		} else {
			fmt.Fprintf(w, "root hash: %s (MISMATCH: the PARTUUIDs carry %s)\n", v.RootHash, in.PartUUIDRootHash)
		}
		fmt.Fprintf(w, "cmdline (systemd): %s\n", in.Cmdline.Systemd)
		fmt.Fprintf(w, "cmdline (dm-init): %s\n", in.Cmdline.DMModCreate)
		fmt.Fprintf(w, "cmdline (ibroot):  %s\n", in.Cmdline.IBRoot)
	}
	for _, f := range in.Files {
		line := fmt.Sprintf("%06o %5d %5d %10d %s", f.Mode, f.UID, f.GID, f.Size, f.Path)
		if f.Link != "" {
			line += " -> " + f.Link
		}
		if f.Nlink > 1 && f.Mode&0o170000 != 0o040000 {
			line += fmt.Sprintf(" (%d links)", f.Nlink)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	return bw.Flush()
}
