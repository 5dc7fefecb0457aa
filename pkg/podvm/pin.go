package podvm

import (
	"context"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// Pin is one thing PinTo fixed to what an earlier build resolved.
type Pin struct {
	// Field is the config field ("spec.rootfs.sources[0]",
	// "spec.sourceDateEpoch", "spec.rootfs.seed", "spec.kernel.deb").
	Field string `json:"field"`
	// From is the value the config gives (as written, or "" when it
	// leaves it to a default), To the value the build uses.
	From string `json:"from"`
	To   string `json:"to"`
	// Note says why a field could not be pinned ("" when it was).
	Note string `json:"note,omitempty"`
}

// PinError is a config whose inputs cannot reproduce the build of a
// manifest: the file a field names is not the one that build read.
type PinError struct {
	Field string // "spec.kernel.deb"
	Path  string // as the config writes it
	// Want is the sha256 the manifest records, Got the file's.
	Want, Got string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("%s (%s): sha256 %s, but the build of the manifest read sha256 %s: not the same file", e.Field, e.Path, e.Got, e.Want)
}

// PinTo returns a copy of c fixed to what the build that wrote m
// resolved, for a rebuild that must read exactly the same inputs:
// spec.sourceDateEpoch and spec.rootfs.seed take the manifest's values,
// and each image source (spec.rootfs.sources, spec.initrd.sources) that
// the config writes as the manifest records it is pinned to the digest it
// resolved to (an OCI manifest digest instead of a tag, a tar file's
// sha256), so a tag that moved since, or a registry that serves another
// image under it, fails instead of building something else. The kernel
// file (spec.kernel.deb or spec.kernel.bzImage) must be the one the build
// read: its sha256 is checked, and another file is a *PinError.
//
// The returned pins list what was fixed, and what could not be (a source
// the config writes differently from the manifest is left as it is, with
// a Note): the rebuild then shows what that changes.
func (c *Config) PinTo(ctx context.Context, m *Manifest) (*Config, []Pin, error) {
	if m == nil {
		return nil, nil, fmt.Errorf("podvm: pin: no manifest")
	}
	p := deepCopy(c)
	var pins []Pin

	sde := "" // the config's own value, as the build would take it
	if c.Spec.SourceDateEpoch != nil {
		sde = fmt.Sprint(*c.Spec.SourceDateEpoch)
	}
	v := m.SourceDateEpoch
	p.Spec.SourceDateEpoch = &v
	pins = append(pins, Pin{Field: "spec.sourceDateEpoch", From: sde, To: fmt.Sprint(v)})

	p.Spec.Rootfs.Seed = m.Seed
	pins = append(pins, Pin{Field: "spec.rootfs.seed", From: c.Spec.Rootfs.Seed, To: m.Seed})

	pinSources := func(field string, srcs []Source, recorded []SourceInput) {
		for i := range srcs {
			s := &srcs[i]
			f := fmt.Sprintf("%s[%d]", field, i)
			pin := Pin{Field: f, From: s.Written, To: s.Written}
			switch {
			case i >= len(recorded) || recorded[i].Source != s.Written:
				pin.Note = "not pinned: the manifest's build read another source here"
			default:
				r := recorded[i]
				digest := ""
				switch {
				case r.ManifestDigest != "" && s.Parsed.Kind != source.DockerArchive:
					digest = "sha256:" + r.ManifestDigest
				case r.SHA256 != "" && s.Parsed.Kind != source.DockerArchive:
					digest = "sha256:" + r.SHA256
				}
				if digest == "" {
					pin.Note = "not pinned: a " + string(s.Parsed.Kind) + " source has no digest to pin (its content is compared)"
					break
				}
				pinned, err := s.Parsed.Pin(digest)
				if err != nil {
					pin.Note = "not pinned: " + err.Error()
					break
				}
				s.Parsed, s.Resolved = pinned, pinned.String()
				pin.To = r.Pinned
				if pin.To == "" {
					pin.To = s.Written + "@" + digest
				}
			}
			pins = append(pins, pin)
		}
	}
	pinSources("spec.rootfs.sources", p.Spec.Rootfs.Sources, m.Inputs.RootfsSources)
	pinSources("spec.initrd.sources", p.Spec.Initrd.Sources, m.Inputs.InitrdSources)

	k := c.Spec.Kernel
	field, path := "spec.kernel.bzImage", k.BzImage
	if k.Deb != nil {
		field, path = "spec.kernel.deb", k.Deb
	}
	if path != nil {
		sum, _, err := fileDigest(ctx, path.Resolved)
		if err != nil {
			return nil, nil, &StageError{Stage: "inputs", Field: field, Input: path.Written, Err: err}
		}
		if want := m.Inputs.Kernel.SHA256; sum != want || m.Inputs.Kernel.Field != field {
			if m.Inputs.Kernel.Field != field {
				return nil, nil, &StageError{Stage: "inputs", Field: field, Input: path.Written,
					Err: fmt.Errorf("the manifest's build read its kernel from %s (%s)", m.Inputs.Kernel.Field, m.Inputs.Kernel.Path)}
			}
			return nil, nil, &PinError{Field: field, Path: path.Written, Want: want, Got: sum}
		}
		pins = append(pins, Pin{Field: field, From: path.Written, To: path.Written + " (sha256 " + sum + ", as the manifest records)"})
	}
	return p, pins, nil
}
