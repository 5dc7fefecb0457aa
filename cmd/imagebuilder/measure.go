package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
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

// kvmFlags are the flags that describe a KVM host.
type kvmFlags struct {
	cpu, features, host string
	skipChecks          bool
}

func (k *kvmFlags) add(cmd *cobra.Command, cpuHelp string) {
	cmd.Flags().StringVar(&k.cpu, "cpu", "", cpuHelp)
	cmd.Flags().StringVar(&k.features, "guest-features", "", "guest SEV features (sev_features) as hex, e.g. 0x1 (kvm; default: the file's VMSA)")
	cmd.Flags().StringVar(&k.host, "host-kernel", measure.DefaultHostKernel.String(), "host Linux version whose kvm_amd builds the VMSAs (kvm; >= 6.10 uses KVM_SEV_INIT2)")
	cmd.Flags().BoolVar(&k.skipChecks, "skip-kvm-checks", false, "compute the kvm digest even if the file breaks KVM's rules (VMSA GPA, order, count, CR0)")
}

func (k *kvmFlags) parse(path string) (cpus []measure.CPUModel, features *uint64, host measure.HostKernel, err error) {
	if k.cpu != "" {
		for _, name := range strings.Split(k.cpu, ",") {
			m, err := measure.LookupCPU(name)
			if err != nil {
				return nil, nil, host, usagef("%s --cpu: %v", path, err)
			}
			cpus = append(cpus, m)
		}
	}
	if k.features != "" {
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(k.features), "0x"), 16, 64)
		if err != nil {
			return nil, nil, host, usagef("%s --guest-features %q: want a hex number such as 0x1", path, k.features)
		}
		features = &v
	}
	host, err = measure.ParseHostKernel(k.host)
	if err != nil {
		return nil, nil, host, usagef("%s --host-kernel: %v", path, err)
	}
	return cpus, features, host, nil
}

