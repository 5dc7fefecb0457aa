//go:build linux || darwin || freebsd

package verity

import (
	"io"
	"os"
	"syscall"
)

// mmapper maps chunks of a regular file read-only, so the data is hashed
// straight from the page cache without a copy. Each chunk is unmapped as
// soon as it is hashed, so the resident set stays a few chunks. The
// mapping is not populated up front (MAP_POPULATE walks every page; the
// fault-around of the first touch maps whole folios at a time, which costs
// far less system time on large folios).
type mmapper struct{ fd int }

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

func (m *mmapper) mmap(off int64, n int) ([]byte, error) {
	return syscall.Mmap(m.fd, off, n, syscall.PROT_READ, syscall.MAP_SHARED)
}

func (m *mmapper) munmap(b []byte) { syscall.Munmap(b) }
