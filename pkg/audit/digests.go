package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// targetConfig is what the manifest's defaulted config says of a target
// beyond the manifest's own record (the kvm profile's options).
type targetConfig struct {
	HostKernel    string     `json:"hostKernel"`
	GuestFeatures *podvm.Hex `json:"guestFeatures"`
}

// configTargets reads the targets of the manifest's defaulted config.
func (v *verifier) configTargets() map[string]targetConfig {
	out := map[string]targetConfig{}
	if v.manifest == nil {
		return out
	}
	var c struct {
		Spec struct {
			Measurements struct {
				Targets []struct {
					Name string `json:"name"`
					targetConfig
				} `json:"targets"`
			} `json:"measurements"`
		} `json:"spec"`
	}
	if json.Unmarshal(v.manifest.Config.Defaulted, &c) == nil {
		for _, t := range c.Spec.Measurements.Targets {
			out[t.Name] = t.targetConfig
		}
	}
	return out
}

// manifestTarget finds a target of the manifest by name, with its index.
func (v *verifier) manifestTarget(name string) (*podvm.TargetInfo, int) {
	if v.manifest == nil {
		return nil, -1
	}
	for i := range v.manifest.Targets {
		if v.manifest.Targets[i].Name == name {
			return &v.manifest.Targets[i], i
		}
	}
	return nil, -1
}

// firmware is an OVMF image that may be a qemu-ovmf target's.
type firmware struct {
	name string
	sum  string
	data []byte
	err  error
}

// firmwares are the OVMF images at hand: Options.Firmware and the output
// directory's ovmf-*.fd files, each read once.
func (v *verifier) firmwares() []firmware {
	var out []firmware
	for _, p := range v.opts.Firmware {
		a := readArtifact(v.ctx, filepath.Base(p), p, MaxFirmware)
		out = append(out, firmware{name: p, sum: a.sum, data: a.data, err: a.err})
	}
	var names []string
	for n := range v.files {
		if strings.HasPrefix(n, "ovmf-") && strings.HasSuffix(n, ".fd") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		a := v.files[n]
		out = append(out, firmware{name: n, sum: a.sum, data: a.data, err: a.err})
	}
	return out
}

// recordedFirmware is the sha256 the manifest records for target i's
// firmware, "" when it has none.
func (v *verifier) recordedFirmware(i int) string {
	if v.manifest == nil || i < 0 {
		return ""
	}
	field := fmt.Sprintf("spec.measurements.targets[%d].firmware", i)
	for _, f := range v.manifest.Inputs.Firmware {
		if f.Field == field {
			return f.SHA256
		}
	}
	return ""
}

