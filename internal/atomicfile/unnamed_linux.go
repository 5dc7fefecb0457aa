package atomicfile

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// errUnsupported says the file system (or kernel) cannot create unnamed
// files; the caller falls back to a temporary name.
var errUnsupported = errors.New("O_TMPFILE not supported")

// openUnnamed creates an unnamed regular file in dir (O_TMPFILE) that can
// later be linked into the file system.
func openUnnamed(dir string, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		switch err {
		case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL, unix.ENOENT:
			// ENOENT and EISDIR: kernels or file systems without
			// O_TMPFILE see a plain open of a directory.
			return nil, errUnsupported
		}
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// linkUnnamed gives an unnamed file the name target. It fails with an
// error matching fs.ErrExist when target exists.
func linkUnnamed(f *os.File, target string) error {
	// Linking /proc/self/fd/N with AT_SYMLINK_FOLLOW needs no privilege;
	// AT_EMPTY_PATH (the other way) needs CAP_DAC_READ_SEARCH.
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, target, unix.AT_SYMLINK_FOLLOW)
	if err == unix.ENOENT {
		if _, serr := os.Stat("/proc/self/fd"); serr != nil {
			err = unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, target, unix.AT_EMPTY_PATH)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: target, Err: err}
	}
	return nil
}

// exchange swaps two paths atomically (renameat2 RENAME_EXCHANGE).
func exchange(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch err {
	case nil:
		return nil
	case unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP:
		return errUnsupported
	}
	return &os.LinkError{Op: "rename", Old: a, New: b, Err: err}
}
