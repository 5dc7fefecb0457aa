package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/pkg/audit"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func init() { register(newVerifyCmd) }

type verifyFlags struct {
	a         audit.Artifacts
	idKey     string
	authorKey string
	json      jsonFlag
	quiet     bool
	idBlocks  []string
	plans     []string
	firmwares []string
}

func newVerifyCmd() *cobra.Command {
	f := &verifyFlags{}
	cmd := &cobra.Command{
		Use:   "verify [DIR] [--rootfs FILE] [--igvm FILE] [...]",
		Short: "Check the chain from the launch digest to every block of the root disk",
		Long: `Re-derives what the artifacts of a pod-VM image determine and checks the chain
that binds a launch digest to the root disk, one line per link (docs/verify.md):

  1 outputs        every output's sha256 is the one manifest.json lists
  2 rootfs         rootfs.img's GPT is sound, the verity tree recomputed from
                   partition 1 is partition 2, its root hash is the PARTUUIDs
  3 cmdline        the command line in podvm.igvm's pages carries that root
                   hash and verity geometry
  4 payload        the kernel, initrd and command line in podvm.igvm are
                   vmlinuz, initrd.img and cmdline.txt
  5 launch_digest  every target's launch digest, recomputed, is
                   reference-values.json's (qemu-ovmf: from its firmware,
                   the payload's ovmf-TARGET.fd or --firmware)
  6 id_block       every ID block carries its target's digest, its signature
                   verifies, its keys are the expected ones (printed)
  7 handler        the node payload's runtime handler is the hash of the files
                   it installs, and its Kata configuration, containerd entry
                   and RuntimeClass boot those files with the measured
                   command line and policy

DIR is an output directory of 'imagebuilder build' (or of 'pull'); the flags
name artifacts one by one instead, or override DIR's. A link whose artifacts
are not given is skipped or partial, and says so.

--json prints the links as JSON instead. Exit status: 0 when no link failed,
1 when one did (or an artifact could not be read at all), 2 on a bad command
line.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return runVerify(cmd, f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.a.Manifest, "manifest", "", "manifest.json")
	fl.StringVar(&f.a.Rootfs, "rootfs", "", "the root disk (rootfs.img)")
	fl.StringVar(&f.a.Initrd, "initrd", "", "the initrd (initrd.img)")
	fl.StringVar(&f.a.Kernel, "kernel", "", "the kernel (vmlinuz)")
	fl.StringVar(&f.a.Cmdline, "cmdline", "", "the command line file (cmdline.txt)")
	fl.StringVar(&f.a.IGVM, "igvm", "", "the IGVM file (podvm.igvm)")
	fl.StringVar(&f.a.ReferenceValues, "reference-values", "", "reference-values.json")
	fl.StringSliceVar(&f.idBlocks, "id-block", nil, "an id-block-TARGET.json file (repeat or comma-separate)")
	fl.StringSliceVar(&f.plans, "install-plan", nil, "the node payload's install-plan.json")
	fl.StringSliceVar(&f.firmwares, "firmware", nil, "an OVMF image of a qemu-ovmf target, to recompute its launch digests (repeat or comma-separate)")
	fl.StringVar(&f.idKey, "id-key-digest", "", "the expected ID key: SHA-384 of its public key, 96 hex digits (default: manifest.json's)")
	fl.StringVar(&f.authorKey, "author-key-digest", "", "the expected author key, like --id-key-digest")
	addJSONFlag(cmd, &f.json)
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print nothing but the failed links")
	return cmd
}

func runVerify(cmd *cobra.Command, f *verifyFlags, args []string) error {
	name := commandName(cmd)
	if len(args) == 1 {
		f.a.Dir = args[0]
		if f.a.Dir == "" {
			return usagef("%s: empty directory name", name)
		}
	}
	for flag, list := range map[string][]string{"id-block": f.idBlocks, "install-plan": f.plans, "firmware": f.firmwares} {
		if err := checkDuplicates(cmd, flag, list); err != nil {
			return err
		}
	}
	f.a.IDBlocks, f.a.InstallPlans = f.idBlocks, f.plans
	a := f.a
	if a.Dir == "" && a.Manifest == "" && a.Rootfs == "" && a.Initrd == "" && a.Kernel == "" && a.Cmdline == "" && a.IGVM == "" &&
		a.ReferenceValues == "" && len(a.IDBlocks) == 0 && len(a.InstallPlans) == 0 {
		return usagef("%s: give an output directory or the artifacts (--rootfs, --igvm, ...)", name)
	}
	if f.quiet && f.json.toStdout() {
		return usagef("%s: -q and --json both decide what goes to stdout; give --json=FILE", name)
	}
	opts := audit.Options{Firmware: f.firmwares}
	for _, k := range []struct {
		flag, val string
		dst       **snp.Digest
	}{{"id-key-digest", f.idKey, &opts.IDKeyDigest}, {"author-key-digest", f.authorKey, &opts.AuthorKeyDigest}} {
		if k.val == "" {
			continue
		}
		d, err := snp.ParseDigest(k.val)
		if err != nil {
			return usagef("%s: --%s %q: want the SHA-384 digest as 96 hex digits", name, k.flag, k.val)
		}
		*k.dst = &d
	}
	rep, err := audit.Verify(cmd.Context(), f.a, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if f.json.set {
		if f.json.toStdout() {
			if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
		} else if err := writeResultJSON(&f.json, rep); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if !f.json.toStdout() {
		printVerify(cmd.OutOrStdout(), rep, f.quiet)
	}
	if failed := rep.Failed(); len(failed) > 0 {
		var names []string
		for _, l := range failed {
			names = append(names, fmt.Sprintf("%d %s", l.Number, l.Name))
		}
		what := rep.Dir
		if what == "" {
			what = "the artifacts"
		}
		return fmt.Errorf("%s: %s: %d of %d links failed (%s)", name, what, len(failed), len(rep.Links), strings.Join(names, ", "))
	}
	return nil
}

// printVerify prints one line per link, and a summary line.
func printVerify(w io.Writer, rep *audit.Report, quiet bool) {
	for _, l := range rep.Links {
		if quiet && l.Status != audit.Failed {
			continue
		}
		fmt.Fprintf(w, "%d %-13s %-7s %s\n", l.Number, l.Name, statusText(l.Status), linkText(l))
	}
	if quiet || !rep.OK {
		return
	}
	what := rep.Dir
	if what == "" {
		what = "artifacts"
	}
	fmt.Fprintf(w, "%s: verified (%s)\n", what, linkCounts(rep))
}

// linkCounts counts the links by status: "6 ok, 1 skipped".
func linkCounts(rep *audit.Report) string {
	count := map[audit.Status]int{}
	for _, l := range rep.Links {
		count[l.Status]++
	}
	var parts []string
	for _, s := range []audit.Status{audit.OK, audit.Partial, audit.Skipped, audit.Failed} {
		if count[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

func statusText(s audit.Status) string {
	if s == audit.Failed {
		return "FAILED"
	}
	return string(s)
}

// linkText is a link's detail, with what was not checked.
func linkText(l audit.Link) string {
	s := l.Detail
	if l.Status == audit.Partial && len(l.Unchecked) > 0 {
		s += " (not checked: " + strings.Join(l.Unchecked, "; ") + ")"
	}
	return oneLine(s)
}
