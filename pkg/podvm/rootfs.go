package podvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// resolvedSource is an image source with what it resolved to.
type resolvedSource struct {
	Field   string
	Written string
	Res     *source.Resolved
	// Tree is a dir: source's tree digest.
	Tree string
	// Digest is the source's stage cache input.
	Digest string
	// Read is what the build reads: the source pinned to the digest it
	// resolved to where its kind has one, so that the stage reads exactly
	// what its key names.
	Read source.Source
}

// resolveSources resolves the sources of a list field (without reading
// their layers).
func (b *builder) resolveSources(ctx context.Context, field string, list []Source) ([]resolvedSource, error) {
	opts := source.Options{Platform: b.cfg.Spec.Rootfs.Platform, CacheDir: b.blobs, Keychain: b.opts.Keychain}
	var out []resolvedSource
	for i, s := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		fail := func(err error) ([]resolvedSource, error) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &StageError{Stage: "sources", Field: f, Input: s.Written, Err: sourceCause(err)}
		}
		r, err := source.Resolve(ctx, s.Parsed, opts)
		if err != nil {
			return fail(err)
		}
		rs := resolvedSource{Field: f, Written: s.Written, Res: r, Read: s.Parsed}
		switch {
		case r.ManifestDigest != "":
			rs.Digest = "sha256:" + r.ManifestDigest
		case r.SHA256 != "":
			rs.Digest = "sha256:" + r.SHA256
		case s.Parsed.Kind == source.Dir:
			if rs.Tree, err = treeDigest(ctx, s.Parsed.Path); err != nil {
				return fail(err)
			}
			rs.Digest = "tree:" + rs.Tree
		default:
			return fail(errors.New("resolved to no digest"))
		}
		if p, err := r.Pin(); err == nil && s.Parsed.Kind != source.DockerArchive {
			rs.Read = p
		}
		out = append(out, rs)
	}
	return out, nil
}

// sourceCause drops the "source SPEC: " prefix pkg/source puts before an
// error (the StageError names the source as written, without the absolute
// path).
func sourceCause(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "source ") {
		if i := strings.Index(msg, ": "); i > 0 {
			return &trimmedError{msg: msg[i+2:], err: err}
		}
	}
	return err
}

// input is the manifest's record of a resolved source.
func (r resolvedSource) input() SourceInput {
	in := SourceInput{Field: r.Field, Source: r.Written, Kind: r.Res.Kind, Platform: r.Res.Platform,
		ManifestDigest: r.Res.ManifestDigest, ConfigDigest: r.Res.ConfigDigest, Layers: r.Res.Layers,
		SHA256: r.Res.SHA256, TreeSHA256: r.Tree}
	if r.Res.Pinned != "" {
		// The pinned form, but of the source as written (no absolute path).
		if p, err := source.Parse(r.Written); err == nil {
			switch {
			case r.Res.ManifestDigest != "" && p.Kind != source.DockerArchive:
				if pp, err := p.Pin("sha256:" + r.Res.ManifestDigest); err == nil {
					in.Pinned = pp.String()
				}
			case r.Res.SHA256 != "":
				if pp, err := p.Pin("sha256:" + r.Res.SHA256); err == nil {
					in.Pinned = pp.String()
				}
			}
		}
	}
	return in
}

// rootfsStage is the root file system stage's outcome.
type rootfsStage struct {
	desc   rootfs.Description
	disk   *stageFile
	inputs []FileInput
	agent  FileInput
}

const stageRootfs = "rootfs"

