package podvm

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

// The node payload (spec.runtime) is pkg/payload's: Build checks its
// settings before the first stage (checkPayload: pkg/payload's own
// checks, run over the config's targets with placeholder digests), and
// makes it after the ID blocks from the output set (makePayload). It is
// not cached: it takes milliseconds.

const stagePayload = "payload"

// runtimeTarget returns the index and the target spec.runtime names
// (checked by validation to exist).
func (b *builder) runtimeTarget() (int, Target) {
	targets := b.cfg.Spec.Measurements.Targets
	i := slices.IndexFunc(targets, func(t Target) bool { return t.Name == b.cfg.Spec.Runtime.Target })
	if i < 0 {
		return -1, Target{}
	}
	return i, targets[i]
}

// payloadOptions is spec.runtime as pkg/payload's Options, field for
// field (TestRuntimeFields checks that none is left out).
func (b *builder) payloadOptions() payload.Options {
	r := b.cfg.Spec.Runtime
	o := payload.Options{
		Target:                       r.Target,
		HandlerPrefix:                r.HandlerPrefix,
		Platform:                     r.Platform,
		InstallPrefix:                r.InstallPrefix,
		Shim:                         r.Shim,
		RuntimePath:                  r.RuntimePath,
		PodAnnotations:               slices.Clone(r.PodAnnotations),
		PrivilegedWithoutHostDevices: r.PrivilegedWithoutHostDevices,
		ContainerdConfigVersion:      r.ContainerdConfigVersion,
		VMMemoryMiB:                  r.VMMemoryMiB,
		OverheadMemoryMiB:            r.OverheadMemoryMiB,
		OverheadCPU:                  r.OverheadCPU,
		NodeSelector:                 r.NodeSelector,
		Labels:                       r.Labels,
		URLBase:                      r.URLBase,
	}
	if o.PodAnnotations == nil {
		o.PodAnnotations = []string{}
	}
	if r.CPU != "" {
		// The ID blocks carry the CPU model as the target names it.
		if _, t := b.runtimeTarget(); len(t.CPUs) > 0 {
			o.CPU, _ = runtimeCPU(r.CPU, t)
		}
	}
	if r.KataConfigTemplate != nil && b.pre != nil {
		o.KataConfigTemplate = b.pre.kataTemplate
		o.KataConfigTemplateName = r.KataConfigTemplate.Written
	}
	return o
}

// runtimeField is the config field of a payload.Options field: the
// spec.runtime field of the same Go name.
func runtimeField(option string) string {
	if option == "KataConfigTemplateName" {
		option = "KataConfigTemplate"
	}
	if f, ok := reflect.TypeFor[Runtime]().FieldByName(option); ok {
		if n := yamlName(f); n != "" {
			return "spec.runtime." + n
		}
	}
	return "spec.runtime"
}

// payloadTargets are the build's targets as pkg/payload takes them: with
// ms and ids the measured policies and the ID blocks; without (the check
// before the build) the config's policies and, with spec.idBlock,
// placeholder blocks for every launch digest the build will make.
func (b *builder) payloadTargets(ms *measureStage, ids *idBlockStage) ([]payload.Target, error) {
	spec := &b.cfg.Spec
	blocks := map[string][]payload.IDBlock{}
	if ids != nil {
		for _, doc := range ids.Files {
			for _, e := range doc.Blocks {
				blk, err1 := base64.StdEncoding.DecodeString(e.IDBlock)
				auth, err2 := base64.StdEncoding.DecodeString(e.IDAuth)
				if err := errors.Join(err1, err2); err != nil {
					return nil, fmt.Errorf("target %s: ID block: %w", doc.Target, err)
				}
				blocks[doc.Target] = append(blocks[doc.Target], payload.IDBlock{CPU: e.CPU, VCPUs: e.VCPUs, Block: blk, Auth: auth})
			}
		}
	}
	var out []payload.Target
	for i, t := range spec.Measurements.Targets {
		pt := payload.Target{Name: t.Name, Platform: t.Platform, Policy: uint64(*spec.IGVM.Policy)}
		if t.Policy != nil {
			pt.Policy = uint64(*t.Policy)
		}
		if ms != nil {
			pt.Policy = uint64(ms.Targets[i].Policy)
		}
		if t.Platform == PlatformQEMUOVMF {
			pt.Firmware = &payload.Artifact{Path: t.Firmware.Resolved, SHA256: b.pre.fwSHA256[i], Size: int64(len(b.pre.firmware[i].Data()))}
		}
		switch {
		case ids != nil:
			pt.IDBlocks = blocks[t.Name]
		case spec.IDBlock != nil && t.Platform != PlatformIGVMMSHV:
			cpus := t.CPUs
			if len(cpus) == 0 {
				cpus = []string{""}
			}
			for _, cpu := range cpus {
				for _, n := range t.VCPUs {
					pt.IDBlocks = append(pt.IDBlocks, payload.IDBlock{CPU: cpu, VCPUs: n, Block: make([]byte, 96), Auth: make([]byte, 4096)})
				}
			}
		}
		out = append(out, pt)
	}
	return out, nil
}

