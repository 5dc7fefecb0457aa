package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// PlanSchema names the install plan's format and version.
const PlanSchema = "imagebuilder.dev/install-plan/v1"

// Plan is install-plan.json: what to install where. Its files list has
// the keys Contrast's node installer reads (url, path, executable,
// integrity) beside the ones an auditor and Install use (source, sha256,
// size, mode), so one file serves both.
type Plan struct {
	Schema        string `json:"schema"`
	Handler       string `json:"handler"`
	Platform      string `json:"platform"`
	Target        string `json:"target"`
	InstallPrefix string `json:"install_prefix"`
	// HandlerDigest is the sha256 the handler name's hex digits start.
	HandlerDigest string            `json:"handler_digest"`
	Files         []PlanFile        `json:"files"`
	Containerd    ContainerdRuntime `json:"containerd"`
}

// PlanFile is one file to install.
type PlanFile struct {
	// Source is the file's name in the output directory.
	Source string `json:"source"`
	// URL is where a node installer fetches it (Options.URLBase + Source).
	URL string `json:"url"`
	// Path is the absolute install path on the node.
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Integrity is SHA256 as a subresource-integrity value ("sha256-" +
	// base64), as Contrast's node installer checks it.
	Integrity string `json:"integrity"`
	// Mode is the file mode in octal ("0644").
	Mode       string `json:"mode"`
	Executable bool   `json:"executable"`
	// TemplateSHA256 is the sha256 of the content in template form (the
	// handler name replaced by Placeholder), for the files whose content
	// names the handler; the handler name hashes that.
	TemplateSHA256 string `json:"template_sha256,omitempty"`
}

// ContainerdRuntime is the containerd runtime entry of the handler.
type ContainerdRuntime struct {
	Handler                      string   `json:"handler"`
	RuntimeType                  string   `json:"runtime_type"`
	RuntimePath                  string   `json:"runtime_path,omitempty"`
	PodAnnotations               []string `json:"pod_annotations"`
	PrivilegedWithoutHostDevices bool     `json:"privileged_without_host_devices"`
	// ConfigPath is the Kata configuration (options.ConfigPath).
	ConfigPath string `json:"config_path"`
	// ConfigVersion is the containerd config version the drop-in is
	// written for (2 or 3).
	ConfigVersion int `json:"config_version"`
}

// Marshal is the plan as JSON (two-space indent, trailing newline).
func (p *Plan) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PlanError is a malformed install plan.
type PlanError struct {
	File string
	Err  error
}

func (e *PlanError) Error() string { return fmt.Sprintf("%s: %v", e.File, e.Err) }
func (e *PlanError) Unwrap() error { return e.Err }

// ParsePlan decodes and checks an install plan (unknown fields refused):
// every path absolute, clean and under the install prefix, every source a
// plain file name, digests well formed, modes octal, and containerd's
// ConfigPath one of the files it installs.
func ParsePlan(data []byte, name string) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, &PlanError{name, err}
	}
	if dec.More() {
		return nil, &PlanError{name, fmt.Errorf("data after the JSON document")}
	}
	bad := func(format string, args ...any) error { return &PlanError{name, fmt.Errorf(format, args...)} }
	if p.Schema != PlanSchema {
		return nil, bad("schema %q: want %q", p.Schema, PlanSchema)
	}
	if err := checkHandlerName(p.Handler); err != nil {
		return nil, bad("%v", err)
	}
	pre := p.InstallPrefix
	if !path.IsAbs(pre) || !strings.HasSuffix(pre, "/") || path.Clean(pre)+"/" != pre || pre == "/" {
		return nil, bad("install_prefix %q: want an absolute, clean directory ending in /", pre)
	}
	if len(p.Files) == 0 {
		return nil, bad("no files")
	}
	seen := map[string]bool{}
	for i, f := range p.Files {
		where := fmt.Sprintf("files[%d]", i)
		if f.Source == "" || f.Source != path.Base(f.Source) || f.Source == "." || f.Source == ".." || strings.ContainsRune(f.Source, 0) {
			return nil, bad("%s: source %q: want a file name", where, f.Source)
		}
		if path.Clean(f.Path) != f.Path || !strings.HasPrefix(f.Path, pre) || strings.ContainsRune(f.Path, 0) {
			return nil, bad("%s: path %q: want a clean path under %s", where, f.Path, pre)
		}
		if seen[f.Path] {
			return nil, bad("%s: path %q listed twice", where, f.Path)
		}
		seen[f.Path] = true
		if err := checkSHA256(f.SHA256); err != nil {
			return nil, bad("%s: %v", where, err)
		}
		if f.Integrity != sriSHA256(f.SHA256) {
			return nil, bad("%s: integrity %q does not match sha256", where, f.Integrity)
		}
		if f.Size < 0 {
			return nil, bad("%s: size %d", where, f.Size)
		}
		if _, err := f.FileMode(); err != nil {
			return nil, bad("%s: %v", where, err)
		}
	}
	c := p.Containerd
	if c.Handler != p.Handler {
		return nil, bad("containerd.handler %q differs from handler %q", c.Handler, p.Handler)
	}
	if c.ConfigVersion != 2 && c.ConfigVersion != 3 {
		return nil, bad("containerd.config_version %d: want 2 or 3", c.ConfigVersion)
	}
	if !strings.HasPrefix(c.RuntimeType, "io.containerd.") || strings.ContainsAny(c.RuntimeType, "\"\\\n") {
		return nil, bad("containerd.runtime_type %q", c.RuntimeType)
	}
	// The Kata configuration containerd points the runtime at must be one
	// the plan installs: the handler name hashes those files, and a
	// configuration outside them would boot whatever it names.
	if !seen[c.ConfigPath] {
		return nil, bad("containerd.config_path %q: not a file the plan installs", c.ConfigPath)
	}
	for _, s := range append([]string{c.RuntimePath, c.ConfigPath}, c.PodAnnotations...) {
		if strings.ContainsAny(s, "\x00\n") {
			return nil, bad("containerd: %q holds a NUL or newline", s)
		}
	}
	return &p, nil
}

// FileMode is Mode as a permission; only rwx bits for owner, group and
// other are allowed.
func (f PlanFile) FileMode() (uint32, error) {
	m, err := strconv.ParseUint(f.Mode, 8, 32)
	if err != nil || len(f.Mode) != 4 || f.Mode[0] != '0' || m&^0o777 != 0 {
		return 0, fmt.Errorf("mode %q: want four octal digits such as 0644", f.Mode)
	}
	return uint32(m), nil
}
