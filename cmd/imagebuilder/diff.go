package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/diff"
)

func init() { register(newDiffCmd) }

// diffKinds are the kinds --kind accepts.
var diffKinds = []diff.Kind{diff.KindRootDisk, diff.KindErofs, diff.KindIGVM, diff.KindInitrd, diff.KindKernel,
	diff.KindJSON, diff.KindText, diff.KindData}

func newDiffCmd() *cobra.Command {
	var js jsonFlag
	var kind string
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Explain every difference between two artifacts, or two output directories",
		Long: `Compares two artifacts of the same kind, detected from their content, and
explains every difference in terms of what the artifact means:

  root disks   the GPT and verity parameters, then the erofs trees walked in
               step: paths added or removed; for a path in both, its type,
               mode, owner, mtime, xattrs, link target, device, hard link and
               content (with the first differing byte, and line, of text)
  IGVM files   headers, platforms and policy, VMSA registers, boot_params
               fields, the command line, ACPI tables by signature, CPUID page
               entries, the initrd entry by entry, page runs by GPA with the
               region each belongs to, the ID block, the launch digests
  initrds      entries added, removed or changed, module load order, segments
  JSON         the fields that differ, as paths with both values
  kernels, text files and other files: header fields, the first differing
               line, the first differing byte

Two directories are compared file by file, paired by name. Differences that
follow from others (a root hash, a partition size, a launch digest) are listed
last, under "follows from the above". Each file is read once, streamed.

Exit status as diff(1): 0 identical, 1 different, 2 trouble (an unreadable or
malformed artifact: one line naming it).`,
		Example: `  imagebuilder diff old/rootfs.img new/rootfs.img
  imagebuilder diff published/ rebuilt/ --json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := diff.Options{Kind: diff.Kind(kind)}
			if kind != "" && !validDiffKind(opts.Kind) {
				return usagef("%s: --kind %s: not one of %s", cmd.CommandPath(), kind, diffKindList())
			}
			trouble := func(err error) error { return exitStatus{2, fmt.Errorf("diff: %w", err)} }
			set := &atomicfile.Set{}
			defer set.Abort()
			writeJSON, err := js.stage(set)
			if err != nil {
				return trouble(err)
			}
			if kind != "" {
				for _, a := range args {
					if st, err := os.Stat(a); err == nil && st.IsDir() {
						return usagef("%s: --kind %s: %s is a directory; --kind compares two files", cmd.CommandPath(), kind, a)
					}
				}
			}
			// A signal cancels the context; run reports it and exits
			// with the signal's status, whatever this returns.
			res, err := diff.ComparePaths(cmd.Context(), args[0], args[1], opts)
			if err != nil {
				return trouble(err)
			}
			if err := writeJSON(res); err != nil {
				return trouble(err)
			}
			if err := set.Commit(); err != nil {
				return trouble(err)
			}
			w := cmd.OutOrStdout()
			if js.toStdout() {
				err = printJSON(w, res)
			} else {
				err = res.WriteText(w)
			}
			if err != nil {
				return trouble(err)
			}
			if !res.Identical {
				return exitStatus{1, nil}
			}
			return nil
		},
	}
	addJSONFlag(cmd, &js)
	cmd.Flags().StringVar(&kind, "kind", "", "compare both as this kind instead of the detected one: "+diffKindList())
	var names []string
	for _, k := range diffKinds {
		names = append(names, string(k))
	}
	completeValues(cmd, "kind", names...)
	return cmd
}

func validDiffKind(k diff.Kind) bool {
	for _, x := range diffKinds {
		if x == k {
			return true
		}
	}
	return false
}

func diffKindList() string {
	var s []string
	for _, k := range diffKinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}
