package audit

import (
	"context"
	"testing"
)

// BenchmarkVerifyRepro verifies one build of the reproducibility config
// (every link; a 1.1 MiB root disk).
func BenchmarkVerifyRepro(b *testing.B) {
	s := loadFuzzSet(b)
	for b.Loop() {
		rep, err := Verify(context.Background(), Artifacts{Dir: s.dir}, Options{Firmware: []string{s.firmware}})
		if err != nil || !rep.OK {
			b.Fatal(err)
		}
	}
}
