package deb

import (
	"fmt"
	"strconv"
	"strings"
)

// Field is one field of a control file.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"` // continuation lines joined with "\n", leading space kept as written minus one
}

// Control is the control file of a binary package (one deb822 paragraph).
type Control struct {
	Fields []Field `json:"fields"` // in file order
}

// Get returns the value of the field named name (case-insensitive), or "".
func (c *Control) Get(name string) string {
	for _, f := range c.Fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Package is the package name.
func (c *Control) Package() string { return c.Get("Package") }

// Version is the package version.
func (c *Control) Version() string { return c.Get("Version") }

// Architecture is the package architecture ("amd64", "all").
func (c *Control) Architecture() string { return c.Get("Architecture") }

// Depends parses the Depends field.
func (c *Control) Depends() ([]Alternatives, error) { return ParseRelations(c.Get("Depends")) }

// InstalledSize is Installed-Size in KiB, 0 if absent.
func (c *Control) InstalledSize() int64 {
	n, _ := strconv.ParseInt(c.Get("Installed-Size"), 10, 64)
	return n
}

// ParseControl parses a binary package's control file: "Name: value"
// lines, continuation lines starting with a space or a tab, one paragraph.
// Package, Version and Architecture are required.
func ParseControl(b []byte) (*Control, error) {
	bad := func(line int, format string, args ...any) error {
		return &FormatError{Offset: -1, Msg: fmt.Sprintf("control line %d: ", line) + fmt.Sprintf(format, args...)}
	}
	c := &Control{}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		n := i + 1
		switch {
		case l == "" || strings.TrimSpace(l) == "":
			if rest := strings.TrimSpace(strings.Join(lines[i:], "")); rest != "" {
				return nil, bad(n, "a second paragraph (a binary control file has one)")
			}
		case l[0] == ' ' || l[0] == '\t':
			if len(c.Fields) == 0 {
				return nil, bad(n, "continuation line before any field")
			}
			f := &c.Fields[len(c.Fields)-1]
			f.Value += "\n" + l[1:]
		case l[0] == '#':
			return nil, bad(n, "comment in a binary control file")
		default:
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				return nil, bad(n, "%q is not a \"Name: value\" field", l)
			}
			if !validFieldName(name) {
				return nil, bad(n, "bad field name %q", name)
			}
			for _, f := range c.Fields {
				if strings.EqualFold(f.Name, name) {
					return nil, bad(n, "field %s given twice", name)
				}
			}
			c.Fields = append(c.Fields, Field{Name: name, Value: strings.TrimSpace(value)})
		}
	}
	for _, req := range []string{"Package", "Version", "Architecture"} {
		if c.Get(req) == "" {
			return nil, &FormatError{Offset: -1, Msg: "control: no " + req + " field"}
		}
	}
	if !validPackageName(c.Package()) {
		return nil, &FormatError{Offset: -1, Msg: fmt.Sprintf("control: bad package name %q", c.Package())}
	}
	return c, nil
}

// validFieldName: US-ASCII without controls, space or colon, not starting
// with "#" or "-" (deb822).
func validFieldName(s string) bool {
	if s == "" || s[0] == '#' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == ':' {
			return false
		}
	}
	return true
}

// validPackageName: lower case letters, digits, "+", "-", "." , at least
// two characters, starting alphanumeric (Debian policy 5.6.1).
func validPackageName(s string) bool {
	if len(s) < 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '+' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

// Relation is one package relation: "name:arch (op version)".
type Relation struct {
	Name    string `json:"name"`
	Arch    string `json:"arch,omitempty"`     // the ":any"-style qualifier
	Op      string `json:"op,omitempty"`       // <<, <=, =, >=, >>
	Version string `json:"version,omitempty"`  // with Op
	Restr   string `json:"restrict,omitempty"` // "[arch list] <profiles>" as written
}

// Alternatives are relations separated by "|": any one satisfies.
type Alternatives []Relation

// ParseRelations parses a relationship field (Depends, Recommends, ...).
func ParseRelations(s string) ([]Alternatives, error) {
	var out []Alternatives
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, group := range strings.Split(s, ",") {
		var alts Alternatives
		for _, rel := range strings.Split(group, "|") {
			r, err := parseRelation(strings.TrimSpace(rel))
			if err != nil {
				return nil, &FormatError{Offset: -1, Msg: fmt.Sprintf("relation %q: %v", strings.TrimSpace(rel), err)}
			}
			alts = append(alts, r)
		}
		out = append(out, alts)
	}
	return out, nil
}

func parseRelation(s string) (Relation, error) {
	var r Relation
	i := strings.IndexAny(s, " \t\n([<")
	if i < 0 {
		i = len(s)
	}
	r.Name, s = s[:i], strings.TrimSpace(s[i:])
	if n, a, ok := strings.Cut(r.Name, ":"); ok {
		r.Name, r.Arch = n, a
	}
	if !validPackageName(r.Name) {
		return r, fmt.Errorf("bad package name %q", r.Name)
	}
	if strings.HasPrefix(s, "(") {
		end := strings.IndexByte(s, ')')
		if end < 0 {
			return r, fmt.Errorf("unclosed version constraint")
		}
		in := strings.TrimSpace(s[1:end])
		s = strings.TrimSpace(s[end+1:])
		for _, op := range []string{"<<", "<=", ">=", ">>", "=", "<", ">"} {
			if v, ok := strings.CutPrefix(in, op); ok {
				r.Op, r.Version = op, strings.TrimSpace(v)
				break
			}
		}
		if r.Op == "" || r.Version == "" {
			return r, fmt.Errorf("bad version constraint (%s)", in)
		}
	}
	if s != "" {
		if s[0] != '[' && s[0] != '<' {
			return r, fmt.Errorf("unexpected %q", s)
		}
		r.Restr = s
	}
	return r, nil
}
