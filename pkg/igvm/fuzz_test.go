package igvm

import (
	"bytes"
	"encoding/binary"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
)

// fixCRC recomputes the checksum of a mutated file, so the mutations reach
// the checks behind it (igvmtest.FixChecksum, which this package's tests
// cannot import).
func fixCRC(b []byte) {
	if len(b) < FixedHeaderSize {
		return
	}
	off := uint64(binary.LittleEndian.Uint32(b[8:]))
	size := uint64(binary.LittleEndian.Uint32(b[12:]))
	if off < FixedHeaderSize || off+size > uint64(len(b)) {
		return
	}
	binary.LittleEndian.PutUint32(b[20:], 0)
	c := crc32.NewIEEE()
	c.Write(b[:FixedHeaderSize])
	c.Write(b[off : off+size])
	binary.LittleEndian.PutUint32(b[20:], c.Sum32())
}

// FuzzOpen feeds mutated files to the reader, with their CRC repaired (and
// total_file_size set) so that mutations of the headers reach the
// validation behind the checksum. It must never panic; memory stays
// proportional to the input; a file it accepts must have readable data and
// survive a canonical re-write that the reader accepts again with the same
// contents.
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
		if len(data) >= FixedHeaderSize {
			binary.LittleEndian.PutUint32(data[16:], uint32(len(data)))
		}
		fixCRC(data)
		var file *File
		var err error
		// Headers decode into at most a few times their size (a 32-byte
		// PAGE_DATA becomes a 24-byte struct, an interface and an offset).
		fuzzbound.Check(t, data, 8, 1<<20, func() { file, err = Parse(data) })
		if err != nil {
			return
		}
		// The data of every header is in the file (read through a small
		// buffer: many headers may name the same bytes).
		buf := make([]byte, PageSize4K)
		for _, h := range file.Headers {
			if !HasData(h) {
				continue
			}
			r := file.DataReader(h)
			for off := int64(0); off < r.Size(); off += int64(len(buf)) {
				if _, err := r.ReadAt(buf[:min(int64(len(buf)), r.Size()-off)], off); err != nil {
					t.Fatalf("accepted file, unreadable %v data at %d: %v", h.Type(), off, err)
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
