//go:build !(linux || darwin || freebsd)

package verity

import (
	"errors"
	"io"
)

// mmapper is not used where files are not mapped.
type mmapper struct{}

func newMmapper(io.ReaderAt) *mmapper { return nil }

func (m *mmapper) mapAll(uint64) {}

func (m *mmapper) release() {}

func (m *mmapper) chunk(int64, int) ([]byte, func(), error) {
	return nil, nil, errors.New("no mmap")
}
