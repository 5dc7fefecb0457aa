package podvm

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/google/go-sev-guest/abi"
	sevpb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// targetMeasurement is one target's launch digests.
type targetMeasurement struct {
	Name          string          `json:"name"`
	Platform      string          `json:"platform"`
	Profile       string          `json:"profile"`
	Policy        snp.GuestPolicy `json:"policy"`
	Digests       []TargetDigest  `json:"digests"`
	OVMFHash      *snp.Digest     `json:"ovmf_hash,omitempty"`
	KernelHashes  *KernelHashes   `json:"kernel_hashes,omitempty"`
	VMMType       string          `json:"vmm_type,omitempty"`
	GuestFeatures hexnum.Uint64   `json:"guest_features,omitempty"`
	HostKernel    string          `json:"host_kernel,omitempty"`
}

// measureStage is the measurement stage's outcome.
type measureStage struct {
	Targets []targetMeasurement `json:"targets"`
}

const stageMeasure = "measure"

// Profiles of the target platforms (the qemu-ovmf digest is computed
// from the firmware, not from the IGVM file: "ovmf").
var platformProfile = map[string]string{PlatformIGVMMSHV: string(measure.ProfileMSHV), PlatformIGVMKVM: string(measure.ProfileKVM), PlatformQEMUOVMF: "ovmf"}

