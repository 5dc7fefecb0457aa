package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// linkHandler is link 7: where the node payload exists (install-plan.json),
// the runtime handler name is the hash of the files the node installs
// (pkg/payload's rule), each of which is the output the plan names, and
// the reference values, the RuntimeClass and the containerd entry name
// that handler.
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
		if err != nil {
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
	if r := v.files[payload.RuntimeClassFile]; r.ok() && !strings.Contains(string(r.data), "handler: "+plan.Handler+"\n") {
		return "", nil, &Mismatch{What: "runtime handler", GotFrom: payload.RuntimeClassFile, Got: "another handler", WantFrom: name, Want: plan.Handler}
	}
	if c := v.files[payload.ContainerdDropInFile]; c.ok() && !strings.Contains(string(c.data), plan.Handler) {
		return "", nil, &Mismatch{What: "runtime handler", GotFrom: payload.ContainerdDropInFile, Got: "another handler", WantFrom: name, Want: plan.Handler}
	}
	return fmt.Sprintf("%s (target %s) is the hash of its %d installed files", plan.Handler, plan.Target, len(plan.Files)), unchecked, nil
}
