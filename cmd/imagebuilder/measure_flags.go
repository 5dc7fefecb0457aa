package main

// Flag values shared by the igvm and measure commands. Each parses in Set,
// so a bad value is a usage error (exit 2) naming the command and the flag
// before any work starts.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// vcpusFlag is --vcpus: counts from 1 to measure.MaxVCPUs and ranges of
// them ("1-8", as in the config file), comma separated or repeated, none
// twice.
type vcpusFlag struct{ counts []int }

func (v *vcpusFlag) String() string {
	s := make([]string, len(v.counts))
	for i, n := range v.counts {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (v *vcpusFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, err := measure.ParseVCPURange(part)
		if err != nil {
			return err
		}
		for n := lo; n <= hi; n++ {
			if slices.Contains(v.counts, n) {
				return fmt.Errorf("%d given twice", n)
			}
			v.counts = append(v.counts, n)
		}
	}
	return nil
}

func (v *vcpusFlag) Type() string { return "N[-M][,...]" }

// list returns the counts, or def when none was given.
func (v *vcpusFlag) list(def ...int) []int {
	if len(v.counts) == 0 {
		return def
	}
	return v.counts
}

// cpusFlag is --cpu: CPU models (QEMU names, short names or a CPUID(1).EAX
// signature as 0x...), comma separated or repeated.
type cpusFlag struct{ models []measure.CPUModel }

func (c *cpusFlag) String() string {
	s := make([]string, len(c.models))
	for i, m := range c.models {
		s[i] = m.Name
	}
	return strings.Join(s, ",")
}

func (c *cpusFlag) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		m, err := measure.LookupCPU(strings.TrimSpace(name))
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "measure: "))
		}
		for _, o := range c.models {
			if o.Signature == m.Signature && strings.EqualFold(o.Name, m.Name) {
				return fmt.Errorf("%s given twice", name)
			}
		}
		c.models = append(c.models, m)
	}
	return nil
}

func (c *cpusFlag) Type() string { return "model" }

// one returns the only model given (nil for none); more than one is a
// usage error.
func (c *cpusFlag) one(cmd *cobra.Command) (*measure.CPUModel, error) {
	switch len(c.models) {
	case 0:
		return nil, nil
	case 1:
		return &c.models[0], nil
	}
	return nil, usagef("%s: --cpu: one CPU model here (measure reference-values takes a list)", cmd.CommandPath())
}

// cpuCompletions lists the --cpu values for shell completion.
func cpuCompletions() []string {
	return append([]string{"milan", "genoa", "turin", "rome"}, measure.CPUModelNames()...)
}

// hexFlag is a number given as 0x-prefixed hex or decimal (hexnum.Parse):
// --policy, --guest-features.
type hexFlag struct {
	v   uint64
	set bool
}

func (h *hexFlag) String() string {
	if !h.set {
		return ""
	}
	return hexnum.Uint64(h.v).String()
}

func (h *hexFlag) Set(s string) error {
	v, err := hexnum.Parse(s)
	if err != nil {
		return err
	}
	h.v, h.set = v, true
	return nil
}

func (h *hexFlag) Type() string { return "number" }

// ptr returns the value, or nil when the flag was not given.
func (h *hexFlag) ptr() *uint64 {
	if !h.set {
		return nil
	}
	v := h.v
	return &v
}

// policyFlag is --policy: a guest policy the firmware accepts.
type policyFlag struct{ hexFlag }

func (p *policyFlag) Set(s string) error {
	if err := p.hexFlag.Set(s); err != nil {
		return err
	}
	return snp.GuestPolicy(p.v).Validate()
}

// profileFlag is --profile: mshv or kvm; a list where allowed.
type profileFlag struct {
	profiles []measure.Profile
	list     bool
}

func (p *profileFlag) String() string {
	s := make([]string, len(p.profiles))
	for i, x := range p.profiles {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

func (p *profileFlag) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		x, err := measure.ParseProfile(strings.TrimSpace(name))
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "measure: "))
		}
		for _, o := range p.profiles {
			if o == x {
				return fmt.Errorf("%s given twice", x)
			}
		}
		if !p.list && len(p.profiles) > 0 {
			return errors.New("one profile")
		}
		p.profiles = append(p.profiles, x)
	}
	return nil
}

func (p *profileFlag) Type() string { return "profile" }

// hostKernelFlag is --host-kernel MAJOR.MINOR.
type hostKernelFlag struct{ v measure.HostKernel }

func (h *hostKernelFlag) String() string {
	if h.v == (measure.HostKernel{}) {
		return measure.DefaultHostKernel.String()
	}
	return h.v.String()
}

func (h *hostKernelFlag) Set(s string) error {
	v, err := measure.ParseHostKernel(s)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "measure: "))
	}
	h.v = v
	return nil
}

