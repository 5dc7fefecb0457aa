package igvm

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	dumpLine  = regexp.MustCompile(`^IGVM_VHT_(\w+)\(([0-9a-f]+)\)\{ ([^{}]*?) ?(?:\}|\w+:\s*\{)`)
	dumpField = regexp.MustCompile(`(\w+):(0x[0-9a-f]+)`)
)

// scalarFields maps lower-cased field names of a header struct to values.
func scalarFields(v any) map[string]uint64 {
	out := map[string]uint64{}
	rv := reflect.Indirect(reflect.ValueOf(v))
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			out[strings.ToLower(rv.Type().Field(i).Name)] = f.Uint()
		}
	}
	return out
}

// TestAgainstIgvmgenDump compares every header the reader decodes with
// igvmgen's own dump of the same file (`igvmgen -d`, kept gzipped in
// testdata/igvm/dumps): type, offset and every scalar field.
func TestAgainstIgvmgenDump(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			f, err := Parse(readCase(t, c))
			if err != nil {
				t.Fatal(err)
			}
			byOff := map[int64]Header{}
			for i, h := range f.Headers {
				byOff[f.Offsets[i]] = h
			}
			zf, err := os.Open(filepath.Join("../../testdata/igvm/dumps", c.Name+".dump.txt.gz"))
			if err != nil {
				t.Fatal(err)
			}
			defer zf.Close()
			zr, err := gzip.NewReader(zf)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(zr)
			sc.Buffer(nil, 1<<20)
			lines, seen, compared := 0, map[int64]bool{}, 0
			for sc.Scan() {
				line := sc.Text()
				if lines == 0 {
					// The fixed header.
					want := scalarFields(&f.Fixed)
					for _, m := range dumpField.FindAllStringSubmatch(line, -1) {
						v, _ := strconv.ParseUint(m[2], 0, 64)
						if want[strings.ToLower(m[1])] != v {
							t.Errorf("fixed header %s = %#x, dump says %#x", m[1], want[strings.ToLower(m[1])], v)
						}
					}
					lines++
					continue
				}
				lines++
				m := dumpLine.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("dump line %d not understood: %.80s", lines, line)
				}
				off, _ := strconv.ParseInt(m[2], 16, 64)
				seen[off] = true
				h, ok := byOff[off]
				if !ok {
					t.Fatalf("dump has %s at %#x, we have no header there", m[1], off)
				}
				name := strings.Replace(m[1], "SNP_POLICY", "GUEST_POLICY", 1)
				if got := h.Type().String(); got != name {
					t.Errorf("at %#x: we read %s, dump says %s", off, got, name)
				}
				ours := scalarFields(h)
				for _, fm := range dumpField.FindAllStringSubmatch(m[3], -1) {
					key := strings.ToLower(fm[1])
					v, _ := strconv.ParseUint(fm[2], 0, 64)
					compared++
					got, ok := ours[key]
					if !ok {
						t.Errorf("at %#x (%s): dump field %s not in our struct", off, name, fm[1])
					} else if got != v {
						t.Errorf("at %#x (%s): %s = %#x, dump says %#x", off, name, fm[1], got, v)
					}
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			// PAGE_DATA has 6 scalar fields, the VMSA line adds none of ours.
			if compared < 5*len(f.Headers) {
				t.Errorf("only %d fields compared for %d headers", compared, len(f.Headers))
			}
			if len(seen) != len(f.Headers) {
				t.Errorf("dump covers %d headers, we read %d", len(seen), len(f.Headers))
			}
		})
	}
}
