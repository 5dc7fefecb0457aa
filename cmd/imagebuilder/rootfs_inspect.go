package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/spf13/cobra"
)

func newRootfsInspectCmd() *cobra.Command {
	var files, asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect rootfs.img",
		Short: "Show the partitions, erofs and verity geometry of a root disk and check its root hash",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			in, ierr := rootfs.Inspect(f, fi.Size(), files)
			if in == nil {
				return ierr
			}
			w := cmd.OutOrStdout()
			if asJSON {
				js, err := json.MarshalIndent(in, "", "  ")
				if err != nil {
					return err
				}
				w.Write(append(js, '\n'))
				return ierr
			}
			printRootfsInspection(w, in)
			return ierr
		},
	}
	cmd.Flags().BoolVar(&files, "files", false, "list every file of the erofs")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printRootfsInspection(w io.Writer, in *rootfs.Inspection) {
	fmt.Fprintf(w, "disk: %d bytes, GUID %s\n", in.DiskSize, in.DiskGUID)
	for _, p := range in.Partitions {
		fmt.Fprintf(w, "partition %d %-19s offset %d size %d type %s uuid %s attrs %#x\n",
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
		state := "MISMATCH"
		if in.RootHashOK {
			state = "ok"
		}
		fmt.Fprintf(w, "root hash: %s (%s)\n", v.RootHash, state)
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
}
