package igvm

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader. It must never panic; a file
// it accepts must have readable data and survive a canonical re-write that
// the reader accepts again with the same contents.
func FuzzOpen(f *testing.F) {
	f.Add(valid(nil))
	f.Add(valid(func(_ uint32, hs []Header) []Header {
		return append(hs, &Unknown{HeaderType: OptionalBit | 0x333, Body: []byte{9}})
	}))
	// The smallest reference file (74 KB) as a seed (skipped while fuzzing:
	// large inputs stall the mutator; the seeds above cover its shapes).
	if b, err := os.ReadFile(filepath.Join("../../testdata/igvm", "d01_kata_clh_short.igvm")); err == nil && !fuzzing() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, h := range file.Headers {
			if DataSize(h) <= 1<<20 {
				if _, err := file.Data(h); err != nil {
					t.Fatalf("accepted file, unreadable %v data: %v", h.Type(), err)
				}
			}
		}
		var b Builder
		b.CopyFile(file)
		var out bytes.Buffer
		if _, err := b.WriteTo(&out); err != nil {
			t.Fatalf("accepted file does not re-write: %v", err)
		}
		again, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("canonical re-write rejected: %v", err)
		}
		if len(again.Headers) != len(file.Headers) {
			t.Fatalf("header count %d -> %d", len(file.Headers), len(again.Headers))
		}
	})
}

// fuzzing reports whether the test binary runs with -test.fuzz.
func fuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}
