package podvm

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

// CacheVar is the one environment-style reference a path may use, at its
// start: it stands for LoadOptions.CacheDir (the imagebuilder cache,
// $IMAGEBUILDER_CACHE or ~/.cache/imagebuilder), where the fixture
// scripts keep the Debian kernel package and the systemd OCI layout.
const CacheVar = "${IMAGEBUILDER_CACHE}"

// resolver turns paths as written into absolute paths.
type resolver struct {
	baseDir  string // absolute directory of the config file
	cacheDir string // LoadOptions.CacheDir
}

// resolve returns the absolute path for p as written: CacheVar expanded,
// then relative paths taken from the config file's directory.
func (r resolver) resolve(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty path")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("NUL in path")
	}
	if rest, ok := strings.CutPrefix(p, CacheVar); ok {
		if rest != "" && rest[0] != '/' {
			return "", fmt.Errorf("%s must be followed by / or end the path", CacheVar)
		}
		if r.cacheDir == "" {
			return "", fmt.Errorf("%s is used but no cache directory is set", CacheVar)
		}
		p = r.cacheDir + rest
	}
	if strings.Contains(p, "${") {
		return "", fmt.Errorf("only %s, at the start of a path, is expanded", CacheVar)
	}
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("~ is not expanded: write a path relative to the config file, or start it with %s", CacheVar)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(r.baseDir, p)
	}
	return filepath.Clean(p), nil
}

// Path is a host path: as written in the file, and resolved (absolute,
// with CacheVar expanded and relative paths taken from the config file's
// directory). Only the written form goes into the canonical JSON, so that
// it does not depend on where the file or the cache is.
type Path struct {
	Written  string
	Resolved string
}

// String is the resolved path.
func (p *Path) String() string {
	if p == nil {
		return ""
	}
	return p.Resolved
}

func (p *Path) decodeNode(d *decoder, n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return d.errorf(n, path, "want a path (a string), got %s", kindName(n))
	}
	r, err := d.res.resolve(n.Value)
	if err != nil {
		return d.errorf(n, path, "%q: %v", n.Value, err)
	}
	p.Written, p.Resolved = n.Value, r
	return nil
}

func (p Path) MarshalJSON() ([]byte, error) { return json.Marshal(p.Written) }

// UnmarshalJSON reads the written form back (Resolved stays empty).
func (p *Path) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &p.Written) }

func (s Source) MarshalJSON() ([]byte, error) { return json.Marshal(s.Written) }

func (s *Source) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &s.Written) }

// Mode is a file mode, always read as octal ("0755", 755 and 0o755 are
// the same), written "0755".
type Mode uint32

func (m *Mode) decodeNode(d *decoder, n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		return d.errorf(n, path, "want an octal mode such as \"0644\", got %s", kindName(n))
	}
	v, err := parseMode(n.Value)
	if err != nil {
		return d.errorf(n, path, "%v", err)
	}
	*m = Mode(v)
	return nil
}

func parseMode(s string) (uint32, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal permission bits, 0000 to 7777", s)
	}
	return uint32(v), nil
}

func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

func (m Mode) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

func (m *Mode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := parseMode(s)
	*m = Mode(v)
	return err
}

// Hex is a number people read in hexadecimal (guest policy, SEV
// features): 0x-prefixed hex or decimal in the file, "0x..." in JSON
// (pkg/hexnum).
type Hex uint64

func (h *Hex) decodeNode(d *decoder, n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		return d.errorf(n, path, "want a number such as 0x30000, got %s", kindName(n))
	}
	x, err := hexnum.Parse(strings.ReplaceAll(n.Value, "_", ""))
	if err != nil {
		return d.errorf(n, path, "%v", err)
	}
	*h = Hex(x)
	return nil
}

func (h Hex) String() string { return hexnum.Uint64(h).String() }

func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(h.String()) }

func (h *Hex) UnmarshalJSON(b []byte) error { return (*hexnum.Uint64)(h).UnmarshalJSON(b) }

// ID16 is a 16-byte identifier (ID block family and image ids): 32 hex
// digits, optionally 0x-prefixed.
type ID16 [16]byte

func (id *ID16) decodeNode(d *decoder, n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return d.errorf(n, path, "want 32 hex digits, got %s", kindName(n))
	}
	v, err := parseID16(n.Value)
	if err != nil {
		return d.errorf(n, path, "%v", err)
	}
	*id = v
	return nil
}

func parseID16(s string) (ID16, error) {
	var id ID16
	t := strings.TrimPrefix(strings.ToLower(s), "0x")
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%q: want 16 bytes as 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

func (id ID16) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(id[:])) }

func (id *ID16) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := parseID16(s)
	*id = v
	return err
}

// VCPUs are vCPU counts: a list of counts and "A-B" ranges, or one of
// them ("1-8"). Stored expanded and sorted.
type VCPUs []int

// MaxVCPUs is the largest vCPU count (pkg/measure's limit).
const MaxVCPUs = measure.MaxVCPUs

func (v *VCPUs) decodeNode(d *decoder, n *yaml.Node, path string) error {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
		if len(items) == 0 {
			return d.errorf(n, path, "empty list: give at least one vCPU count")
		}
	}
	var out []int
	for i, it := range items {
		p := path
		if n.Kind == yaml.SequenceNode {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		if it.Kind != yaml.ScalarNode || (it.ShortTag() != "!!int" && it.ShortTag() != "!!str") {
			return d.errorf(it, p, "want a vCPU count or a range such as \"1-8\", got %s", kindName(it))
		}
		lo, hi, err := measure.ParseVCPURange(it.Value)
		if err != nil {
			return d.errorf(it, p, "%v", err)
		}
		for c := lo; c <= hi; c++ {
			if slices.Contains(out, c) {
				return d.errorf(it, p, "vCPU count %d given twice", c)
			}
			out = append(out, c)
		}
	}
	slices.Sort(out)
	*v = out
	return nil
}
