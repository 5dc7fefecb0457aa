package podvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// CmdlineTooLongError is a command line longer than the kernel's boot
// protocol takes (its setup header's cmdline_size).
type CmdlineTooLongError struct {
	Len, Max int
}

func (e *CmdlineTooLongError) Error() string {
	return fmt.Sprintf("the command line is %d bytes, longer than the %d the kernel's boot protocol takes (cmdline_size)", e.Len, e.Max)
}

// cmdline is the command line stage: the base parameters, then the root
// fragment of the kind the config chooses.
func (b *builder) cmdline(root *rootfsStage, kern *kernelStage) (*CmdlineInfo, error) {
	c := b.cfg.Spec.Cmdline
	var frag string
	switch c.Root {
	case RootIBRoot:
		frag = root.desc.Cmdline.IBRoot
	case RootSystemd:
		frag = root.desc.Cmdline.Systemd
	case RootDMModCreate:
		frag = root.desc.Cmdline.DMModCreate
	}
	if frag == "" {
		return nil, &StageError{Stage: "cmdline", Field: "spec.cmdline.root", Err: fmt.Errorf("the root file system has no %s fragment", c.Root)}
	}
	line := strings.Join(append(append([]string{}, c.Parameters...), frag), " ")
	if max := int(kern.res.CmdlineSize); len(line) > max {
		return nil, &StageError{Stage: "cmdline", Field: "spec.cmdline.parameters", Err: &CmdlineTooLongError{Len: len(line), Max: max}}
	}
	return &CmdlineInfo{Line: line, Root: c.Root, Fragment: frag}, nil
}

// igvmStage is the IGVM stage's outcome: the file without an ID block.
type igvmStage struct {
	res  linuxboot.Result
	file *stageFile
	acpi *FileInput
}

const (
	stageIGVM    = "igvm"
	fileUnsigned = "podvm.igvm"
)

func (b *builder) igvm(ctx context.Context, kern *kernelStage, rd *initrdStage, line *CmdlineInfo) (*igvmStage, error) {
	g := b.cfg.Spec.IGVM
	st := &igvmStage{}
	fail := func(field, input string, err error) (*igvmStage, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StageError{Stage: stageIGVM, Field: field, Input: input, Err: err}
	}
	inputs := map[string]string{"vmlinuz": "sha256:" + kern.vmlinuz.SHA256, "initrd": "sha256:" + rd.file.SHA256}
	switch {
	case g.ACPI.Tables != nil:
		t, err := treeDigest(ctx, g.ACPI.Tables.Resolved)
		if err != nil {
			return fail("spec.igvm.acpi.tables", g.ACPI.Tables.Written, err)
		}
		inputs["acpi"] = "tree:" + t
		st.acpi = &FileInput{Field: "spec.igvm.acpi.tables", Path: g.ACPI.Tables.Written, Kind: "tree", SHA256: t}
	case g.ACPI.Pages != nil:
		sum, size, err := fileDigest(ctx, g.ACPI.Pages.Resolved)
		if err != nil {
			return fail("spec.igvm.acpi.pages", g.ACPI.Pages.Written, err)
		}
		inputs["acpi"] = "sha256:" + sum
		st.acpi = &FileInput{Field: "spec.igvm.acpi.pages", Path: g.ACPI.Pages.Written, Kind: "file", SHA256: sum, Size: size}
	}
	kind, err := layoutKind(g.Layout.Kind)
	if err != nil {
		return fail("spec.igvm.layout.kind", "", err)
	}
	config := struct {
		IGVM    IGVM   `json:"igvm"`
		Cmdline string `json:"cmdline"`
	}{g, line.Line}
	// The file is published as it is unless an igvm-mshv target's ID
	// block goes into it (the idblock stage then writes podvm.igvm).
	publish := map[string]string{fileUnsigned: FileIGVM}
	if b.signsIGVM() {
		publish = nil
	}
	out, err := b.runStage(ctx, stageRun{name: stageIGVM, config: config, inputs: inputs, files: []string{fileUnsigned},
		publish: publish, result: &st.res, total: kern.vmlinuz.Size + rd.file.Size,
		run: func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			kdata, err := kern.vmlinuz.readAll()
			if err != nil {
				return &StageError{Stage: stageIGVM, Input: FileKernel, Err: err}
			}
			idata, err := rd.file.readAll()
			if err != nil {
				return &StageError{Stage: stageIGVM, Input: FileInitrd, Err: err}
			}
			bz, err := linuxboot.ParseBzImage(kdata)
			if err != nil {
				return &StageError{Stage: stageIGVM, Input: FileKernel, Err: trimPkg(err, "linuxboot: ")}
			}
			var acpi *linuxboot.ACPI
			switch {
			case g.ACPI.Tables != nil:
				if acpi, err = linuxboot.ACPIFromDir(g.ACPI.Tables.Resolved); err != nil {
					return &StageError{Stage: stageIGVM, Field: "spec.igvm.acpi.tables", Input: g.ACPI.Tables.Written, Err: trimPkg(err, "linuxboot: ")}
				}
			case g.ACPI.Pages != nil:
				if acpi, err = linuxboot.ReadACPIPagesFile(g.ACPI.Pages.Resolved); err != nil {
					return &StageError{Stage: stageIGVM, Field: "spec.igvm.acpi.pages", Input: g.ACPI.Pages.Written, Err: trimPkg(err, "linuxboot: ")}
				}
			}
			opts := linuxboot.Options{Layout: kind, Cmdline: line.Line, Initrd: idata, ACPI: acpi, Policy: snp.GuestPolicy(*g.Policy),
				PvalidateOpt: *g.Layout.PvalidateOpt, EncryptedPage: *g.Layout.EncryptedPage, SVME: *g.Layout.SVME}
			img, err := linuxboot.Build(ctx, bz, opts)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var le *linuxboot.LayoutError
				field := ""
				if errors.As(err, &le) {
					field = map[string]string{"Cmdline": "spec.cmdline.parameters", "Initrd": "spec.initrd", "ACPI": "spec.igvm.acpi",
						"Policy": "spec.igvm.policy", "Kernel": "spec.kernel", "Layout": "spec.igvm.layout.kind"}[le.Field]
				}
				return &StageError{Stage: stageIGVM, Field: field, Err: trimPkg(err, "linuxboot: ")}
			}
			res, err := img.Write(ctx, progressWriter{out[fileUnsigned], t})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &StageError{Stage: stageIGVM, Input: FileIGVM, Err: err}
			}
			st.res = *res
			return nil
		}})
	if err != nil {
		return nil, err
	}
	st.file = out[fileUnsigned]
	return st, nil
}

// signsIGVM says whether an ID block goes into the IGVM file: an
// igvm-mshv target with spec.idBlock.
func (b *builder) signsIGVM() bool {
	if b.cfg.Spec.IDBlock == nil {
		return false
	}
	for _, t := range b.cfg.Spec.Measurements.Targets {
		if t.Platform == PlatformIGVMMSHV {
			return true
		}
	}
	return false
}
