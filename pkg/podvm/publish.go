package podvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// publish writes the small outputs and the manifest, and names the output
// directory.
func (b *builder) publish(ctx context.Context, s *buildState) (*Manifest, error) {
	fail := func(input string, err error) (*Manifest, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StageError{Stage: "output", Input: input, Err: err}
	}
	// The big outputs come from the stages: from the cache by link, or
	// already in the output directory.
	igvmFile := s.ig.file
	if s.ids.signed != nil {
		igvmFile = s.ids.signed
	}
	outputs := map[string]*stageFile{FileRootfs: s.root.disk, FileInitrd: s.rd.file, FileKernel: s.kern.vmlinuz, FileIGVM: igvmFile}
	var list []Output
	for _, name := range sortedKeys2(outputs) {
		f := outputs[name]
		if f.path != "" {
			if err := b.out.AddLink(name, f.path); err != nil {
				return fail(name, err)
			}
		}
		list = append(list, Output{Name: name, Size: f.Size, SHA256: f.SHA256})
	}
	// The small ones are written here.
	small := map[string][]byte{FileCmdline: []byte(s.line.Line + "\n")}
	targets, idFiles := b.targetInfo(s)
	for _, doc := range idFiles {
		j, err := marshalIndent(doc)
		if err != nil {
			return fail(IDBlockFile(doc.Target), err)
		}
		small[IDBlockFile(doc.Target)] = j
	}
	// The node payload: its files join the small outputs, and its
	// handler names the runtime target's reference values.
	handlers := map[string]string{}
	if b.cfg.Spec.Runtime != nil {
		p, err := b.makePayload(ctx, s, outputs)
		if err != nil {
			return nil, err
		}
		for _, o := range p.Outputs() {
			if _, dup := small[o.Name]; dup || outputs[o.Name] != nil {
				return fail(o.Name, errors.New("the node payload names an output the build writes already"))
			}
			if small[o.Name], err = b.payloadData(o); err != nil {
				return fail(o.Name, err)
			}
		}
		handlers[p.Target] = p.Handler
		s.payload = runtimeInfo(p)
	}
	rv, crv, left, err := referenceValues(b.cfg.Metadata.Name, s.ms, handlers)
	if err != nil {
		return fail(FileReferenceValues, err)
	}
	for _, name := range left {
		b.log.Warn(FileContrastReferences+" leaves a target out: none of its CPU models is a product Contrast accepts",
			"target", name, "products", strings.Join(ContrastProducts, ", "))
	}
	if small[FileReferenceValues], err = marshalIndent(rv); err != nil {
		return fail(FileReferenceValues, err)
	}
	if small[FileContrastReferences], err = marshalIndent(crv); err != nil {
		return fail(FileContrastReferences, err)
	}
	for _, name := range sortedKeys2(small) {
		f, err := b.out.Create(name, 0o644)
		if err != nil {
			return fail(name, err)
		}
		if _, err := f.Write(small[name]); err != nil {
			return fail(name, err)
		}
		sum := sha256.Sum256(small[name])
		list = append(list, Output{Name: name, Size: int64(len(small[name])), SHA256: hex.EncodeToString(sum[:])})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	m, err := b.manifest(s, targets, list)
	if err != nil {
		return fail(FileManifest, err)
	}
	j, err := marshalIndent(m)
	if err != nil {
		return fail(FileManifest, err)
	}
	if _, err := b.manifestFile.Write(j); err != nil {
		return fail(FileManifest, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.out.Commit(); err != nil {
		return fail(b.opts.Output, trimOutputPrefix(err))
	}
	return m, nil
}

// targetInfo is the manifest's targets and the ID block files.
func (b *builder) targetInfo(s *buildState) ([]TargetInfo, []IDBlocks) {
	var out []TargetInfo
	ids := map[string]IDBlocks{}
	for _, d := range s.ids.Files {
		ids[d.Target] = d
	}
	var files []IDBlocks
	for i, tm := range s.ms.Targets {
		t := b.cfg.Spec.Measurements.Targets[i]
		ti := TargetInfo{Name: tm.Name, Platform: tm.Platform, Profile: tm.Profile, Policy: tm.Policy, Digests: tm.Digests,
			VMMType: tm.VMMType, GuestFeatures: tm.GuestFeatures, HostKernel: tm.HostKernel, OVMFHash: tm.OVMFHash, KernelHashes: tm.KernelHashes}
		if t.Firmware != nil {
			ti.Firmware = t.Firmware.Written
		}
		if d, ok := ids[tm.Name]; ok {
			ti.IDBlock = IDBlockFile(tm.Name)
			files = append(files, d)
		}
		out = append(out, ti)
	}
	return out, files
}

// manifest assembles manifest.json.
func (b *builder) manifest(s *buildState, targets []TargetInfo, outputs []Output) (*Manifest, error) {
	def, err := CanonicalJSON(b.cfg)
	if err != nil {
		return nil, err
	}
	c := b.cfg
	m := &Manifest{
		Schema: ManifestSchema, Tool: b.opts.Tool, Name: c.Metadata.Name, Labels: c.Metadata.Labels,
		Config:          ManifestConfig{File: filepath.Base(b.loaded.Source.File), SHA256: b.loaded.Source.SHA256, Defaulted: def},
		SourceDateEpoch: *c.Spec.SourceDateEpoch, Seed: c.Spec.Rootfs.Seed,
		Kernel: KernelInfo{Release: s.kern.res.Release, BootProtocol: s.kern.res.BootProtocol, CmdlineSize: s.kern.res.CmdlineSize},
		Initrd: InitrdInfo{Compression: s.rd.res.Compression, Level: s.rd.res.Level, Entries: s.rd.res.Entries,
			Modules: s.rd.res.Modules, InitSHA256: s.rd.res.InitSHA256},
		Rootfs: RootfsInfo{DiskSize: s.root.desc.DiskSize, DiskGUID: s.root.desc.DiskGUID, Partitions: s.root.desc.Partitions,
			Filesystem: s.root.desc.Filesystem, Verity: s.root.desc.Verity},
		Cmdline: *s.line,
		IGVM:    igvmInfo(&s.ig.res),
		Targets: targets,
		Runtime: s.payload,
		Outputs: outputs,
	}
	if m.Initrd.Modules == nil {
		m.Initrd.Modules = []initrd.Module{}
	}
	if s.ids.IGVMDigest != nil {
		m.IGVM.IDBlockDigest = s.ids.IGVMDigest
		m.IGVM.UnsignedSHA256 = s.ig.file.SHA256
	}
	in := &m.Inputs
	in.Kernel = s.kern.input
	in.GuestInit = b.pre.initInput
	in.Agent = s.root.agent
	in.RootfsSources = sourceInputs(s.srcs)
	in.RootfsFiles = b.addedFiles(s.root)
	in.RootfsInputs = nonNil(s.root.inputs)
	in.InitrdSources = sourceInputs(s.isrcs)
	in.InitrdInputs = nonNil(s.rd.inputs)
	in.ACPI = s.ig.acpi
	in.Firmware = nonNil(b.pre.fwInputs)
	in.IDKey, in.AuthorKey = b.pre.idKeyIn, b.pre.authorIn
	in.KataConfigTemplate = b.pre.kataInput
	return m, nil
}

func sourceInputs(rs []resolvedSource) []SourceInput {
	out := []SourceInput{}
	for _, r := range rs {
		out = append(out, r.input())
	}
	return out
}

// addedFiles are the root file system's added files with the config field
// that brought each, instead of its host path.
func (b *builder) addedFiles(root *rootfsStage) []AddedFile {
	r := b.cfg.Spec.Rootfs
	out := []AddedFile{}
	for _, f := range root.desc.AddedFiles {
		src := "spec.rootfs"
		for i, d := range r.Dirs {
			if rel, err := filepath.Rel(d.Src.Resolved, f.Source); err == nil && filepath.IsLocal(rel) {
				src = fmt.Sprintf("spec.rootfs.dirs[%d]", i)
			}
		}
		for i, fe := range r.Files {
			if fe.Src.Resolved == f.Source || strings.TrimPrefix(f.Path, "/") == strings.TrimPrefix(fe.Dst, "/") {
				src = fmt.Sprintf("spec.rootfs.files[%d]", i)
			}
		}
		out = append(out, AddedFile{Path: f.Path, Source: src, Size: f.Size, SHA256: f.SHA256, Mode: f.Mode})
	}
	return out
}

// marshalIndent is the JSON form of every output document: two-space
// indent, a final newline, no HTML escaping (command lines hold '&').
func marshalIndent(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys2[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