func (b *builder) rootfs(ctx context.Context, srcs []resolvedSource) (*rootfsStage, error) {
	r := b.cfg.Spec.Rootfs
	rs := &rootfsStage{}
	fail := func(field, input string, err error) (*rootfsStage, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StageError{Stage: stageRootfs, Field: field, Input: input, Err: err}
	}
	inputs := map[string]string{}
	for i, s := range srcs {
		inputs[fmt.Sprintf("source[%d]", i)] = s.Digest
	}
	sum, size, exec, err := hostFileDigest(ctx, r.Agent.Resolved)
	if err != nil {
		return fail("spec.rootfs.agent", r.Agent.Written, err)
	}
	inputs["agent"] = fmt.Sprintf("sha256:%s%s", sum, exec)
	rs.agent = FileInput{Field: "spec.rootfs.agent", Path: r.Agent.Written, Kind: "file", SHA256: sum, Size: size}
	var dirs []string
	for i, d := range r.Dirs {
		field := fmt.Sprintf("spec.rootfs.dirs[%d].src", i)
		t, err := treeDigest(ctx, d.Src.Resolved)
		if err != nil {
			return fail(field, d.Src.Written, err)
		}
		inputs[fmt.Sprintf("dir[%d]", i)] = "tree:" + t
		rs.inputs = append(rs.inputs, FileInput{Field: field, Path: d.Src.Written, Kind: "tree", SHA256: t})
		dirs = append(dirs, d.Src.Resolved)
	}
	var files []source.File
	for i, f := range r.Files {
		field := fmt.Sprintf("spec.rootfs.files[%d].src", i)
		sum, size, exec, err := hostFileDigest(ctx, f.Src.Resolved)
		if err != nil {
			return fail(field, f.Src.Written, err)
		}
		inputs[fmt.Sprintf("file[%d]", i)] = fmt.Sprintf("sha256:%s%s", sum, exec)
		rs.inputs = append(rs.inputs, FileInput{Field: field, Path: f.Src.Written, Kind: "file", SHA256: sum, Size: size})
		sf := source.File{Src: f.Src.Resolved, Dst: f.Dst}
		if f.Mode != nil {
			sf.Mode = source.Perm(uint32(*f.Mode))
		}
		files = append(files, sf)
	}
	var read []source.Source
	for _, s := range srcs {
		read = append(read, s.Read)
	}
	config := struct {
		Rootfs          Rootfs `json:"rootfs"`
		SourceDateEpoch int64  `json:"sourceDateEpoch"`
	}{r, *b.cfg.Spec.SourceDateEpoch}
	opts := rootfs.Options{Sources: read, Platform: r.Platform, Agent: r.Agent.Resolved, AddDirs: dirs, Files: files,
		Seed: r.Seed, SourceDateEpoch: *b.cfg.Spec.SourceDateEpoch, CacheDir: b.blobs, Keychain: b.opts.Keychain}
	out, err := b.runStage(ctx, stageRun{name: stageRootfs, config: config, inputs: inputs,
		files: []string{FileRootfs}, publish: map[string]string{FileRootfs: FileRootfs}, result: &rs.desc,
		run: func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			// The stage counts the disk's bytes as written (its size
			// is not known before); its steps have totals.
			st := newSteps(t, stageRootfs)
			opts := opts
			opts.Progress = st.report
			d, err := rootfs.Build(ctx, opts, &countingDisk{out[FileRootfs], t})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				field, input := rootfsField(err, r)
				return &StageError{Stage: stageRootfs, Field: field, Input: input, Err: sourceCause(trimPkg(err, "rootfs: "))}
			}
			st.end()
			rs.desc = *d
			return nil
		}})
	if err != nil {
		return nil, err
	}
	rs.disk = out[FileRootfs]
	return rs, nil
}

// rootfsField names the config field a rootfs.Build error is about.
func rootfsField(err error, r Rootfs) (field, input string) {
	var oe *rootfs.OptionError
	if errors.As(err, &oe) {
		switch oe.Field {
		case "Agent":
			return "spec.rootfs.agent", r.Agent.Written
		case "AddDirs":
			if oe.Index >= 0 && oe.Index < len(r.Dirs) {
				return fmt.Sprintf("spec.rootfs.dirs[%d].src", oe.Index), r.Dirs[oe.Index].Src.Written
			}
			return "spec.rootfs.dirs", ""
		case "Files":
			if oe.Index >= 0 && oe.Index < len(r.Files) {
				return fmt.Sprintf("spec.rootfs.files[%d]", oe.Index), r.Files[oe.Index].Src.Written
			}
			return "spec.rootfs.files", ""
		case "Seed":
			return "spec.rootfs.seed", ""
		case "Platform":
			return "spec.rootfs.platform", r.Platform
		}
	}
	return "spec.rootfs.sources", ""
}

// hostFileDigest is a host file's sha256 and size, and ":x" when it is
// executable (pkg/rootfs and pkg/initrd give such files mode 0755 unless
// the config says otherwise).
func hostFileDigest(ctx context.Context, p string) (string, int64, string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", 0, "", err
	}
	sum, size, err := fileDigest(ctx, p)
	if err != nil {
		return "", 0, "", err
	}
	return sum, size, execMark(st.Mode()), nil
}

func execMark(m fs.FileMode) string {
	if m.Perm()&0o111 != 0 {
		return ":x"
	}
	return ""
}

// countingDisk counts the bytes written to a disk image as progress.
type countingDisk struct {
	*os.File
	t ProgressTask
}

func (d *countingDisk) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.File.WriteAt(p, off)
	d.t.Add(int64(n))
	return n, err
}
