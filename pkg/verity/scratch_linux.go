package verity

import (
	"os"

	"golang.org/x/sys/unix"
)

// tempScratch opens an unnamed file in dir (O_TMPFILE): it has no name to
// leave behind, whatever happens to the process.
func tempScratch(dir string) (scratchFile, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	switch err {
	case nil:
		return os.NewFile(uintptr(fd), dir), nil
	case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL, unix.ENOENT:
		// A file system (or kernel) without O_TMPFILE.
		return namedScratch(dir)
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: err}
}
