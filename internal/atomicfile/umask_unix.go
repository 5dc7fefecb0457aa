//go:build unix

package atomicfile

import (
	"io/fs"
	"syscall"
)

// currentUmask reads the process umask (there is no way to read it without
// setting it).
func currentUmask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}
