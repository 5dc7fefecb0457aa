// Package igvmtest has helpers for tests that build IGVM files with
// igvm.Builder (tests of pkg/igvm/inspect and pkg/measure; pkg/igvm's own
// tests cannot import it).
package igvmtest

import (
	"bytes"
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
