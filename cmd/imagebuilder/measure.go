package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

func init() {
	register(newMeasureCmd)
	registerSub("measure", newMeasureIGVMCmd)
	registerSub("measure", newMeasureRefValuesCmd)
}

func newMeasureCmd() *cobra.Command {
	return newGroupCmd("measure", "Compute the expected SEV-SNP launch digest of boot artifacts",
		`measure computes the 48-byte launch digest the AMD SEV-SNP firmware will
report for a guest, for the hypervisor that loads it.`)
}

func newMeasureIGVMCmd() *cobra.Command {
	var (
		profile profileFlag
		vcpus   vcpusFlag
		cpu     cpusFlag
		kf      kvmFlags
		js      jsonFlag
		expl    bool
	)
	cmd := &cobra.Command{
		Use:   "igvm FILE --profile mshv|kvm",
		Short: "Print the launch digest of an IGVM file under a hypervisor profile",
		Long: `igvm prints the SEV-SNP launch digest of an IGVM file as the hypervisor
named by --profile measures it:

  mshv  cloud-hypervisor on Microsoft's hypervisor (Azure): pages sorted by
        GPA, pages without data as NORMAL zero pages, the file's VMSA at its
        own GPA. Equals igvm-tooling's igvmgen digest; --vcpus does not matter.
  kvm   QEMU >= 10.1 (-object igvm-cfg) on KVM, host kernel >= 6.11: pages in
        the order QEMU's IGVM loader hands them over (a parameter insert
        before a still-open run of pages), pages without data as NORMAL zero
        pages, then one VMSA per vCPU at 0xFFFFFFFFF000 as KVM rebuilds it
        from the registers QEMU set: vCPU 0 from the file's VP context
        (EFER gains SVME, CR0 ET and loses CD/NW, CR4 gains MCE, TR.base
        becomes LDTR.base, x87 FCW/MXCSR become KVM's, ...; --explain lists
        each field), the others from QEMU's reset state with the CPU model's
        signature. A file QEMU or KVM would refuse (VMSA not at
        0xFFFFFFFFF000, fields QEMU does not synchronise, restricted
        injection, long mode without paging, a directive QEMU does not
        handle, ...) is an error naming the rule (exit 1); --skip-kvm-checks
        measures it anyway, marked HYPOTHETICAL ("hypothetical" and
        "kvm_checks_skipped" in the JSON, a warning on stderr). Host kernels
        before 6.11 are hypothetical too.

The kvm digests follow the QEMU and Linux sources (docs/kvm-measurement.md);
they have not been checked against an attestation report from hardware.

--vcpus takes a list: one digest is printed per count ("N vCPUs: DIGEST"
lines when there are several). --explain lists the PAGE_INFO records in
order, as runs of pages with the digest after each, and for kvm the fields
of vCPU 0's VMSA that KVM measures with other values than the file holds
(field, file value, measured value). --json prints the result as an object
(an array of them for several counts).`,
		Example: `  imagebuilder measure igvm podvm.igvm --profile mshv
  imagebuilder measure igvm podvm.igvm --profile kvm --vcpus 1,2,4 --cpu genoa --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRequired(cmd, "profile"); err != nil {
				return err
			}
			p := profile.profiles[0]
			counts := vcpus.list(1)
			model, err := cpu.one(cmd)
			if err != nil {
				return err
			}
			if p == measure.ProfileKVM && model == nil && maxInt(counts) > 1 {
				return usagef("%s: --profile kvm with more than one vCPU needs --cpu (the APs' VMSAs hold its signature)", cmd.CommandPath())
			}
			f, fh, err := openIGVM(cmd, args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			var results []*measure.Result
			for _, n := range counts {
				opts := measure.Options{Profile: p, VCPUs: n, CPU: model, Explain: expl}
				kf.options(&opts)
				res, err := measure.MeasureIGVM(cmd.Context(), f, opts)
				if err != nil {
					return commandErr(cmd, args[0], err)
				}
				results = append(results, res)
			}
			stderr := cmd.ErrOrStderr()
			for _, w := range results[0].Warnings {
				if strings.HasPrefix(w, measure.WarnVMSAChanged) {
					if expl {
						continue // --explain lists them
					}
					w += " (--explain lists them)"
				}
				fmt.Fprintf(stderr, "imagebuilder: warning: measure igvm: %s: %s\n", args[0], w)
			}
			warnSkipped(cmd, args[0], results[0].KVMChecksSkipped)
			for _, res := range results {
				if res.IDBlockDigest != nil && *res.IDBlockDigest != res.Digest {
					fmt.Fprintf(stderr, "imagebuilder: warning: measure igvm: %s: the file's SNP ID block carries digest %s, not the one measured here for %d vCPU(s): the firmware refuses this launch (re-sign it with imagebuilder igvm sign for this profile and vCPU count)\n", args[0], res.IDBlockDigest, res.VCPUs)
				}
			}
			var doc any = results
			if len(results) == 1 {
				doc = results[0]
			}
			if err := writeJSONFile(cmd, &js, doc); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if js.toStdout() {
				return printJSON(out, doc)
			}
			for _, res := range results {
				switch {
				case expl:
					printExplain(out, res)
				case len(results) > 1:
					fmt.Fprintf(out, "%d vCPU%s: %s\n", res.VCPUs, plural(res.VCPUs), res.Digest)
				default:
					fmt.Fprintln(out, res.Digest)
				}
			}
			return nil
		},
	}
	cmd.Flags().Var(&profile, "profile", "hypervisor profile: mshv or kvm")
	cmd.Flags().Var(&vcpus, "vcpus", "vCPU counts, 1-512, comma separated (default 1; kvm measures one VMSA per vCPU)")
	cmd.Flags().Var(&cpu, "cpu", "vCPU model for kvm with more than one vCPU: EPYC-v4, milan, genoa, turin, rome, a QEMU EPYC name or 0xSIGNATURE")
	kf.add(cmd)
	addJSONFlag(cmd, &js)
	cmd.Flags().BoolVar(&expl, "explain", false, "print the measured regions in order and the digest after each (with --json: in the JSON)")
	requiredFlag(cmd, "profile")
	completeValues(cmd, "profile", "mshv", "kvm")
	completeValues(cmd, "cpu", cpuCompletions()...)
	return cmd
}

func maxInt(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// writeJSONFile writes doc to the file of --json=FILE, if given.
func writeJSONFile(cmd *cobra.Command, js *jsonFlag, doc any) error {
	if !js.toFile() {
		return nil
	}
	b, err := marshalJSON(doc)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(js.path, b, 0o644); err != nil {
		return commandErr(cmd, "--json", err)
	}
	return nil
}

func printExplain(w io.Writer, res *measure.Result) {
	if res.Hypothetical {
		fmt.Fprintf(w, "HYPOTHETICAL: QEMU/KVM would refuse this launch (--skip-kvm-checks)\n")
	}
	fmt.Fprintf(w, "profile %s, %d vCPU(s), policy %v\n", res.Profile, res.VCPUs, res.Policy)
	fmt.Fprintf(w, "%-37s %-10s %6s  %-32s %s\n", "GPA range", "type", "pages", "what", "digest after")
	for _, r := range res.Regions {
		fmt.Fprintf(w, "%#016x-%#016x %-10s %6d  %-32s %s\n", uint64(r.GPA), r.End()-1, r.TypeName, r.Pages, r.What, r.Digest)
	}
	if res.Profile == measure.ProfileKVM {
		if len(res.VMSAChanges) == 0 {
			fmt.Fprintf(w, "vCPU 0 VMSA: KVM measures the file's values\n")
		} else {
			fmt.Fprintf(w, "vCPU 0 VMSA as KVM measures it (field, file, measured):\n")
			for _, c := range res.VMSAChanges {
				fmt.Fprintf(w, "  %-16s %-20s -> %s\n", c.Field, c.File, c.Measured)
			}
		}
	}
	fmt.Fprintf(w, "%d pages measured\n", res.Pages)
	fmt.Fprintf(w, "launch digest %s\n", res.Digest)
	if res.IDBlockDigest != nil {
		match := "matches"
		if *res.IDBlockDigest != res.Digest {
			match = "DIFFERS"
		}
		fmt.Fprintf(w, "ID block digest %s (%s)\n", res.IDBlockDigest, match)
	}
}

func newMeasureRefValuesCmd() *cobra.Command {
	var (
		profiles profileFlag
		vcpus    vcpusFlag
		cpus     cpusFlag
		kf       kvmFlags
		output   string
		js       jsonFlag
	)
	profiles.list = true
	cmd := &cobra.Command{
		Use:   "reference-values FILE [-o reference-values.json]",
		Short: "Write the launch digests an attestation service should accept for an IGVM file",
		Long: `reference-values measures an IGVM file for every profile, CPU model and
vCPU count asked for and writes reference-values.json: the guest policy, the
mshv digest and, for kvm, per CPU model the 1-vCPU digest, the SHA-384 of the
AP VMSA page (each extra vCPU extends the digest by one VMSA PAGE_INFO record
at GPA 0xFFFFFFFFF000 with that hash) and the digest for each vCPU count.

Without --profile, every profile the file's layout satisfies is listed: a
file made by "igvm build" with its default layout (igvmgen's, VMSA at
0x803000) has no kvm values, and a warning says why ("skipped" in the JSON);
"igvm build --layout kvm" makes one QEMU and KVM accept. A profile named
with --profile that the file cannot satisfy is an error; --skip-kvm-checks
lists kvm values anyway, marked "hypothetical" with the rules broken in
"kvm_checks_skipped".

-o - writes the JSON to stdout; otherwise the command ends with a summary
line, or with --json prints the document on stdout too.

The kvm values follow the QEMU and Linux sources (docs/kvm-measurement.md);
they have not been checked against an attestation report from hardware.`,
		Example: `  imagebuilder measure reference-values podvm.igvm --cpu milan,genoa --vcpus 1,2,4 -o reference-values.json`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputPath(cmd, output, true); err != nil {
				return err
			}
			if output == "-" && js.set {
				return usagef("%s: -o - already writes the JSON to stdout; --json is for -o FILE", cmd.CommandPath())
			}
			spec := measure.RefSpec{Profiles: profiles.profiles, VCPUs: vcpus.list(1), CPUs: cpus.models,
				GuestFeatures: kf.features.ptr(), HostKernel: kf.host.v, SkipKVMChecks: kf.skipChecks}
			if len(spec.CPUs) == 0 {
				for _, name := range refDefaultCPUs {
					m, err := measure.LookupCPU(name)
					if err != nil {
						return err
					}
					spec.CPUs = append(spec.CPUs, m)
				}
			}
			f, fh, err := openIGVM(cmd, args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			rv, err := measure.ComputeReferenceValues(cmd.Context(), f, spec)
			if err != nil {
				return commandErr(cmd, args[0], err)
			}
			stderr := cmd.ErrOrStderr()
			for _, s := range rv.Skipped {
				fmt.Fprintf(stderr, "imagebuilder: warning: measure reference-values: %s: no %s values: %s\n", args[0], s.Profile, s.Reason)
			}
			for _, e := range rv.Entries {
				if len(e.KVMChecksSkipped) > 0 {
					warnSkipped(cmd, args[0], e.KVMChecksSkipped)
					break
				}
			}
			b, err := marshalJSON(rv)
			if err != nil {
				return err
			}
			if output == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := atomicfile.WriteFile(output, b, 0o644); err != nil {
				return commandErr(cmd, output, err)
			}
			if js.set {
				return printJSON(cmd.OutOrStdout(), rv)
			}
			n := 0
			for _, e := range rv.Entries {
				n += max(1, len(e.ByVCPUs))
			}
			printSummary(cmd.OutOrStdout(), output, int64(len(b)), sha256Hex(b), fmt.Sprintf("%d digest%s", n, plural(n)))
			return nil
		},
	}
	cmd.Flags().Var(&profiles, "profile", "profiles to list, comma separated (default: every profile the file's layout satisfies)")
	cmd.Flags().Var(&vcpus, "vcpus", "vCPU counts to list for kvm, comma separated (default 1)")
	cmd.Flags().Var(&cpus, "cpu", "CPU models for kvm, comma separated (default "+strings.Join(refDefaultCPUs, ",")+")")
	kf.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "reference-values.json", "output file, - for stdout")
	f := cmd.Flags().VarPF(&refJSONFlag{&js}, "json", "", "also print the reference values on stdout (instead of the summary line)")
	f.NoOptDefVal = "-"
	completeValues(cmd, "profile", "mshv", "kvm", "mshv,kvm")
	completeValues(cmd, "cpu", cpuCompletions()...)
	return cmd
}

// refJSONFlag is reference-values' --json: the document is the output
// already, so --json only says to print it on stdout too; --json=FILE is
// refused (that is -o FILE).
type refJSONFlag struct{ j *jsonFlag }

func (r *refJSONFlag) String() string { return r.j.String() }
func (r *refJSONFlag) Type() string   { return "" }
func (r *refJSONFlag) Set(s string) error {
	if s != "-" {
		return fmt.Errorf("the reference values are JSON already: -o %s writes them to a file", s)
	}
	return r.j.Set(s)
}

// refDefaultCPUs are the CPU models reference-values lists for kvm when
// --cpu is not given: the SEV-SNP capable EPYC generations.
var refDefaultCPUs = []string{"EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"}
