package payload

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The TOML edits here change a few keys of one table and keep every other
// byte of the file (comments, order, spelling), which no TOML library's
// marshaller does: decoding and re-encoding loses comments and order. So
// go-toml's own parser (its unstable AST, which reports the byte range of
// every key-value) finds where things are, the edit splices text at those
// ranges, and the result is decoded again and compared with the input to
// prove that only the intended keys changed.

// tomlValue is a value to write: a string, an int64 or a bool.
type tomlValue any

// setting is one key of a table to set.
type setting struct {
	Key   string
	Value tomlValue
}

// formatTOMLValue writes v as a TOML literal.
func formatTOMLValue(v tomlValue) string {
	switch v := v.(type) {
	case string:
		return quoteTOML(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = quoteTOML(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("payload: no TOML form for %T", v))
}

// quoteTOML is s as a TOML basic string.
func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlTable is what the parser found about one [table] header.
type tomlTable struct {
	path        []string
	headerStart int // offset of '['
	headerEnd   int // offset after the header line's newline
	lastKVEnd   int // offset after the line of the table's last key-value; headerEnd when it has none
}

// tomlKeyValue is one key-value expression.
type tomlKeyValue struct {
	table      []string // the table it belongs to (nil: the root)
	key        []string // the key's parts, as decoded
	start, end int      // byte range of "key = value"
	valueStart int      // offset of the value; -1 for an array or inline table
	lineEnd    int      // offset after the line's newline (or the end of the file)
}

// scanTOML lists the tables and key-values of doc in order.
func scanTOML(doc []byte) ([]tomlTable, []tomlKeyValue, error) {
	var p unstable.Parser
	p.Reset(doc)
	var tables []tomlTable
	var kvs []tomlKeyValue
	var cur []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			var path []string
			var first, last unstable.Range
			it := e.Key()
			for i := 0; it.Next(); i++ {
				k := it.Node()
				if i == 0 {
					first = k.Raw
				}
				last = k.Raw
				path = append(path, string(k.Data))
			}
			start := bytes.LastIndexByte(doc[:first.Offset], '[')
			if e.Kind == unstable.ArrayTable && start > 0 && doc[start-1] == '[' {
				start--
			}
			end := lineEnd(doc, int(last.Offset+last.Length))
			cur = path
			if e.Kind == unstable.ArrayTable {
				// Keys under an array table belong to one element;
				// nothing here edits them.
				cur = append(slices.Clone(path), "[]")
			}
			tables = append(tables, tomlTable{path: cur, headerStart: start, headerEnd: end, lastKVEnd: end})
		case unstable.KeyValue:
			var key []string
			it := e.Key()
			for it.Next() {
				key = append(key, string(it.Node().Data))
			}
			v := e.Value()
			vs := -1
			switch v.Kind {
			case unstable.String, unstable.Integer, unstable.Float, unstable.Bool,
				unstable.DateTime, unstable.LocalDate, unstable.LocalDateTime, unstable.LocalTime:
				vs = int(v.Raw.Offset)
			}
			start, end := int(e.Raw.Offset), int(e.Raw.Offset+e.Raw.Length)
			le := lineEnd(doc, end)
			kvs = append(kvs, tomlKeyValue{table: cur, key: key, start: start, end: end, valueStart: vs, lineEnd: le})
			if len(tables) > 0 {
				tables[len(tables)-1].lastKVEnd = le
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, nil, tomlSyntaxError(doc, err)
	}
	return tables, kvs, nil
}

// tomlSyntaxError says where a parse error is (line and column).
func tomlSyntaxError(doc []byte, err error) error {
	var pe *unstable.ParserError
	if perr, ok := err.(*unstable.ParserError); ok {
		pe = perr
	}
	if pe == nil || len(pe.Highlight) == 0 {
		return fmt.Errorf("not valid TOML: %v", err)
	}
	off := bytes.Index(doc, pe.Highlight)
	if off < 0 {
		return fmt.Errorf("not valid TOML: %v", err)
	}
	line := bytes.Count(doc[:off], []byte("\n")) + 1
	col := off - (bytes.LastIndexByte(doc[:off], '\n') + 1) + 1
	return fmt.Errorf("line %d, column %d: not valid TOML: %s", line, col, pe.Message)
}

// lineEnd is the offset after the newline that ends the line holding off
// (a trailing comment is part of the line), or len(doc).
func lineEnd(doc []byte, off int) int {
	if i := bytes.IndexByte(doc[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(doc)
}

// setTableKeys returns doc with each setting written into the table named
// by path: an existing key keeps its place and spelling and gets the new
// value; a missing key is added after the table's last key-value. Every
// other byte stays. The result is decoded and checked: the table holds the
// settings, and everything else decodes as before.
func setTableKeys(doc []byte, path []string, set []setting) ([]byte, error) {
	tables, kvs, err := scanTOML(doc)
	if err != nil {
		return nil, err
	}
	ti := slices.IndexFunc(tables, func(t tomlTable) bool { return slices.Equal(t.path, path) })
	if ti < 0 {
		return nil, fmt.Errorf("no [%s] table", strings.Join(path, "."))
	}
	type splice struct {
		start, end int
		text       string
	}
	var splices []splice
	var missing []setting
	for _, s := range set {
		i := slices.IndexFunc(kvs, func(kv tomlKeyValue) bool {
			return slices.Equal(kv.table, path) && len(kv.key) == 1 && kv.key[0] == s.Key
		})
		if i < 0 {
			missing = append(missing, s)
			continue
		}
		kv := kvs[i]
		if kv.valueStart < 0 {
			return nil, fmt.Errorf("[%s] %s: holds an array or table; want a %s", strings.Join(path, "."), s.Key, tomlTypeName(s.Value))
		}
		splices = append(splices, splice{kv.valueStart, kv.end, formatTOMLValue(s.Value)})
	}
	if len(missing) > 0 {
		at := tables[ti].lastKVEnd
		var b strings.Builder
		if at > 0 && doc[at-1] != '\n' {
			b.WriteByte('\n')
		}
		for _, s := range missing {
			fmt.Fprintf(&b, "%s = %s\n", s.Key, formatTOMLValue(s.Value))
		}
		splices = append(splices, splice{at, at, b.String()})
	}
	slices.SortFunc(splices, func(a, b splice) int { return a.start - b.start })
	var out bytes.Buffer
	pos := 0
	for _, s := range splices {
		out.Write(doc[pos:s.start])
		out.WriteString(s.text)
		pos = s.end
	}
	out.Write(doc[pos:])
	result := out.Bytes()
	if err := checkTableEdit(doc, result, path, set); err != nil {
		return nil, err
	}
	return result, nil
}

func tomlTypeName(v tomlValue) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case bool:
		return "boolean"
	}
	return "value"
}

// checkTableEdit decodes before and after and proves the edit: the table
// holds exactly the settings' values, and with those keys removed both
// documents decode to the same value.
func checkTableEdit(before, after []byte, path []string, set []setting) error {
	var a, b map[string]any
	if err := toml.Unmarshal(before, &a); err != nil {
		return fmt.Errorf("not valid TOML: %v", err)
	}
	if err := toml.Unmarshal(after, &b); err != nil {
		return fmt.Errorf("editing [%s] gives invalid TOML (is a key set elsewhere, with a dotted key or an inline table?): %v", strings.Join(path, "."), err)
	}
	ta, tb := lookupTable(a, path), lookupTable(b, path)
	if ta == nil || tb == nil {
		return fmt.Errorf("[%s] is not a table", strings.Join(path, "."))
	}
	for _, s := range set {
		if !reflect.DeepEqual(tb[s.Key], decodedForm(s.Value)) {
			return fmt.Errorf("[%s] %s: the edit did not take (is it also set elsewhere?)", strings.Join(path, "."), s.Key)
		}
		delete(ta, s.Key)
		delete(tb, s.Key)
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("editing [%s] changed other settings; refusing", strings.Join(path, "."))
	}
	return nil
}

// decodedForm is v as go-toml decodes it into an any.
func decodedForm(v tomlValue) any {
	if s, ok := v.([]string); ok {
		out := make([]any, len(s))
		for i, x := range s {
			out[i] = x
		}
		return out
	}
	return v
}

// lookupTable walks m along path; nil if a step is missing or not a table.
func lookupTable(m map[string]any, path []string) map[string]any {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}
