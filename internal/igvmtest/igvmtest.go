// Package igvmtest has helpers for tests that build IGVM files with
// igvm.Builder (tests of pkg/igvm/inspect and pkg/measure; pkg/igvm's own
// tests cannot import it).
package igvmtest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// Write writes the file b builds and returns its bytes, failing the test
// on error.
func Write(tb testing.TB, b *igvm.Builder) []byte {
	tb.Helper()
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// Reparse writes the file b builds and parses it back, failing the test on
// error.
func Reparse(tb testing.TB, b *igvm.Builder) *igvm.File {
	tb.Helper()
	f, err := igvm.Parse(Write(tb, b))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// FixChecksum recomputes the CRC-32 of an IGVM file in b (over the fixed
// header with the checksum zero and the variable header section), so that
// a test or fuzz target that mutated the headers reaches the checks behind
// the checksum. It does nothing to a b too short or whose header section
// does not fit.
func FixChecksum(b []byte) {
	if len(b) < igvm.FixedHeaderSize {
		return
	}
	off := uint64(binary.LittleEndian.Uint32(b[8:]))
	size := uint64(binary.LittleEndian.Uint32(b[12:]))
	if off < igvm.FixedHeaderSize || off+size > uint64(len(b)) {
		return
	}
	binary.LittleEndian.PutUint32(b[20:], 0)
	crc := crc32.NewIEEE()
	crc.Write(b[:igvm.FixedHeaderSize])
	crc.Write(b[off : off+size])
	binary.LittleEndian.PutUint32(b[20:], crc.Sum32())
}

// HugeParameterArea is the recipe of a hostile file: kvm-ready.igvm (data,
// as read from testdata/measure/kvm-ready.igvm) with its PARAMETER_AREA's
// number_of_bytes (the u64 at file offset 3504) set to 1<<44 and the CRC
// fixed. Before the parameter-area bound, igvm inspect accepted it and a
// kvm measurement ran for about 37 minutes.
func HugeParameterArea(data []byte) []byte {
	b := bytes.Clone(data)
	binary.LittleEndian.PutUint64(b[3504:], 1<<44)
	FixChecksum(b)
	return b
}
