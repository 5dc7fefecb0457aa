//go:build linux || darwin || freebsd

package verity

import (
	"io"
	"os"
	"syscall"
)

// mmapper maps a regular file read-only, so the data is hashed straight
// from the page cache without a copy.
//
// On Linux the data is mapped once, whole, and each chunk's pages are
// dropped from the mapping (MADV_DONTNEED) as soon as the chunk is hashed,
// so the resident set stays a few chunks. That takes the address space
// lock only for reading, where an mmap/munmap per chunk would hold it for
// writing and stall the other workers' page faults. Elsewhere (or for data
// too big to map at once) each chunk is mapped and unmapped.
//
// The mapping is not populated up front: MAP_POPULATE walks every page,
// while the fault-around of the first touch maps whole folios at a time,
// which costs far less system time on large folios.
type mmapper struct {
	fd    int
	whole []byte
}

func newMmapper(r io.ReaderAt) *mmapper {
	f, ok := r.(*os.File)
	if !ok || !useMmap {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return &mmapper{fd: int(f.Fd())}
}

// mapAll maps the first size bytes at once where that is worth it.
func (m *mmapper) mapAll(size uint64) {
	if !mapWhole || size == 0 || size > 1<<40 {
		return
	}
	if b, err := syscall.Mmap(m.fd, 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED); err == nil {
		m.whole = b
	}
}

// release unmaps what mapAll mapped.
func (m *mmapper) release() {
	if m.whole != nil {
		syscall.Munmap(m.whole)
		m.whole = nil
	}
}

// chunk returns n bytes of the file from off, and the function to call
// once they have been read.
func (m *mmapper) chunk(off int64, n int) ([]byte, func(), error) {
	if m.whole != nil {
		b := m.whole[off : off+int64(n)]
		return b, func() { dropPages(b) }, nil
	}
	b, err := syscall.Mmap(m.fd, off, n, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { syscall.Munmap(b) }, nil
}