// linkDigests is link 5: every launch digest of reference-values.json,
// recomputed.
func (v *verifier) linkDigests() Link {
	targets, from := v.publishedTargets()
	if targets == nil {
		why := v.missing(podvm.FileReferenceValues)
		if v.rErr != nil {
			return broken(podvm.FileReferenceValues, v.rErr)
		}
		return Link{Status: Skipped, Detail: "no reference values: " + why, Unchecked: []string{why}}
	}
	var done, unchecked []string
	if from != podvm.FileReferenceValues {
		unchecked = append(unchecked, v.missing(podvm.FileReferenceValues)+": checked manifest.json's targets")
	}
	var fws []firmware
	fwRead := false
	cfgs := v.configTargets()
	for _, t := range targets {
		where := fmt.Sprintf("%s (target %s)", from, t.Name)
		switch t.Platform {
		case podvm.PlatformIGVMMSHV, podvm.PlatformIGVMKVM:
			if l := v.igvmUnusable(); l != nil {
				if l.Status == Skipped {
					unchecked = append(unchecked, t.Name+": podvm.igvm not given")
					continue
				}
				return *l
			}
			for _, val := range t.Values {
				opts := measure.Options{Profile: measure.ProfileMSHV}
				if t.Platform == podvm.PlatformIGVMKVM {
					c := cfgs[t.Name]
					if mt, _ := v.manifestTarget(t.Name); mt != nil && mt.HostKernel != "" {
						c.HostKernel = mt.HostKernel // as the build measured
					}
					var err error
					if opts, err = kvmOptions(val, c); err != nil {
						return fail(&Mismatch{What: t.Name + " value", GotFrom: where, Got: err.Error()})
					}
				}
				res, err := measure.MeasureIGVM(v.ctx, v.ig.f, opts)
				if err != nil {
					// A file the loader would refuse under the target's
					// settings (a kvm host kernel, a vCPU count) has no
					// digest at all.
					return fail(&Mismatch{What: t.Name + " launch digest" + valueLabel(val), GotFrom: "podvm.igvm measured under profile " + string(opts.Profile),
						Got: oneLine(err.Error()), WantFrom: where, Want: val.Digest.String()})
				}
				if res.Digest != val.Digest {
					return fail(&Mismatch{What: t.Name + " launch digest" + valueLabel(val), WantFrom: "podvm.igvm measured under profile " + string(opts.Profile),
						Want: res.Digest.String(), GotFrom: where, Got: val.Digest.String()})
				}
				if res.Policy != t.Policy {
					return fail(&Mismatch{What: t.Name + " guest policy", WantFrom: "podvm.igvm", Want: res.Policy.String(), GotFrom: where, Got: t.Policy.String()})
				}
			}
			done = append(done, fmt.Sprintf("%s: %d from podvm.igvm", t.Name, len(t.Values)))
		case podvm.PlatformQEMUOVMF:
			if !fwRead {
				fws, fwRead = v.firmwares(), true
			}
			n, fwUsed, why, m := v.checkOVMF(t, where, fws)
			if m != nil {
				return fail(m)
			}
			if why != "" {
				unchecked = append(unchecked, t.Name+": "+why)
				continue
			}
			done = append(done, fmt.Sprintf("%s: %d from %s, vmlinuz, initrd.img and the command line", t.Name, n, fwUsed))
		default:
			unchecked = append(unchecked, fmt.Sprintf("%s: platform %q unknown", t.Name, t.Platform))
		}
	}
	// The manifest records the same digests.
	if v.manifest != nil && from == podvm.FileReferenceValues {
		for _, t := range targets {
			mt, _ := v.manifestTarget(t.Name)
			if mt == nil {
				return fail(&Mismatch{What: "target " + t.Name, GotFrom: "reference-values.json", Got: "lists it", WantFrom: "manifest.json", Want: "no such target"})
			}
			if a, b := digestList(mt.Digests), digestList(t.Values); a != b {
				return fail(&Mismatch{What: t.Name + " launch digests", GotFrom: "reference-values.json", Got: b, WantFrom: "manifest.json", Want: a})
			}
		}
	}
	// Contrast's coordinator reads reference-values.contrast.json: every
	// measurement it accepts must be one of the digests above.
	if c := v.files[podvm.FileContrastReferences]; c != nil && from == podvm.FileReferenceValues {
		if c.err != nil {
			return broken(podvm.FileContrastReferences, c.err)
		}
		if m := checkContrast(c.data, targets); m != nil {
			return fail(m)
		}
		done = append(done, "reference-values.contrast.json lists only those")
	}
	if len(done) == 0 {
		return Link{Status: Skipped, Detail: "no launch digest could be recomputed", Unchecked: unchecked}
	}
	l := Link{Status: OK, Detail: "launch digests recomputed equal " + from + ": " + strings.Join(done, "; ")}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}

