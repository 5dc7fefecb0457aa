// Package fuzzbound lets fuzz targets assert that a reader's memory stays
// proportional to its input, and records, when asked, the slowest and the
// most memory-hungry input each target met.
//
// Time is not asserted (a loaded machine would make that flaky); targets
// assert a count of work instead (pages measured, headers decoded), which
// is what makes the time proportional, and Check records the time so a
// fuzzing campaign can report it.
package fuzzbound

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StatsEnv names the environment variable holding a directory: when set,
// Check writes there, per target and fuzzing process, the slowest input
// and the one that allocated most (scripts/fuzz.sh sets it).
const StatsEnv = "IMAGEBUILDER_FUZZ_STATS"

// Record is what Check keeps of an input.
type Record struct {
	Target     string        `json:"target"`
	Inputs     int64         `json:"inputs"`
	Size       int           `json:"size"`
	Duration   time.Duration `json:"duration_ns"`
	Allocated  uint64        `json:"allocated_bytes"`
	MaxRSS     int64         `json:"max_rss_bytes"` // of the fuzzing process so far
	InputBytes []byte        `json:"input,omitempty"`
}

type stats struct {
	inputs             int64
	slowest, hungriest Record
}

var (
	mu  sync.Mutex
	all = map[string]*stats{}
)

// Check runs f, the work on an input of size bytes, and fails t if f
// allocated more than perByte*size + fixed bytes.
//
// The allocation counter is the process's: the fuzzing engine's own work
// in the worker (minimizing, exchanging inputs) can land inside the
// window now and then. So an input over the bound is run twice more and
// judged by its smallest count; f must do the same work each time.
func Check(t testing.TB, input []byte, perByte, fixed uint64, f func()) {
	t.Helper()
	limit := perByte*uint64(len(input)) + fixed
	alloc, d := measure(f)
	for try := 0; alloc > limit && try < 2; try++ {
		a, _ := measure(f)
		alloc = min(alloc, a)
	}
	if alloc > limit {
		t.Fatalf("%d-byte input: %d bytes allocated, more than the bound %d (%d per byte + %d)", len(input), alloc, limit, perByte, fixed)
	}
	record(t.Name(), input, d, alloc)
}

// measure runs f and returns the bytes allocated and the time taken.
func measure(f func()) (uint64, time.Duration) {
	// runtime/metrics reads the heap's allocation counter without
	// stopping the world, as runtime.ReadMemStats would on every input.
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	start := time.Now()
	f()
	d := time.Since(start)
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before, d
}

func record(name string, input []byte, d time.Duration, alloc uint64) {
	dir := os.Getenv(StatsEnv)
	if dir == "" {
		return
	}
	target := name
	if i := strings.IndexByte(target, '/'); i >= 0 {
		target = target[:i]
	}
	mu.Lock()
	defer mu.Unlock()
	s := all[target]
	if s == nil {
		s = &stats{}
		all[target] = s
	}
	s.inputs++
	rec := func() Record {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		in := input
		if len(in) > 1<<20 {
			in = in[:1<<20] // the size says the rest
		}
		return Record{Target: target, Size: len(input), Duration: d, Allocated: alloc, MaxRSS: ru.Maxrss * 1024, InputBytes: append([]byte(nil), in...)}
	}
	changed := false
	if d > s.slowest.Duration {
		s.slowest, changed = rec(), true
	}
	if alloc > s.hungriest.Allocated {
		s.hungriest, changed = rec(), true
	}
	if !changed && s.inputs%10000 != 0 {
		return
	}
	s.slowest.Inputs, s.hungriest.Inputs = s.inputs, s.inputs
	b, err := json.MarshalIndent(map[string]Record{"slowest": s.slowest, "most_allocated": s.hungriest}, "", "  ")
	if err != nil {
		return
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-%d.json", target, os.Getpid()))
	_ = os.WriteFile(p+".tmp", b, 0o644)
	_ = os.Rename(p+".tmp", p)
}
