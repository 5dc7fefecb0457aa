// Package meter reports how far the steps of a long library call are, to
// the progress callback that pkg/source, pkg/rootfs and pkg/initrd take in
// their options: func(step string, done, total int64).
//
// The callback's contract, which this package keeps: steps run one after
// another; each begins with a call whose done is 0 and ends when the next
// one begins or the library call returns; done grows, in bytes, and its
// last value is the step's final count; total is the step's work in bytes,
// 0 when unknown, the same in every call of a step. Calls are serialized.
package meter

import (
	"io"
	"sync"
)

// Func is the progress callback of the options structs.
type Func = func(step string, done, total int64)

// every is how much work passes between two reports, so that a step of
// many small pieces (files) does not call the callback for each.
const every = 1 << 20

// Step is one running step. A nil *Step (no callback) does nothing, so
// callers need no checks.
type Step struct {
	mu          sync.Mutex
	fn          Func
	name        string
	total       int64
	done, shown int64
}

// Start begins step name with total bytes of work (0 if unknown) and
// reports it with done 0. It returns nil when fn is nil.
func Start(fn Func, name string, total int64) *Step {
	if fn == nil {
		return nil
	}
	fn(name, 0, total)
	return &Step{fn: fn, name: name, total: total}
}

// Add records n more bytes done. It may be called from several goroutines.
func (s *Step) Add(n int64) {
	if s == nil || n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done += n
	if s.done-s.shown >= every {
		s.shown = s.done
		s.fn(s.name, s.done, s.total)
	}
}

// End reports the final count if it was not reported yet.
func (s *Step) End() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != s.shown {
		s.shown = s.done
		s.fn(s.name, s.done, s.total)
	}
}

// Reader counts the bytes read through r on step s.
func Reader(r io.Reader, s *Step) io.Reader { return reader{r, s} }

// ReaderAt counts the bytes read through r on step s (Add is safe from
// several goroutines: verity hashes in parallel).
func ReaderAt(r io.ReaderAt, s *Step) io.ReaderAt { return readerAt{r, s} }

type reader struct {
	r io.Reader
	s *Step
}

func (m reader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.s.Add(int64(n))
	return n, err
}

type readerAt struct {
	r io.ReaderAt
	s *Step
}

func (m readerAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.r.ReadAt(p, off)
	m.s.Add(int64(n))
	return n, err
}