func (h *hostKernelFlag) Type() string { return "X.Y" }

// id16Flag is --family-id / --image-id: 16 bytes as 32 hex digits.
type id16Flag struct{ v [16]byte }

func (f *id16Flag) String() string { return hex.EncodeToString(f.v[:]) }

func (f *id16Flag) Set(s string) error {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil || len(b) != 16 {
		return errors.New("want 16 bytes as 32 hex digits")
	}
	copy(f.v[:], b)
	return nil
}

func (f *id16Flag) Type() string { return "hex" }

// kvmFlags are the flags that describe a KVM host.
type kvmFlags struct {
	features   hexFlag
	host       hostKernelFlag
	skipChecks bool
}

func (k *kvmFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Var(&k.features, "guest-features", "guest SEV features (the VMSA's sev_features), 0x-prefixed hex or decimal (kvm; default: the file's VMSA)")
	f.Var(&k.host, "host-kernel", "host Linux version whose kvm_amd builds the VMSAs (kvm; default 6.11, the first with upstream SEV-SNP; older ones are hypothetical)")
	f.BoolVar(&k.skipChecks, "skip-kvm-checks", false, "compute kvm digests even if QEMU or KVM would refuse the launch; the values are marked HYPOTHETICAL")
	completeValues(cmd, "host-kernel", "6.6", "6.8", "6.9", "6.10", "6.11", "6.12")
}

// options fills the kvm fields of measure options.
func (k *kvmFlags) options(o *measure.Options) {
	o.GuestFeatures, o.HostKernel, o.SkipKVMChecks = k.features.ptr(), k.host.v, k.skipChecks
}

// warnSkipped prints, loudly, the QEMU/KVM rules a measurement skipped:
// the kvm digests are hypothetical.
func warnSkipped(cmd *cobra.Command, path string, violations []measure.KVMViolation) {
	if len(violations) == 0 {
		return
	}
	s := make([]string, len(violations))
	for i, v := range violations {
		s[i] = v.String()
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "imagebuilder: warning: %s: %s: HYPOTHETICAL kvm digests (--skip-kvm-checks): QEMU/KVM would refuse this launch, so no attestation report can show them: %s\n",
		strings.TrimPrefix(cmd.CommandPath(), "imagebuilder "), path, strings.Join(s, "; "))
}

// sha256Hex is the SHA-256 of b in hex.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// commandErr puts the command and the file or flag concerned before err,
// dropping what a *fs.PathError repeats ("open FILE: ") and the "measure: "
// prefix of pkg/measure's errors (the command says it).
func commandErr(cmd *cobra.Command, what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && (pe.Path == what || strings.HasSuffix(what, " "+pe.Path)) {
		err = pe.Err
	}
	return &cliError{prefix: strings.TrimPrefix(cmd.CommandPath(), "imagebuilder ") + ": " + what + ": ", err: err}
}

// cliError is an error as a command reports it; it unwraps to the library's.
type cliError struct {
	prefix string
	err    error
}

func (e *cliError) Error() string { return e.prefix + strings.TrimPrefix(e.err.Error(), "measure: ") }
func (e *cliError) Unwrap() error { return e.err }

// openIGVM opens and validates an IGVM file; the caller closes the file.
// Errors name the command and the file.
func openIGVM(cmd *cobra.Command, path string) (*igvm.File, *os.File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, commandErr(cmd, path, err)
	}
	st, err := fh.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		fh.Close()
		return nil, nil, commandErr(cmd, path, err)
	}
	f, err := igvm.Open(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, nil, commandErr(cmd, path, err)
	}
	return f, fh, nil
}

// requiredFlag says a flag is required: in --help (the description ends
// with "(required)"), and in RunE through checkRequired.
func requiredFlag(cmd *cobra.Command, name string) {
	f := cmd.Flags().Lookup(name)
	f.Usage += " (required)"
}

// checkRequired returns a usage error naming the first required flag not
// given.
func checkRequired(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !flagChanged(cmd, n) {
			name := "--" + n
			if f := cmd.Flags().Lookup(n); f != nil && f.Shorthand != "" {
				name = "-" + f.Shorthand + "/--" + n
			}
			return usagef("%s: %s is required", cmd.CommandPath(), name)
		}
	}
	return nil
}

var (
	_ pflag.Value = (*vcpusFlag)(nil)
	_ pflag.Value = (*cpusFlag)(nil)
	_ pflag.Value = (*hexFlag)(nil)
	_ pflag.Value = (*policyFlag)(nil)
	_ pflag.Value = (*profileFlag)(nil)
	_ pflag.Value = (*hostKernelFlag)(nil)
	_ pflag.Value = (*id16Flag)(nil)
)
