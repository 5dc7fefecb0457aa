package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"go.yaml.in/yaml/v3"
)

// linkHandler is link 7: where the node payload exists (install-plan.json),
// the runtime handler name is the hash of the files the node installs
// (pkg/payload's rule), each of which is the output the plan names; the
// reference values and the RuntimeClass name that handler, and the
// containerd drop-in is the plan's entry (which points at the Kata
// configuration the plan installs).
func (v *verifier) linkHandler() Link {
	var plans []string
	for n := range v.files {
		if n == payload.InstallPlanFile || (strings.HasPrefix(n, "install-plan") && strings.HasSuffix(n, ".json")) {
			plans = append(plans, n)
		}
	}
	sort.Strings(plans)
	if len(plans) == 0 {
		return Link{Status: Skipped, Detail: "no node payload (no install-plan.json)", Unchecked: []string{"install-plan.json not given"}}
	}
	var done, unchecked []string
	for _, n := range plans {
		a := v.files[n]
		if a.err != nil {
			return broken(n, a.err)
		}
		plan, err := payload.ParsePlan(a.data, n)
		if pe := (*payload.PlanError)(nil); errors.As(err, &pe) {
			return broken(n, pe.Err) // the PlanError names n already
		} else if err != nil {
			return broken(n, err)
		}
		d, u, m := v.checkPlan(n, plan)
		if m != nil {
			return fail(m)
		}
		done, unchecked = append(done, d), append(unchecked, u...)
	}
	l := Link{Status: OK, Detail: strings.Join(done, "; ")}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}

// checkPlan recomputes one plan's handler name from the installed files.
func (v *verifier) checkPlan(name string, plan *payload.Plan) (string, []string, *Mismatch) {
	var hashed []payload.HashedFile
	var unchecked []string
	for _, f := range plan.Files {
		a := v.files[f.Source]
		what := fmt.Sprintf("%s (installed as %s)", f.Source, f.Path)
		switch {
		case a == nil:
			unchecked = append(unchecked, f.Source+" not given: its sha256 is the plan's")
		case a.sum == "":
			return "", nil, &Mismatch{What: what, GotFrom: f.Source, Got: oneLine(fmt.Sprint(a.err))}
		case a.sum != f.SHA256 || a.size != f.Size:
			return "", nil, &Mismatch{What: what, GotFrom: f.Source, Got: fmt.Sprintf("sha256 %s, %d bytes", a.sum, a.size),
				WantFrom: name, Want: fmt.Sprintf("sha256 %s, %d bytes", f.SHA256, f.Size)}
		}
		rel := strings.ReplaceAll(strings.TrimPrefix(f.Path, plan.InstallPrefix), plan.Handler, payload.Placeholder)
		sum := f.SHA256
		if f.TemplateSHA256 != "" {
			sum = f.TemplateSHA256
			// The file names the handler: its template form (the name
			// replaced by the placeholder) is what is hashed.
			if a.ok() {
				t := sha256.Sum256([]byte(strings.ReplaceAll(string(a.data), plan.Handler, payload.Placeholder)))
				if got := hex.EncodeToString(t[:]); got != f.TemplateSHA256 {
					return "", nil, &Mismatch{What: what + " template sha256", GotFrom: f.Source + " with the handler name replaced by " + payload.Placeholder,
						Got: got, WantFrom: name, Want: f.TemplateSHA256}
				}
			}
		}
		hashed = append(hashed, payload.HashedFile{Path: rel, SHA256: sum})
	}
	digest, err := payload.HandlerDigest(hashed)
	if err != nil {
		return "", nil, &Mismatch{What: "handler digest", GotFrom: name, Got: oneLine(err.Error())}
	}
	if digest != plan.HandlerDigest {
		return "", nil, &Mismatch{What: "handler digest", GotFrom: name + " (handler_digest)", Got: plan.HandlerDigest,
			WantFrom: "sha256 of the installed files", Want: digest}
	}
	suffix := "-" + digest[:8]
	if !strings.HasSuffix(plan.Handler, plan.Platform+suffix) {
		return "", nil, &Mismatch{What: "runtime handler", GotFrom: name, Got: plan.Handler,
			WantFrom: "the installed files' digest", Want: "PREFIX" + plan.Platform + suffix}
	}
	// Everything else that names the handler.
	if v.refs != nil {
		for _, t := range v.refs.Targets {
			if t.Name == plan.Target && t.RuntimeHandler != plan.Handler {
				return "", nil, &Mismatch{What: "runtime handler of target " + t.Name, GotFrom: podvm.FileReferenceValues, Got: t.RuntimeHandler, WantFrom: name, Want: plan.Handler}
			}
		}
	}
	if r := v.files[payload.RuntimeClassFile]; r.ok() {
		if m := checkRuntimeClass(r.data, name, plan.Handler); m != nil {
			return "", nil, m
		}
	}
	if c := v.files[payload.ContainerdDropInFile]; c.ok() {
		if m := checkDropIn(c.data, name, plan.Containerd); m != nil {
			return "", nil, m
		}
	}
	u, m := v.checkKataConfig(name, plan)
	if m != nil {
		return "", nil, m
	}
	unchecked = append(unchecked, u...)
	return fmt.Sprintf("%s (target %s) is the hash of its %d installed files", plan.Handler, plan.Target, len(plan.Files)), unchecked, nil
}

