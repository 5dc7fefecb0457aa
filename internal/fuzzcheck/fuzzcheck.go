// Package fuzzcheck measures what a fuzz target's call allocated, cheaply
// enough to do on every input (runtime/metrics, no stop-the-world as
// runtime.ReadMemStats has).
package fuzzcheck

import "runtime/metrics"

// Allocated returns the bytes allocated on the heap while fn ran (by the
// whole process: keep fn the only work in flight).
func Allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}
