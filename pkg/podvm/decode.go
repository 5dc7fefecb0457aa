package podvm

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imagebuilder/imagebuilder/internal/suggest"
)

// Position is where a field's value is in the file.
type Position struct{ Line, Column int }

// decoder fills Go values from a yaml.Node tree strictly: every mapping
// key must name a field (by its yaml tag), scalars must have the type of
// the field, and every field's position is recorded for later errors.
type decoder struct {
	file string
	pos  map[string]Position
	res  resolver
}

// nodeDecoder is implemented by types that read themselves from a node.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string) error
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) *Error {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// kindName names what a node holds, for "want X, got Y" errors.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%q (%s)", n.Value, n.ShortTag())
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode fills v (addressable) from n.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errorf(n, path, "YAML anchors and aliases are not supported: write the value out")
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "" && n.Style&yaml.TaggedStyle != 0 {
		return d.errorf(n, path, "explicit YAML tags (%s) are not supported", n.Tag)
	}
	d.pos[path] = Position{n.Line, n.Column}
	if isNull(n) {
		return nil // as if absent: the default applies
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			return nd.decodeNode(d, n, path)
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		if err := d.decode(n, nv.Elem(), path); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	case reflect.Struct:
		return d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.errorf(n, path, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if isNull(c) {
				// A null field means "the default"; a null item has none.
				return d.errorf(c, fmt.Sprintf("%s[%d]", path, i), "empty list item")
			}
			if err := d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			return d.errorf(n, path, "want a mapping, got %s", kindName(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
				return d.errorf(k, path, "keys must be strings, got %s", kindName(k))
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return d.errorf(k, join(path, k.Value), "given twice")
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, ev, join(path, k.Value)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			return d.errorf(n, path, "want a string, got %s (quote it if it is meant as one)", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return d.errorf(n, path, "want true or false, got %s", kindName(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.errorf(n, path, "%v", err)
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return d.errorf(n, path, "want an integer, got %s", kindName(n))
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			return d.errorf(n, path, "integer %s out of range", n.Value)
		}
		var lo, hi int64 = math.MinInt64, math.MaxInt64
		switch v.Kind() {
		case reflect.Int32:
			lo, hi = math.MinInt32, math.MaxInt32
		case reflect.Uint32:
			lo, hi = 0, math.MaxUint32
		case reflect.Uint64:
			lo = 0
		}
		if i < lo || i > hi {
			return d.errorf(n, path, "%s is out of range (%d to %d)", n.Value, lo, hi)
		}
		if v.Kind() == reflect.Uint32 || v.Kind() == reflect.Uint64 {
			v.SetUint(uint64(i))
		} else {
			v.SetInt(i)
		}
		return nil
	}
	return d.errorf(n, path, "internal error: cannot decode into %s", v.Type())
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "want a mapping, got %s", kindName(n))
	}
	t := v.Type()
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return d.errorf(k, path, "keys must be strings, got %s", kindName(k))
		}
		if seen[k.Value] {
			return d.errorf(k, join(path, k.Value), "given twice")
		}
		seen[k.Value] = true
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			return d.errorf(k, join(path, k.Value), "unknown field%s", fieldHint(t, k.Value))
		}
		if err := d.decode(val, v.FieldByIndex(f.Index), join(path, k.Value)); err != nil {
			return err
		}
	}
	return nil
}

// yamlName is a field's key, "" for fields not in the file.
func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if n := yamlName(f); n != "" && n == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldHint names the known fields, or the one a mistyped key is closest to.
func fieldHint(t reflect.Type, key string) string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	if n := suggest.Closest(key, names, 2); n != "" {
		return fmt.Sprintf(" (did you mean %q?)", n)
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}
