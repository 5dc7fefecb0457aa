package podvm

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// initrdResult is the initrd stage's result (pkg/initrd's Result without
// its entry list).
type initrdResult struct {
	Compression   initrd.Compression `json:"compression"`
	Level         int                `json:"level"`
	KernelRelease string             `json:"kernel_release,omitempty"`
	Modules       []initrd.Module    `json:"modules"`
	InitSHA256    string             `json:"init_sha256"`
	Entries       int                `json:"entries"`
}

// initrdStage is the initrd stage's outcome.
type initrdStage struct {
	res    initrdResult
	file   *stageFile
	inputs []FileInput
}

const stageInitrd = "initrd"

func (b *builder) initrd(ctx context.Context, kern *kernelStage, srcs []resolvedSource) (*initrdStage, error) {
	in := b.cfg.Spec.Initrd
	st := &initrdStage{}
	fail := func(field, input string, err error) (*initrdStage, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StageError{Stage: stageInitrd, Field: field, Input: input, Err: err}
	}
	inputs := map[string]string{"init": "sha256:" + b.pre.initInput.SHA256}
	if kern.modules != nil {
		inputs["modules"] = "sha256:" + kern.modules.SHA256
	}
	var sources []initrd.Source
	for i, d := range in.Dirs {
		field := fmt.Sprintf("spec.initrd.dirs[%d].src", i)
		t, err := treeDigest(ctx, d.Src.Resolved)
		if err != nil {
			return fail(field, d.Src.Written, err)
		}
		inputs[fmt.Sprintf("dir[%d]", i)] = "tree:" + t
		st.inputs = append(st.inputs, FileInput{Field: field, Path: d.Src.Written, Kind: "tree", SHA256: t})
		prefix, _ := initrd.CleanPath(d.Dst)
		sources = append(sources, initrd.Dir{Path: d.Src.Resolved, Prefix: prefix})
	}
	for i, f := range in.Files {
		field := fmt.Sprintf("spec.initrd.files[%d].src", i)
		sum, size, exec, err := hostFileDigest(ctx, f.Src.Resolved)
		if err != nil {
			return fail(field, f.Src.Written, err)
		}
		inputs[fmt.Sprintf("file[%d]", i)] = fmt.Sprintf("sha256:%s%s", sum, exec)
		st.inputs = append(st.inputs, FileInput{Field: field, Path: f.Src.Written, Kind: "file", SHA256: sum, Size: size})
		// The documented default mode, whatever the host file's other
		// permission bits.
		mode := uint32(0o644)
		if exec != "" {
			mode = 0o755
		}
		if f.Mode != nil {
			mode = uint32(*f.Mode)
		}
		sources = append(sources, initrd.File(source.File{Src: f.Src.Resolved, Dst: f.Dst, Mode: source.Perm(mode)}))
	}
	for i, s := range in.Specs {
		field := fmt.Sprintf("spec.initrd.specs[%d]", i)
		d, err := specDigest(ctx, s.Resolved)
		if err != nil {
			return fail(field, s.Written, err)
		}
		inputs[fmt.Sprintf("spec[%d]", i)] = "spec:" + d
		st.inputs = append(st.inputs, FileInput{Field: field, Path: s.Written, Kind: "spec", SHA256: d})
		sources = append(sources, initrd.SpecFile{Path: s.Resolved})
	}
	// The steps of the stage's run: the image sources read their layers
	// then.
	var sp *steps
	report := func(step string, done, total int64) { sp.report(step, done, total) }
	if len(srcs) > 0 {
		im := initrd.Image{Options: source.Options{Platform: b.cfg.Spec.Rootfs.Platform, CacheDir: b.blobs, Keychain: b.opts.Keychain, Progress: report}}
		for i, s := range srcs {
			inputs[fmt.Sprintf("source[%d]", i)] = s.Digest
			im.Sources = append(im.Sources, s.Read)
		}
		sources = append(sources, im)
	}
	var early initrd.Early
	if in.EarlyCPIO != nil {
		sum, size, err := fileDigest(ctx, in.EarlyCPIO.Resolved)
		if err != nil {
			return fail("spec.initrd.earlyCpio", in.EarlyCPIO.Written, err)
		}
		inputs["early"] = "sha256:" + sum
		st.inputs = append(st.inputs, FileInput{Field: "spec.initrd.earlyCpio", Path: in.EarlyCPIO.Written, Kind: "file", SHA256: sum, Size: size})
		early.Path = in.EarlyCPIO.Resolved
	}
	config := struct {
		Initrd          Initrd   `json:"initrd"`
		Modules         []string `json:"modules"`
		DefaultInit     bool     `json:"defaultInit"`
		SourceDateEpoch int64    `json:"sourceDateEpoch"`
	}{in, b.cfg.Spec.Kernel.Modules, in.Init == nil, *b.cfg.Spec.SourceDateEpoch}
	out, err := b.runStage(ctx, stageRun{name: stageInitrd, config: config, inputs: inputs,
		files: []string{FileInitrd}, publish: map[string]string{FileInitrd: FileInitrd}, result: &st.res,
		run: func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			cfg := initrd.Config{Sources: sources, Early: early, Compression: initrd.Compression(in.Compression),
				Level: in.Level, SourceDateEpoch: *b.cfg.Spec.SourceDateEpoch,
				Init: initrd.Init{Path: b.pre.initPath, Data: b.pre.initData, Skeleton: true}, Progress: report}
			sp = newSteps(t, stageInitrd)
			if kern.modules != nil {
				tmp, err := b.tempDir(stageInitrd)
				if err != nil {
					return &StageError{Stage: stageInitrd, Input: "temporary directory", Err: err}
				}
				defer b.removeTemp(tmp)
				dir, err := extractModules(ctx, io.NewSectionReader(kern.modules, 0, kern.modules.Size), tmp, kern.res.Release)
				if err != nil {
					return &StageError{Stage: stageInitrd, Input: fileModules, Err: err}
				}
				cfg.Modules = initrd.Modules{Dir: dir, Names: b.cfg.Spec.Kernel.Modules}
			}
			res, err := initrd.Build(ctx, cfg, progressWriter{out[FileInitrd], t})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &StageError{Stage: stageInitrd, Field: "spec.initrd", Err: trimPkg(err, "initrd: ")}
			}
			sp.end()
			st.res = initrdResult{Compression: res.Compression, Level: res.Level, KernelRelease: res.KernelRelease,
				Modules: res.Modules, InitSHA256: res.InitSHA256, Entries: len(res.Entries)}
			return nil
		}})
	if err != nil {
		return nil, err
	}
	st.file = out[FileInitrd]
	return st, nil
}

// progressWriter counts the bytes written as progress.
type progressWriter struct {
	w io.Writer
	t ProgressTask
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.t.Add(int64(n))
	return n, err
}
