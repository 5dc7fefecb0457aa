package verity

import "syscall"

// mapWhole says whether the data is mapped at once (see mmapper).
const mapWhole = true

// dropPages removes pages already hashed from the mapping.
func dropPages(b []byte) { syscall.Madvise(b, syscall.MADV_DONTNEED) }