// openIGVM opens and validates an IGVM file; the caller closes the file.
func openIGVM(path string) (*igvm.File, *os.File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	f, err := igvm.Open(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, fh, nil
}

func newMeasureIGVMCmd() *cobra.Command {
	var (
		profile      string
		vcpus        int
		kf           kvmFlags
		asJSON, expl bool
	)
	cmd := &cobra.Command{
		Use:   "igvm FILE",
		Short: "Print the launch digest of an IGVM file under a hypervisor profile",
		Long: `igvm prints the SEV-SNP launch digest of an IGVM file as the hypervisor
named by --profile measures it:

  mshv  cloud-hypervisor on Microsoft's hypervisor (Azure): pages sorted by
        GPA, pages without data as NORMAL zero pages, the file's VMSA at its
        own GPA. Equals igvm-tooling's igvmgen digest; --vcpus does not matter.
  kvm   cloud-hypervisor or QEMU on KVM: directive order, pages without data
        as ZERO pages, then one KVM-built VMSA per vCPU at 0xFFFFFFFFF000
        (vCPU 0 from the file, the others from reset state with the CPU
        model's signature). Like coconut-svsm igvmmeasure --native-zero; the
        rules of its --check-kvm are errors unless --skip-kvm-checks.

--explain lists the measured regions in order with the digest after each.`,
		Example: `  imagebuilder measure igvm guest.igvm --profile mshv
  imagebuilder measure igvm guest.igvm --profile kvm --vcpus 4 --cpu genoa --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := measure.ParseProfile(profile)
			if err != nil {
				return usagef("--profile: %v", err)
			}
			if vcpus < 1 || vcpus > measure.MaxVCPUs {
				return usagef("--vcpus %d: want 1 to %d", vcpus, measure.MaxVCPUs)
			}
			cpus, features, host, err := kf.parse("measure igvm")
			if err != nil {
				return err
			}
			if len(cpus) > 1 {
				return usagef("measure igvm --cpu: one CPU model (reference-values takes a list)")
			}
			if p == measure.ProfileKVM && vcpus > 1 && len(cpus) == 0 {
				return usagef("measure igvm: --profile kvm with --vcpus %d needs --cpu (the APs' VMSAs hold its signature)", vcpus)
			}
			f, fh, err := openIGVM(args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			opts := measure.Options{Profile: p, VCPUs: vcpus, GuestFeatures: features, HostKernel: host, SkipKVMChecks: kf.skipChecks, Explain: expl}
			if len(cpus) == 1 {
				opts.CPU = &cpus[0]
			}
			res, err := measure.MeasureIGVM(f, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out := cmd.OutOrStdout()
			for _, w := range res.Warnings {
				fmt.Fprintf(os.Stderr, "imagebuilder: warning: %s: %s\n", args[0], w)
			}
			if res.IDBlockDigest != nil && *res.IDBlockDigest != res.Digest {
				fmt.Fprintf(os.Stderr, "imagebuilder: warning: %s: the file's SNP ID block carries digest %s, not the one measured here: the firmware refuses this launch (re-sign it with imagebuilder igvm sign for this profile and vCPU count)\n", args[0], res.IDBlockDigest)
			}
			if asJSON {
				return writeJSON(out, res)
			}
			if expl {
				printExplain(out, res)
				return nil
			}
			fmt.Fprintln(out, res.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "", "hypervisor profile: mshv or kvm (required)")
	cmd.Flags().IntVar(&vcpus, "vcpus", 1, "number of vCPUs (1-512; kvm measures one VMSA per vCPU)")
	kf.add(cmd, "vCPU model for kvm with --vcpus > 1: EPYC-v4, milan, genoa, turin, rome, a QEMU EPYC name or 0xSIGNATURE")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON (with --explain: including the regions)")
	cmd.Flags().BoolVar(&expl, "explain", false, "print the measured regions in order and the digest after each")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func printExplain(w io.Writer, res *measure.Result) {
	fmt.Fprintf(w, "profile %s, %d vCPU(s), policy %v\n", res.Profile, res.VCPUs, res.Policy)
	fmt.Fprintf(w, "%-37s %-10s %6s  %-32s %s\n", "GPA range", "type", "pages", "what", "digest after")
	for _, r := range res.Regions {
		fmt.Fprintf(w, "%#016x-%#016x %-10s %6d  %-32s %s\n", r.GPA, r.End()-1, r.TypeName, r.Pages, r.What, r.Digest)
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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newMeasureRefValuesCmd() *cobra.Command {
	var (
		profiles, vcpuList, output string
		kf                         kvmFlags
	)
	cmd := &cobra.Command{
		Use:   "reference-values FILE",
		Short: "Write the launch digests an attestation service should accept for an IGVM file",
		Long: `reference-values measures an IGVM file for every profile, CPU model and
vCPU count asked for and writes reference-values.json: the guest policy, the
mshv digest and, for kvm, per CPU model the 1-vCPU digest, the SHA-384 of the
AP VMSA page (each extra vCPU extends the digest by one VMSA PAGE_INFO record
at GPA 0xFFFFFFFFF000 with that hash) and the digest for each vCPU count.`,
		Example: `  imagebuilder measure reference-values guest.igvm --cpu milan,genoa --vcpus 1,2,4 -o reference-values.json`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var spec measure.RefSpec
			for _, s := range strings.Split(profiles, ",") {
				p, err := measure.ParseProfile(strings.TrimSpace(s))
				if err != nil {
					return usagef("--profile: %v", err)
				}
				spec.Profiles = append(spec.Profiles, p)
			}
			for _, s := range strings.Split(vcpuList, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 || n > measure.MaxVCPUs {
					return usagef("--vcpus %q: want counts from 1 to %d, comma separated", s, measure.MaxVCPUs)
				}
				spec.VCPUs = append(spec.VCPUs, n)
			}
			cpus, features, host, err := kf.parse("measure reference-values")
			if err != nil {
				return err
			}
			if len(cpus) == 0 {
				for _, name := range refDefaultCPUs {
					m, err := measure.LookupCPU(name)
					if err != nil {
						return err
					}
					cpus = append(cpus, m)
				}
			}
			spec.CPUs, spec.GuestFeatures, spec.HostKernel, spec.SkipKVMChecks = cpus, features, host, kf.skipChecks
			f, fh, err := openIGVM(args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			rv, err := measure.ComputeReferenceValues(f, spec)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			b, err := json.MarshalIndent(rv, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if output == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return atomicfile.WriteFile(output, b, 0o644)
		},
	}
	cmd.Flags().StringVar(&profiles, "profile", "mshv,kvm", "profiles to list, comma separated")
	cmd.Flags().StringVar(&vcpuList, "vcpus", "1", "vCPU counts to list for kvm, comma separated")
	cmd.Flags().StringVarP(&output, "output", "o", "reference-values.json", "output file, - for stdout")
	kf.add(cmd, "CPU models for kvm, comma separated (default "+strings.Join(refDefaultCPUs, ",")+")")
	return cmd
}

// refDefaultCPUs are the CPU models reference-values lists for kvm when
// --cpu is not given: the SEV-SNP capable EPYC generations.
var refDefaultCPUs = []string{"EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"}