// checkContrast checks that every measurement of Contrast's reference
// values is a launch digest of a target of its platform, for its product
// and vCPU count where the digest depends on them.
func checkContrast(data []byte, targets []podvm.ReferenceTarget) *Mismatch {
	var doc map[string]struct {
		SNP []struct {
			Platform           string
			ProductName        string
			TrustedMeasurement string
			CPUs               int
		} `json:"snp"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return &Mismatch{What: podvm.FileContrastReferences, Got: oneLine("not Contrast's reference values: " + err.Error())}
	}
	handlers := make([]string, 0, len(doc))
	for h := range doc {
		handlers = append(handlers, h)
	}
	sort.Strings(handlers)
	for _, h := range handlers {
		for i, e := range doc[h].SNP {
			ok := false
			for _, t := range targets {
				if t.PlatformName != e.Platform {
					continue
				}
				for _, val := range t.Values {
					if val.Digest.String() == e.TrustedMeasurement && (val.Product == "" || val.Product == e.ProductName) &&
						(val.VCPUs == 0 || val.VCPUs == e.CPUs) {
						ok = true
					}
				}
			}
			if !ok {
				return &Mismatch{What: fmt.Sprintf("%s[%s].snp[%d]", podvm.FileContrastReferences, h, i),
					Got:     fmt.Sprintf("TrustedMeasurement %s (%s, %s, %d vCPUs)", e.TrustedMeasurement, e.Platform, e.ProductName, e.CPUs),
					GotFrom: podvm.FileContrastReferences, WantFrom: podvm.FileReferenceValues, Want: "a launch digest of a target of that platform, product and vCPU count"}
			}
		}
	}
	return nil
}

// publishedTargets are reference-values.json's targets, or without it the
// manifest's (as reference targets).
func (v *verifier) publishedTargets() ([]podvm.ReferenceTarget, string) {
	if v.refs != nil {
		return v.refs.Targets, podvm.FileReferenceValues
	}
	if v.manifest != nil && v.files[podvm.FileReferenceValues] == nil {
		var out []podvm.ReferenceTarget
		for _, t := range v.manifest.Targets {
			out = append(out, podvm.ReferenceTarget{Name: t.Name, Platform: t.Platform, Policy: t.Policy, Values: t.Digests})
		}
		return out, podvm.FileManifest
	}
	return nil, ""
}

func valueLabel(d podvm.TargetDigest) string {
	var parts []string
	if d.CPU != "" {
		parts = append(parts, d.CPU)
	}
	if d.VCPUs != 0 {
		parts = append(parts, fmt.Sprintf("%d vCPUs", d.VCPUs))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func digestList(ds []podvm.TargetDigest) string {
	var s []string
	for _, d := range ds {
		s = append(s, strings.TrimSpace(valueLabel(d)+" "+d.Digest.String()))
	}
	return strings.Join(s, ", ")
}

// kvmOptions are the kvm profile's options for one value of an igvm-kvm
// target.
func kvmOptions(val podvm.TargetDigest, c targetConfig) (measure.Options, error) {
	o := measure.Options{Profile: measure.ProfileKVM, VCPUs: max(val.VCPUs, 1)}
	if val.CPU != "" {
		cpu, err := measure.LookupCPU(val.CPU)
		if err != nil {
			return o, err
		}
		o.CPU = &cpu
	}
	if c.HostKernel != "" {
		h, err := measure.ParseHostKernel(c.HostKernel)
		if err != nil {
			return o, err
		}
		o.HostKernel = h
	}
	if c.GuestFeatures != nil {
		g := uint64(*c.GuestFeatures)
		o.GuestFeatures = &g
	}
	return o, nil
}

// checkOVMF recomputes a qemu-ovmf target's digests from its firmware,
// vmlinuz, initrd.img and the command line. It returns how many it
// checked and from which firmware, or why it could not, or the first
// mismatch.
func (v *verifier) checkOVMF(t podvm.ReferenceTarget, where string, fws []firmware) (n int, fwName, why string, m *Mismatch) {
	mt, idx := v.manifestTarget(t.Name)
	want := v.recordedFirmware(idx)
	var fw *firmware
	for i := range fws {
		if fws[i].err != nil {
			continue
		}
		if fws[i].sum == want || (want == "" && len(fws) == 1) {
			fw = &fws[i]
			break
		}
	}
	if fw == nil {
		for _, f := range fws {
			if f.err != nil {
				return 0, "", "", &Mismatch{What: "firmware", GotFrom: f.name, Got: oneLine(f.err.Error())}
			}
		}
		if len(fws) > 0 && want != "" {
			var got []string
			for _, f := range fws {
				got = append(got, f.name+" sha256 "+f.sum)
			}
			return 0, "", "", &Mismatch{What: t.Name + " firmware", WantFrom: "manifest.json's inputs.firmware", Want: "sha256 " + want,
				GotFrom: "the firmware given", Got: strings.Join(got, ", ")}
		}
		return 0, "", "no OVMF firmware given to recompute its digests from", nil
	}
	for _, name := range []string{podvm.FileKernel, podvm.FileInitrd} {
		if why := v.missing(name); why != "" {
			return 0, "", why, nil
		}
	}
	line, lineFrom := v.cmdline, "podvm.igvm's command line"
	if c := v.files[podvm.FileCmdline]; c.ok() {
		line, lineFrom = strings.TrimSuffix(string(c.data), "\n"), "cmdline.txt"
	} else if !v.haveLine {
		return 0, "", "no command line (cmdline.txt or podvm.igvm)", nil
	}
	ovmf, err := measure.ParseOVMF(fw.data)
	if err != nil {
		return 0, "", "", &Mismatch{What: "firmware", GotFrom: fw.name, Got: oneLine(err.Error())}
	}
	kern, rd := v.files[podvm.FileKernel].data, v.files[podvm.FileInitrd].data
	hashes, err := measure.HashKernel(v.ctx, bytes.NewReader(kern), bytes.NewReader(rd), line)
	if err != nil {
		return 0, "", "", &Mismatch{What: "kernel hashes", GotFrom: "vmlinuz, initrd.img", Got: err.Error()}
	}
	vmm, features := measure.VMMQEMU, uint64(1)
	if mt != nil {
		if mt.VMMType != "" {
			if vmm, err = measure.ParseVMMType(mt.VMMType); err != nil {
				return 0, "", "", &Mismatch{What: t.Name + " vmm_type", GotFrom: "manifest.json", Got: err.Error()}
			}
		}
		if mt.GuestFeatures != 0 {
			features = uint64(mt.GuestFeatures)
		}
		if kh := mt.KernelHashes; kh != nil {
			for _, c := range []struct{ what, got, want string }{
				{"kernel_sha256", kh.Kernel, hashes.Kernel.String()}, {"initrd_sha256", kh.Initrd, hashes.Initrd.String()},
				{"cmdline_sha256", kh.Cmdline, hashes.Cmdline.String()}} {
				if c.got != c.want {
					return 0, "", "", &Mismatch{What: t.Name + " " + c.what, GotFrom: "manifest.json (kernel_hashes)", Got: c.got,
						WantFrom: "vmlinuz, initrd.img and " + lineFrom, Want: c.want}
				}
			}
		}
	}
	for _, val := range t.Values {
		var sig uint32
		if val.CPU != "" {
			cpu, err := measure.LookupCPU(val.CPU)
			if err != nil {
				return 0, "", "", &Mismatch{What: t.Name + " cpu", GotFrom: where, Got: err.Error()}
			}
			sig = cpu.Signature
		}
		m, err := measure.MeasureOVMF(v.ctx, ovmf, measure.OVMFConfig{VCPUs: max(val.VCPUs, 1), VCPUSig: sig, GuestFeatures: features, VMM: vmm, Kernel: &hashes})
		if err != nil {
			return 0, "", "", &Mismatch{What: t.Name + " launch digest" + valueLabel(val), GotFrom: fw.name, Got: oneLine(err.Error())}
		}
		if m.Digest != val.Digest {
			return 0, "", "", &Mismatch{What: t.Name + " launch digest" + valueLabel(val), WantFrom: fmt.Sprintf("%s, vmlinuz, initrd.img and %s", fw.name, lineFrom),
				Want: m.Digest.String(), GotFrom: where, Got: val.Digest.String()}
		}
	}
	return len(t.Values), filepath.Base(fw.name), "", nil
}

// linkIDBlocks is link 6: every ID block carries its target's digest and
// policy, its signatures verify, its keys are the expected ones.
func (v *verifier) linkIDBlocks() Link {
	var names []string
	for n := range v.files {
		if strings.HasPrefix(n, "id-block-") && strings.HasSuffix(n, ".json") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	// The manifest names the ID block files its targets have.
	if v.manifest != nil {
		for _, t := range v.manifest.Targets {
			if t.IDBlock != "" && v.files[t.IDBlock] == nil && v.dir {
				return fail(&Mismatch{What: t.IDBlock, WantFrom: "manifest.json (target " + t.Name + ")", Want: "an ID block file", GotFrom: "the directory", Got: "no such file"})
			}
		}
	}
	targets, from := v.publishedTargets()
	byName := map[string]podvm.ReferenceTarget{}
	for _, t := range targets {
		byName[t.Name] = t
	}
	var keys []KeyDigests
	var done, unchecked []string
	igvmBlock := false
	for _, n := range names {
		a := v.files[n]
		if a.err != nil {
			return broken(n, a.err)
		}
		var doc podvm.IDBlocks
		if err := json.Unmarshal(a.data, &doc); err != nil {
			return broken(n, fmt.Errorf("not an ID block file: %v", err))
		}
		if doc.Schema != podvm.IDBlockSchema {
			return broken(n, fmt.Errorf("schema %q: want %q", doc.Schema, podvm.IDBlockSchema))
		}
		t, ok := byName[doc.Target]
		if !ok {
			if targets == nil {
				unchecked = append(unchecked, n+": no reference values to check its digests against")
			} else {
				return fail(&Mismatch{What: n, GotFrom: n, Got: "target " + doc.Target, WantFrom: from, Want: "no such target"})
			}
		}
		k, m := v.checkIDBlocks(n, &doc, t, ok, from)
		if m != nil {
			return Link{Status: Failed, Mismatch: m, Detail: m.String(), Keys: append(keys, k...)}
		}
		keys = append(keys, k...)
		inIGVM := ""
		if doc.InIGVM {
			igvmBlock = true
			if l := v.igvmUnusable(); l != nil {
				if l.Status != Skipped {
					return *l
				}
				unchecked = append(unchecked, n+": podvm.igvm not given (its SNP_ID_BLOCK)")
			} else {
				if m := v.checkIGVMBlock(n, &doc); m != nil {
					return Link{Status: Failed, Mismatch: m, Detail: m.String(), Keys: keys}
				}
				inIGVM = ", the one in podvm.igvm"
			}
		}
		done = append(done, fmt.Sprintf("%s: %s%s", doc.Target, plural(len(doc.Blocks), "block"), inIGVM))
	}
	// An SNP_ID_BLOCK in the IGVM file without its id-block file: one the
	// manifest does not record is a failure; otherwise it is checked on
	// its own (its signature, and its digest against the file's).
	if !igvmBlock && v.ig != nil {
		for _, h := range v.ig.f.Directives() {
			x, ok := h.(*igvm.SNPIDBlock)
			if !ok {
				continue
			}
			if v.manifest != nil && v.manifest.IGVM.IDBlockDigest == nil {
				return fail(&Mismatch{What: "SNP_ID_BLOCK", GotFrom: "podvm.igvm", Got: "has one (digest " + snp.Digest(x.LD).String() + ")",
					WantFrom: "manifest.json (igvm.id_block_digest)", Want: "none"})
			}
			blk, auth, err := measure.VerifyIGVMIDBlock(v.ctx, v.ig.f, measure.Options{Profile: measure.ProfileMSHV})
			if err != nil {
				return fail(&Mismatch{What: "SNP_ID_BLOCK", GotFrom: "podvm.igvm", Got: oneLine(err.Error())})
			}
			if d := v.manifest; d != nil && *d.IGVM.IDBlockDigest != blk.Digest {
				return fail(&Mismatch{What: "SNP_ID_BLOCK digest", GotFrom: "podvm.igvm", Got: blk.Digest.String(),
					WantFrom: "manifest.json (igvm.id_block_digest)", Want: d.IGVM.IDBlockDigest.String()})
			}
			kd := KeyDigests{Target: "podvm.igvm", IDKeyDigest: auth.IDKeyDigest()}
			if auth.HasAuthorKey() {
				a := auth.AuthorKeyDigest()
				kd.AuthorKeyDigest = &a
			}
			keys = append(keys, kd)
			keyless := v.manifest != nil && v.manifestKey(false) == nil
			if m := v.expectKey("podvm.igvm's SNP_ID_BLOCK ID key", kd.IDKeyDigest, v.opts.IDKeyDigest, v.manifestKey(false), keyless); m != nil {
				return Link{Status: Failed, Mismatch: m, Detail: m.String(), Keys: keys}
			}
			if keyless {
				if m := checkKeyless("podvm.igvm's SNP_ID_BLOCK", blk, auth); m != nil {
					return Link{Status: Failed, Mismatch: m, Detail: m.String(), Keys: keys}
				}
				keys[len(keys)-1].Keyless = true
			}
			done = append(done, "podvm.igvm's SNP_ID_BLOCK carries its mshv launch digest")
			unchecked = append(unchecked, "no id-block file for podvm.igvm's SNP_ID_BLOCK")
			names = append(names, "")
			break
		}
	}
	if len(names) == 0 {
		return Link{Status: OK, Detail: "no ID blocks (no id-block-TARGET.json, none in podvm.igvm)"}
	}
	l := Link{Status: OK, Keys: keys, Detail: "digests, policies and signatures hold: " + strings.Join(done, "; ") + "; keys: " + keyText(keys)}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func keyText(keys []KeyDigests) string {
	var s []string
	seen := map[string]bool{}
	for _, k := range keys {
		t := "ID key " + k.IDKeyDigest.String()
		if k.Keyless {
			t = "keyless, ID key " + k.IDKeyDigest.String()
		}
		if k.AuthorKeyDigest != nil {
			t += ", author key " + k.AuthorKeyDigest.String()
		}
		if !seen[t] {
			seen[t] = true
			s = append(s, t)
		}
	}
	return strings.Join(s, "; ")
}

// checkIDBlocks checks the blocks of one id-block file.
func (v *verifier) checkIDBlocks(name string, doc *podvm.IDBlocks, t podvm.ReferenceTarget, haveTarget bool, from string) ([]KeyDigests, *Mismatch) {
	mm := func(what, got, wantFrom, want string) *Mismatch {
		return &Mismatch{What: what, GotFrom: name, Got: got, WantFrom: wantFrom, Want: want}
	}
	if len(doc.Blocks) == 0 {
		return nil, mm(name, "no blocks", "", "")
	}
	if haveTarget {
		if doc.Policy != t.Policy {
			return nil, mm(name+" policy", doc.Policy.String(), from+" (target "+t.Name+")", t.Policy.String())
		}
		if len(doc.Blocks) != len(t.Values) {
			return nil, mm(name+" blocks", fmt.Sprint(len(doc.Blocks)), from+" (target "+t.Name+" values)", fmt.Sprint(len(t.Values)))
		}
	}
	kd := KeyDigests{Target: doc.Target, Keyless: doc.Keyless}
	for i, e := range doc.Blocks {
		label := fmt.Sprintf("%s block %d%s", name, i, valueLabel(podvm.TargetDigest{CPU: e.CPU, VCPUs: e.VCPUs}))
		rawB, err1 := base64.StdEncoding.DecodeString(e.IDBlock)
		rawA, err2 := base64.StdEncoding.DecodeString(e.IDAuth)
		if err1 != nil || err2 != nil {
			return nil, mm(label, "snp_id_block or snp_id_auth is not base64", "", "")
		}
		blk, err := snp.UnmarshalIDBlock(rawB)
		if err != nil {
			return nil, mm(label, oneLine(err.Error()), "", "")
		}
		auth, err := snp.UnmarshalIDAuth(rawA)
		if err != nil {
			return nil, mm(label, oneLine(err.Error()), "", "")
		}
		if blk.Digest != e.Digest {
			return nil, mm(label+" digest", blk.Digest.String()+" (in the block)", name+" (digest field)", e.Digest.String())
		}
		if haveTarget {
			want := t.Values[i]
			if want.CPU != e.CPU || want.VCPUs != e.VCPUs {
				return nil, mm(label, "is for"+valueLabel(podvm.TargetDigest{CPU: e.CPU, VCPUs: e.VCPUs}), from, "value "+fmt.Sprint(i)+" is for"+valueLabel(want))
			}
			if blk.Digest != want.Digest {
				return nil, mm(label+" digest", blk.Digest.String(), from+" (target "+t.Name+valueLabel(want)+")", want.Digest.String())
			}
		}
		if blk.Policy != doc.Policy {
			return nil, mm(label+" policy", blk.Policy.String()+" (in the block)", name+" (policy field)", doc.Policy.String())
		}
		if got := hex.EncodeToString(blk.FamilyID[:]); got != doc.FamilyID {
			return nil, mm(label+" family_id", got, name, doc.FamilyID)
		}
		if got := hex.EncodeToString(blk.ImageID[:]); got != doc.ImageID {
			return nil, mm(label+" image_id", got, name, doc.ImageID)
		}
		if blk.GuestSVN != doc.GuestSVN {
			return nil, mm(label+" guest_svn", fmt.Sprint(blk.GuestSVN), name, fmt.Sprint(doc.GuestSVN))
		}
		if err := auth.Verify(blk); err != nil {
			return nil, mm(label+" signature", oneLine(err.Error()), "", "")
		}
		if doc.Keyless {
			if m := checkKeyless(label, blk, auth); m != nil {
				return nil, m
			}
		}
		id := auth.IDKeyDigest()
		if i == 0 {
			kd.IDKeyDigest = id
			if auth.HasAuthorKey() {
				a := auth.AuthorKeyDigest()
				kd.AuthorKeyDigest = &a
			}
		}
		// A keyless block's ID key is recovered from its fixed signature:
		// each block has its own; the file records the first one's.
		if id != doc.IDKeyDigest && (i == 0 || !doc.Keyless) {
			return []KeyDigests{kd}, mm(label+" ID key", id.String()+" (signed with)", name+" (id_key_digest)", doc.IDKeyDigest.String())
		}
		if doc.Keyless && v.manifestKey(false) != nil {
			return []KeyDigests{kd}, mm(label, "keyless", "manifest.json (inputs.id_key)", "signed with ID key "+v.manifestKey(false).String())
		}
		if m := v.expectKey(label+" ID key", id, v.opts.IDKeyDigest, v.manifestKey(false), doc.Keyless); !doc.Keyless && m != nil {
			return []KeyDigests{kd}, m
		}
		var author *snp.Digest
		if auth.HasAuthorKey() {
			a := auth.AuthorKeyDigest()
			author = &a
		}
		if !sameDigest(author, doc.AuthorKeyDigest) {
			return []KeyDigests{kd}, mm(label+" author key", digestText(author)+" (signed with)", name+" (author_key_digest)", digestText(doc.AuthorKeyDigest))
		}
		if author != nil || v.opts.AuthorKeyDigest != nil || v.manifestKey(true) != nil {
			if !sameDigest(author, firstDigest(v.opts.AuthorKeyDigest, v.manifestKey(true))) {
				src := "manifest.json (inputs.author_key)"
				if v.opts.AuthorKeyDigest != nil {
					src = "the expected author key"
				}
				return []KeyDigests{kd}, mm(label+" author key", digestText(author), src, digestText(firstDigest(v.opts.AuthorKeyDigest, v.manifestKey(true))))
			}
		}
	}
	return []KeyDigests{kd}, nil
}

// checkKeyless checks that a block said to be signed without a key
// carries exactly the fixed keyless signature (snp.KeylessIDAuth), not a
// signature by some key.
func checkKeyless(what string, blk *snp.IDBlock, auth *snp.IDAuth) *Mismatch {
	want, err := snp.KeylessIDAuth(blk)
	if err != nil {
		return &Mismatch{What: what, GotFrom: "the keyless signature", Got: oneLine(err.Error())}
	}
	if !bytes.Equal(want.Marshal(), auth.Marshal()) {
		return &Mismatch{What: what + " ID key", GotFrom: "its signature", Got: auth.IDKeyDigest().String(),
			WantFrom: "a keyless build (the fixed signature)", Want: want.IDKeyDigest().String()}
	}
	return nil
}

// expectKey checks an ID key digest against the expected one (given, or
// the manifest's; a keyless block has none).
func (v *verifier) expectKey(what string, got snp.Digest, given, recorded *snp.Digest, keyless bool) *Mismatch {
	switch {
	case given != nil && got != *given:
		return &Mismatch{What: what, GotFrom: "the block's signature", Got: got.String(), WantFrom: "the expected ID key", Want: given.String()}
	case given == nil && recorded != nil && got != *recorded:
		return &Mismatch{What: what, GotFrom: "the block's signature", Got: got.String(), WantFrom: "manifest.json (inputs.id_key)", Want: recorded.String()}
	case given == nil && recorded == nil && v.manifest != nil && !keyless:
		return &Mismatch{What: what, GotFrom: "the block's signature", Got: got.String(), WantFrom: "manifest.json", Want: "no ID key (a keyless build)"}
	}
	return nil
}

// manifestKey is the manifest's ID key (author: the author key) digest.
func (v *verifier) manifestKey(author bool) *snp.Digest {
	if v.manifest == nil {
		return nil
	}
	k := v.manifest.Inputs.IDKey
	if author {
		k = v.manifest.Inputs.AuthorKey
	}
	if k == nil {
		return nil
	}
	d := k.PublicKeyDigest
	return &d
}

func firstDigest(ds ...*snp.Digest) *snp.Digest {
	for _, d := range ds {
		if d != nil {
			return d
		}
	}
	return nil
}

func sameDigest(a, b *snp.Digest) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func digestText(d *snp.Digest) string {
	if d == nil {
		return "none"
	}
	return d.String()
}

// checkIGVMBlock checks that podvm.igvm's SNP_ID_BLOCK is the id-block
// file's (its one block), and that the file measures to its digest.
func (v *verifier) checkIGVMBlock(name string, doc *podvm.IDBlocks) *Mismatch {
	var hdrs []*igvm.SNPIDBlock
	for _, h := range v.ig.f.Directives() {
		if x, ok := h.(*igvm.SNPIDBlock); ok {
			hdrs = append(hdrs, x)
		}
	}
	if len(hdrs) != 1 {
		return &Mismatch{What: "SNP_ID_BLOCK", GotFrom: "podvm.igvm", Got: fmt.Sprintf("%d of them", len(hdrs)), WantFrom: name + " (in_igvm)", Want: "one"}
	}
	e := doc.Blocks[0]
	rawB, _ := base64.StdEncoding.DecodeString(e.IDBlock)
	rawA, _ := base64.StdEncoding.DecodeString(e.IDAuth)
	policy := doc.Policy
	for _, h := range v.ig.f.Initialization() {
		if p, ok := h.(*igvm.GuestPolicy); ok && p.CompatibilityMask&hdrs[0].CompatibilityMask != 0 {
			policy = snp.GuestPolicy(p.Policy)
		}
	}
	blk, auth := hdrs[0].IDBlock(policy), hdrs[0].IDAuth()
	if !bytes.Equal(blk.Marshal(), rawB) {
		return &Mismatch{What: "SNP_ID_BLOCK", GotFrom: "podvm.igvm", Got: "block digest " + blk.Digest.String(), WantFrom: name, Want: "block digest " + e.Digest.String(),
			Detail: fmt.Sprintf("block sha256 %x, %s's %x", sha256.Sum256(blk.Marshal()), name, sha256.Sum256(rawB))}
	}
	if !bytes.Equal(auth.Marshal(), rawA) {
		return &Mismatch{What: "SNP_ID_BLOCK authentication", GotFrom: "podvm.igvm", Got: "ID key " + auth.IDKeyDigest().String(), WantFrom: name,
			Want: "ID key " + doc.IDKeyDigest.String(), Detail: "the signatures or keys differ"}
	}
	return nil
}