func (b *builder) measure(ctx context.Context, kern *kernelStage, rd *initrdStage, ig *igvmStage, line *CmdlineInfo) (*measureStage, error) {
	targets := b.cfg.Spec.Measurements.Targets
	inputs := map[string]string{"igvm": "sha256:" + ig.file.SHA256, "vmlinuz": "sha256:" + kern.vmlinuz.SHA256, "initrd": "sha256:" + rd.file.SHA256}
	for i, sum := range b.pre.fwSHA256 {
		inputs[fmt.Sprintf("firmware[%d]", i)] = "sha256:" + sum
	}
	config := struct {
		Targets []Target `json:"targets"`
		Cmdline string   `json:"cmdline"`
	}{targets, line.Line}
	st := &measureStage{}
	_, err := b.runStage(ctx, stageRun{name: stageMeasure, config: config, inputs: inputs, result: st,
		run: func(ctx context.Context, _ map[string]*os.File, t ProgressTask) error {
			var f *igvm.File
			for i, tg := range targets {
				field := fmt.Sprintf("spec.measurements.targets[%d]", i)
				fail := func(err error) error {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return &StageError{Stage: stageMeasure, Field: field, Input: tg.Name, Err: trimPkg(err, "measure: ")}
				}
				tm := targetMeasurement{Name: tg.Name, Platform: tg.Platform, Profile: platformProfile[tg.Platform]}
				if f == nil && tg.Platform != PlatformQEMUOVMF {
					var err error
					if f, err = igvm.Open(ig.file, ig.file.Size); err != nil {
						return fail(err)
					}
				}
				switch tg.Platform {
				case PlatformIGVMMSHV:
					res, err := measure.MeasureIGVM(ctx, f, measure.Options{Profile: measure.ProfileMSHV})
					if err != nil {
						return fail(err)
					}
					tm.Policy = res.Policy
					tm.Digests = []TargetDigest{{Digest: res.Digest}}
				case PlatformQEMUOVMF:
					fw := b.pre.firmware[i]
					hashes, err := measure.HashKernel(ctx, io.NewSectionReader(kern.vmlinuz, 0, kern.vmlinuz.Size),
						io.NewSectionReader(rd.file, 0, rd.file.Size), line.Line)
					if err != nil {
						return fail(err)
					}
					ovmf, err := measure.OVMFHash(ctx, fw)
					if err != nil {
						return fail(err)
					}
					vmm, err := measure.ParseVMMType(tg.VMMType)
					if err != nil {
						return fail(err)
					}
					tm.Policy = snp.GuestPolicy(*tg.Policy)
					tm.OVMFHash, tm.VMMType, tm.GuestFeatures = &ovmf, vmm.String(), hexnum.Uint64(*tg.GuestFeatures)
					tm.KernelHashes = &KernelHashes{Kernel: hashes.Kernel.String(), Initrd: hashes.Initrd.String(), Cmdline: hashes.Cmdline.String()}
					cpus := tg.CPUs
					if len(cpus) == 0 {
						cpus = []string{""} // ec2 and gce: fixed vCPU signatures
					}
					for _, name := range cpus {
						var cpu measure.CPUModel
						if name != "" {
							if cpu, err = measure.LookupCPU(name); err != nil {
								return fail(err)
							}
						}
						for _, n := range tg.VCPUs {
							m, err := measure.MeasureOVMF(ctx, fw, measure.OVMFConfig{VCPUs: n, VCPUSig: cpu.Signature,
								GuestFeatures: uint64(*tg.GuestFeatures), VMM: vmm, Kernel: &hashes, OVMFHash: &ovmf})
							if err != nil {
								return fail(err)
							}
							d := TargetDigest{CPU: name, VCPUs: n, Digest: m.Digest}
							if name != "" {
								d.CPUSignature, d.Product = hexnum.Uint64(cpu.Signature), ProductName(cpu.Signature)
							}
							tm.Digests = append(tm.Digests, d)
						}
					}
				case PlatformIGVMKVM:
					if err := measureKVM(ctx, f, tg, &tm); err != nil {
						return fail(err)
					}
				default:
					return fail(fmt.Errorf("unknown platform %q", tg.Platform))
				}
				st.Targets = append(st.Targets, tm)
				t.Add(1)
			}
			return nil
		}})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// measureKVM measures an igvm-kvm target: QEMU's IGVM loader on KVM, per
// CPU model and vCPU count. First measure.CheckIGVM applies QEMU's and
// KVM's acceptance rules to the file for each vCPU count with the
// target's host kernel: a launch QEMU or KVM would refuse has no digest
// any report can carry, so it is an error naming the rule, never a
// listed value. Then the 1-vCPU digest per CPU model, extended by one AP
// VMSA page per further vCPU (measure.ExtendVCPUs).
func measureKVM(ctx context.Context, f *igvm.File, tg Target, tm *targetMeasurement) error {
	host, err := measure.ParseHostKernel(tg.HostKernel)
	if err != nil {
		return err
	}
	var features *uint64
	if tg.GuestFeatures != nil {
		v := uint64(*tg.GuestFeatures)
		features = &v
	}
	tm.HostKernel = host.String()
	cpus := tg.CPUs
	if len(cpus) == 0 {
		cpus = []string{""} // one vCPU: no AP carries a CPU signature
	}
	for _, name := range cpus {
		var cpu *measure.CPUModel
		if name != "" {
			m, err := measure.LookupCPU(name)
			if err != nil {
				return err
			}
			cpu = &m
		}
		opts := measure.Options{Profile: measure.ProfileKVM, CPU: cpu, HostKernel: host, GuestFeatures: features}
		for _, n := range tg.VCPUs {
			o := opts
			o.VCPUs = n
			if err := measure.CheckIGVM(ctx, f, o); err != nil {
				return fmt.Errorf("%d vCPUs, host kernel %s: %w", n, host, trimPkg(err, "measure: "))
			}
		}
		opts.VCPUs = 1
		res, err := measure.MeasureIGVM(ctx, f, opts)
		if err != nil {
			return err
		}
		tm.Policy, tm.GuestFeatures = res.Policy, res.GuestFeatures
		for _, n := range tg.VCPUs {
			d := res.Digest
			switch {
			case n == 1:
			case res.OneVCPUDigest != nil && res.APVMSAHash != nil:
				if d, err = measure.ExtendVCPUs(*res.OneVCPUDigest, *res.APVMSAHash, n); err != nil {
					return err
				}
			default: // the file has its own AP contexts: measure each count
				o := opts
				o.VCPUs = n
				r, err := measure.MeasureIGVM(ctx, f, o)
				if err != nil {
					return err
				}
				d = r.Digest
			}
			td := TargetDigest{CPU: name, VCPUs: n, Digest: d}
			if cpu != nil {
				td.CPUSignature, td.Product = hexnum.Uint64(cpu.Signature), ProductName(cpu.Signature)
			}
			tm.Digests = append(tm.Digests, td)
		}
	}
	return nil
}

// ProductName is the AMD product a vCPU signature (CPUID(1).EAX) belongs
// to, as AMD's key distribution service names it ("Milan", "Genoa",
// "Turin"), or "" when go-sev-guest does not know it.
func ProductName(signature uint32) string {
	switch abi.SevProductFromCpuid1Eax(signature).GetName() {
	case sevpb.SevProduct_SEV_PRODUCT_MILAN:
		return "Milan"
	case sevpb.SevProduct_SEV_PRODUCT_GENOA:
		return "Genoa"
	case sevpb.SevProduct_SEV_PRODUCT_TURIN:
		return "Turin"
	}
	return ""
}