// checkRuntimeClass decodes the RuntimeClass and checks that it is the
// handler's: its name and its handler (a text search would take the name
// in a comment for the handler).
func checkRuntimeClass(data []byte, plan, handler string) *Mismatch {
	var rc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Handler string `yaml:"handler"`
	}
	if err := yaml.Unmarshal(data, &rc); err != nil {
		return &Mismatch{What: payload.RuntimeClassFile, Got: oneLine(err.Error())}
	}
	if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" {
		return &Mismatch{What: "RuntimeClass kind", GotFrom: payload.RuntimeClassFile, Got: oneLine(rc.APIVersion + " " + rc.Kind), Want: "node.k8s.io/v1 RuntimeClass"}
	}
	orNone := func(s string) string {
		if s == "" {
			return "none"
		}
		return oneLine(s)
	}
	if rc.Handler != handler {
		return &Mismatch{What: "RuntimeClass handler", GotFrom: payload.RuntimeClassFile, Got: orNone(rc.Handler), WantFrom: plan, Want: handler}
	}
	if rc.Metadata.Name != handler {
		return &Mismatch{What: "RuntimeClass metadata.name", GotFrom: payload.RuntimeClassFile, Got: orNone(rc.Metadata.Name), WantFrom: plan, Want: handler}
	}
	return nil
}

// checkDropIn checks that the containerd drop-in is the plan's runtime
// entry as the payload writes it, byte for byte: its runtime type, shim
// and Kata configuration path are what containerd runs, and the handler
// name vouches only for the plan's.
func checkDropIn(data []byte, plan string, r payload.ContainerdRuntime) *Mismatch {
	want, err := r.DropIn()
	if err != nil {
		return &Mismatch{What: plan + " containerd entry", Got: oneLine(err.Error())}
	}
	if bytes.Equal(data, want) {
		return nil
	}
	got, exp := strings.SplitAfter(string(data), "\n"), strings.SplitAfter(string(want), "\n")
	for i := 0; ; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(exp) {
			w = exp[i]
		}
		if g != w {
			show := func(s string) string {
				if s == "" {
					return "end of file"
				}
				return oneLine(strings.TrimSpace(s))
			}
			return &Mismatch{What: fmt.Sprintf("%s line %d", payload.ContainerdDropInFile, i+1), GotFrom: payload.ContainerdDropInFile, Got: show(g),
				WantFrom: plan + "'s containerd entry", Want: show(w)}
		}
	}
}