// payloadArtifacts are the output files the payload can install.
var payloadArtifacts = []string{FileIGVM, FileInitrd, FileRootfs, FileKernel}

// checkPayload runs pkg/payload over the config before anything is built,
// with placeholder digests, so that a bad spec.runtime (a setting
// pkg/payload refuses, a Kata template it cannot edit, a CPU model or
// vCPU count without an ID block, a handler name too long) is a config
// error at its line rather than a failure after the build.
func (b *builder) checkPayload(ctx context.Context) error {
	if b.cfg.Spec.Runtime == nil {
		return nil
	}
	targets, err := b.payloadTargets(nil, nil)
	if err != nil {
		return err
	}
	set := payload.OutputSet{Dir: b.out.Path(), Targets: targets}
	for _, n := range payloadArtifacts {
		set.Artifacts = append(set.Artifacts, payload.Artifact{Name: n, Size: 1, SHA256: strings.Repeat("0", 64)})
	}
	if _, err := payload.Generate(ctx, set, b.payloadOptions()); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		field, err := b.payloadField(err)
		return b.cfg.errorAt(field, "%v", err)
	}
	return nil
}

// payloadField names the config field a pkg/payload error is about, and
// returns the error without the package prefix.
func (b *builder) payloadField(err error) (string, error) {
	var oe *payload.OptionError
	if errors.As(err, &oe) {
		return runtimeField(oe.Field), oe.Err
	}
	if t := b.cfg.Spec.Runtime.KataConfigTemplate; t != nil {
		if rest, ok := strings.CutPrefix(err.Error(), "payload: "+t.Written+": "); ok {
			return "spec.runtime.kataConfigTemplate", errors.New(rest)
		}
	}
	return "spec.runtime", trimPkg(err, "payload: ")
}

// makePayload makes the node payload from the build's outputs (the final
// podvm.igvm, with its ID block if it has one), the command line, the
// targets' policies and their ID blocks.
func (b *builder) makePayload(ctx context.Context, s *buildState, outputs map[string]*stageFile) (*payload.Payload, error) {
	targets, err := b.payloadTargets(s.ms, s.ids)
	if err != nil {
		return nil, &StageError{Stage: stagePayload, Err: err}
	}
	// pkg/payload reads no artifact (only the firmware, whose digest is
	// given too); Path names a stage cache file where there is one.
	set := payload.OutputSet{Dir: b.out.Path(), Cmdline: s.line.Line, Targets: targets}
	for _, n := range payloadArtifacts {
		f := outputs[n]
		set.Artifacts = append(set.Artifacts, payload.Artifact{Name: n, Size: f.Size, SHA256: f.SHA256, Path: f.path})
	}
	p, err := payload.Generate(ctx, set, b.payloadOptions())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		field, err := b.payloadField(err)
		return nil, &StageError{Stage: stagePayload, Field: field, Err: err}
	}
	return p, nil
}

// payloadData is the content of a payload output: its bytes, or for the
// firmware the OVMF image the build read (and measured) at its start.
func (b *builder) payloadData(o payload.Output) ([]byte, error) {
	if o.Src == "" {
		return o.Data, nil
	}
	for i, t := range b.cfg.Spec.Measurements.Targets {
		if t.Firmware != nil && t.Firmware.Resolved == o.Src && b.pre.firmware[i] != nil {
			return b.pre.firmware[i].Data(), nil
		}
	}
	return nil, fmt.Errorf("%s: the payload copies %s, which the build did not read", o.Name, o.Src)
}

// runtimeInfo is the manifest's runtime section.
func runtimeInfo(p *payload.Payload) *RuntimeInfo {
	ri := &RuntimeInfo{Handler: p.Handler, HandlerDigest: p.HandlerDigest, Target: p.Target, Platform: p.Platform,
		Hypervisor: p.Hypervisor, InstallPrefix: p.InstallPrefix, HashedFiles: p.HashedFiles,
		VMMemoryMiB: p.VMMemoryMiB, OverheadMemoryMiB: p.OverheadMemoryMiB, OverheadCPU: p.OverheadCPU}
	for _, o := range p.Outputs() {
		ri.Files = append(ri.Files, o.Name)
	}
	return ri
}
