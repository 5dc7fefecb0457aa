package audit

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"github.com/pelletier/go-toml/v2"
)

// checkKataConfig checks the keys the payload sets in the Kata
// configuration containerd points the handler at (docs/node-payload.md):
// the files it boots are the ones the plan installs, the command line
// and the policy are the ones the reference values were computed for, and
// a QEMU target's ID block is one of its id-block file's. The handler name
// hashes the configuration, but a configuration hashed again under a new
// name could boot other files, or another command line, than the launch
// digests are of. It returns what it could not check.
func (v *verifier) checkKataConfig(planName string, plan *payload.Plan) ([]string, *Mismatch) {
	var kata *payload.PlanFile
	pathOf := map[string]string{}
	for i, f := range plan.Files {
		pathOf[f.Source] = f.Path
		if f.Path == plan.Containerd.ConfigPath {
			kata = &plan.Files[i]
		}
	}
	if kata == nil { // ParsePlan refuses such a plan
		return nil, &Mismatch{What: "containerd config_path", GotFrom: planName, Got: plan.Containerd.ConfigPath, Want: "a file the plan installs"}
	}
	a := v.files[kata.Source]
	if !a.ok() {
		return []string{kata.Source + " not read: its keys are unchecked"}, nil
	}
	var target *podvm.ReferenceTarget
	if v.refs != nil {
		for i, t := range v.refs.Targets {
			if t.Name == plan.Target {
				target = &v.refs.Targets[i]
			}
		}
	}
	if target == nil {
		return []string{kata.Source + ": no reference values for target " + plan.Target + ": its keys are unchecked"}, nil
	}
	hv, err := payload.HypervisorOf(target.Platform)
	if err != nil {
		return nil, &Mismatch{What: "target " + target.Name, GotFrom: podvm.FileReferenceValues, Got: oneLine(err.Error())}
	}
	var doc map[string]any
	if err := toml.Unmarshal(a.data, &doc); err != nil {
		return nil, &Mismatch{What: kata.Source, Got: oneLine(err.Error())}
	}
	tableName := "[hypervisor." + hv + "]"
	hvs, _ := doc["hypervisor"].(map[string]any)
	table, ok := hvs[hv].(map[string]any)
	if !ok {
		return nil, &Mismatch{What: kata.Source, GotFrom: kata.Source, Got: "no table " + tableName, WantFrom: "target " + target.Name + " (" + target.Platform + ")", Want: tableName}
	}

	type key struct {
		name string
		want any
		from string
	}
	installed := func(source string) key { return key{want: pathOf[source], from: planName + " (" + source + ")"} }
	with := func(k key, name string) key { k.name = name; return k }
	policy := key{"snp_guest_policy", int64(target.Policy), podvm.FileReferenceValues + " (target " + target.Name + ")"}
	var keys []key
	var unchecked []string
	switch hv {
	case payload.HypervisorCLH:
		keys = []key{
			with(installed(podvm.FileIGVM), "igvm"),
			with(installed(podvm.FileRootfs), "image"),
			{"kernel_params", "", "the command line inside " + podvm.FileIGVM},
			policy,
		}
	case payload.HypervisorQEMU:
		keys = []key{
			with(installed(payload.FirmwareFile(target.Name)), "firmware"),
			with(installed(podvm.FileKernel), "kernel"),
			with(installed(podvm.FileInitrd), "initrd"),
			with(installed(podvm.FileRootfs), "image"),
			{"rootfs_type", "erofs", "the root disk's file system"},
			policy,
		}
		// The command line the launch digests hash (link launch_digest's).
		if c := v.files[podvm.FileCmdline]; c.ok() {
			keys = append(keys, key{"kernel_params", strings.TrimSuffix(string(c.data), "\n"), podvm.FileCmdline})
		} else if v.haveLine {
			keys = append(keys, key{"kernel_params", v.cmdline, podvm.FileIGVM + "'s command line"})
		} else {
			unchecked = append(unchecked, kata.Source+": kernel_params: no command line given")
		}
	}
	for _, k := range keys {
		if got := table[k.name]; !reflect.DeepEqual(got, k.want) {
			return nil, &Mismatch{What: kata.Source + " " + tableName + " " + k.name, GotFrom: kata.Source, Got: tomlValue(got), WantFrom: k.from, Want: tomlValue(k.want)}
		}
	}
	if hv == payload.HypervisorQEMU {
		u, m := v.checkKataIDBlock(kata.Source, tableName, table, target.Name)
		return append(unchecked, u...), m
	}
	return unchecked, nil
}

// checkKataIDBlock checks that a QEMU configuration's snp_id_block and
// snp_id_auth are one block of the target's id-block file (both empty
// when the target has none).
func (v *verifier) checkKataIDBlock(source, tableName string, table map[string]any, target string) ([]string, *Mismatch) {
	block, auth := table["snp_id_block"], table["snp_id_auth"]
	name := podvm.IDBlockFile(target)
	f := v.files[name]
	what := source + " " + tableName + " snp_id_block"
	empty := func(x any) bool { return x == nil || x == "" }
	if f == nil {
		if empty(block) && empty(auth) {
			return nil, nil
		}
		return []string{source + ": snp_id_block: " + name + " not given"}, nil
	}
	if !f.ok() {
		return []string{source + ": snp_id_block: " + name + " not read"}, nil
	}
	var doc podvm.IDBlocks
	if err := json.Unmarshal(f.data, &doc); err != nil {
		return nil, nil // link id_block reports it
	}
	for i, b := range doc.Blocks {
		if block != b.IDBlock {
			continue
		}
		if auth != b.IDAuth {
			return nil, &Mismatch{What: source + " " + tableName + " snp_id_auth", GotFrom: source, Got: shorten(tomlValue(auth)),
				WantFrom: fmt.Sprintf("%s block %d", name, i), Want: shorten(tomlValue(b.IDAuth))}
		}
		// The block's digest is of a launch with its vCPU count: Kata
		// must boot that many.
		if vcpus, ok := table["default_vcpus"].(int64); ok && b.VCPUs != 0 && vcpus != int64(b.VCPUs) {
			return nil, &Mismatch{What: source + " " + tableName + " default_vcpus", GotFrom: source, Got: strconv.FormatInt(vcpus, 10),
				WantFrom: fmt.Sprintf("%s block %d, the one snp_id_block holds", name, i), Want: strconv.Itoa(b.VCPUs)}
		}
		return nil, nil
	}
	return nil, &Mismatch{What: what, GotFrom: source, Got: shorten(tomlValue(block)),
		WantFrom: name, Want: fmt.Sprintf("one of its %d blocks", len(doc.Blocks))}
}

// tomlValue shows a decoded TOML value as TOML writes it.
func tomlValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "none"
	case string:
		return oneLine(strconv.Quote(v))
	}
	return oneLine(fmt.Sprint(v))
}

// shorten keeps a long quoted value (a base64 ID block) readable on a
// line.
func shorten(s string) string {
	if len(s) > 42 {
		return s[:38] + `..."`
	}
	return s
}
