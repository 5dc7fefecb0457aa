package diff

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// compareJSONFiles compares two JSON documents field by field.
func compareJSONFiles(ctx context.Context, a, b *input, rep *report) error {
	va, err := readJSON(a)
	if err != nil {
		return a.fail(err)
	}
	vb, err := readJSON(b)
	if err != nil {
		return b.fail(err)
	}
	err = diffJSON("", va, vb, func(path string, c Change, x, y string) error {
		return rep.add(Difference{Section: SectionFields, Kind: c, Path: path, A: x, B: y})
	})
	if err != nil || len(rep.diffs) > 0 {
		return err
	}
	if i := mismatch(a.whole[:min(len(a.whole), len(b.whole))], b.whole); i >= 0 || len(a.whole) != len(b.whole) {
		if i < 0 {
			i = min(len(a.whole), len(b.whole))
		}
		return rep.add(Difference{Section: SectionBytes, Kind: Changed, Path: fmt.Sprintf("byte %d", i), Field: "content",
			A: sizeText(a.size), B: sizeText(b.size), Detail: "the same values, written differently"})
	}
	return nil
}

// readJSON decodes a document, keeping its bytes in in.whole.
func readJSON(in *input) (any, error) {
	if in.whole == nil {
		if in.size > MaxJSONSize {
			return nil, fmt.Errorf("%d bytes: larger than the %d MiB a JSON comparison reads", in.size, MaxJSONSize>>20)
		}
		b := make([]byte, in.size)
		if n, err := in.r.ReadAt(b, 0); err != nil && !(err == io.EOF && n == len(b)) {
			return nil, err
		}
		in.whole = b
	}
	return parseJSON(in.whole)
}

// parseJSON decodes one JSON document, numbers kept as written.
func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("not JSON: data after the document")
	}
	return v, nil
}

// toJSONValue turns a Go value into the form parseJSON gives, so that
// results of the readers (rootfs.Inspection, the parts of an IGVM report)
// are compared with the same rules and paths as documents.
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return parseJSON(b)
}

// diffJSON calls emit for each difference between a and b, in document
// order (object keys sorted). Arrays of objects that all carry a distinct
// string "name", "path" or "file" are paired by it (path
// .artifacts[name=rootfs.img]), other arrays by index.
func diffJSON(path string, a, b any, emit func(path string, c Change, a, b string) error) error {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(x)+len(y))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + jsonKey(k)
			va, okA := x[k]
			vb, okB := y[k]
			var err error
			switch {
			case !okA:
				err = emit(p, Added, "", jsonText(vb))
			case !okB:
				err = emit(p, Removed, jsonText(va), "")
			default:
				err = diffJSON(p, va, vb, emit)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case []any:
		y, ok := b.([]any)
		if !ok {
			break
		}
		if key := pairKey(x, y); key != "" {
			return diffKeyed(path, key, x, y, emit)
		}
		for i := 0; i < max(len(x), len(y)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			var err error
			switch {
			case i >= len(x):
				err = emit(p, Added, "", jsonText(y[i]))
			case i >= len(y):
				err = emit(p, Removed, jsonText(x[i]), "")
			default:
				err = diffJSON(p, x[i], y[i], emit)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case json.Number:
		if y, ok := b.(json.Number); ok && numbersEqual(x, y) {
			return nil
		}
	case string, bool, nil:
		if a == b {
			return nil
		}
	}
	if path == "" {
		path = "."
	}
	return emit(path, Changed, jsonText(a), jsonText(b))
}

// pairKeys are the fields that pair the elements of two arrays.
var pairKeys = []string{"name", "path", "file"}

// pairKey returns the field that pairs x and y: every element of both an
// object with a distinct string value for it; "" when none does.
func pairKey(x, y []any) string {
	if len(x) == 0 || len(y) == 0 {
		return ""
	}
next:
	for _, k := range pairKeys {
		for _, list := range [][]any{x, y} {
			seen := map[string]bool{}
			for _, e := range list {
				m, ok := e.(map[string]any)
				if !ok {
					return ""
				}
				s, ok := m[k].(string)
				if !ok || seen[s] {
					continue next
				}
				seen[s] = true
			}
		}
		return k
	}
	return ""
}

func diffKeyed(path, key string, x, y []any, emit func(string, Change, string, string) error) error {
	index := func(list []any) map[string]any {
		m := make(map[string]any, len(list))
		for _, e := range list {
			m[e.(map[string]any)[key].(string)] = e
		}
		return m
	}
	mx, my := index(x), index(y)
	// A's order, then what only B has in B's order.
	var names []string
	for _, e := range x {
		names = append(names, e.(map[string]any)[key].(string))
	}
	for _, e := range y {
		if n := e.(map[string]any)[key].(string); mx[n] == nil {
			names = append(names, n)
		}
	}
	for _, n := range names {
		p := fmt.Sprintf("%s[%s=%s]", path, key, n)
		va, vb := mx[n], my[n]
		var err error
		switch {
		case va == nil:
			err = emit(p, Added, "", jsonText(vb))
		case vb == nil:
			err = emit(p, Removed, jsonText(va), "")
		default:
			err = diffJSON(p, va, vb, emit)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// numbersEqual says two JSON numbers are the same number though written
// differently (1.0 and 1, 1e3 and 1000). Exact for integers; for others
// only when both are short enough for float64 to hold them (a hostile
// 1e999999999 must not become a big number).
func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	if x, err := strconv.ParseInt(string(a), 10, 64); err == nil {
		y, err := strconv.ParseInt(string(b), 10, 64)
		if err == nil {
			return x == y
		}
	}
	if len(a) > 17 || len(b) > 17 {
		return false
	}
	x, errX := strconv.ParseFloat(string(a), 64)
	y, errY := strconv.ParseFloat(string(b), 64)
	return errX == nil && errY == nil && x == y
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jsonKey is a key as jq writes it in a path: .key, or ["odd key"].
func jsonKey(k string) string {
	if identifier.MatchString(k) {
		return "." + k
	}
	return "[" + strconv.Quote(k) + "]"
}

// jsonText is a value in compact JSON.
func jsonText(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
