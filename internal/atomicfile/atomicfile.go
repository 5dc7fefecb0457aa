// Package atomicfile writes an output file under a temporary name in the
// same directory and renames it to its final name only when it is complete,
// so a failed or interrupted build never leaves a half-written artifact
// under the final name.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// File is an output being written. Write to it (it is an *os.File, so it is
// also an io.WriterAt and io.ReaderAt), then call Commit to publish it, or
// Abort to discard it. Abort after Commit does nothing, so
// `defer f.Abort()` is the usual pattern.
type File struct {
	*os.File
	final string
	done  bool
}

// Create starts a new output that will be published as path with the given
// permission bits (before the umask, as with os.OpenFile).
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return nil, fmt.Errorf("output %q: is a directory name", path)
	}
	if dir == "" {
		dir = "."
	}
	// The temporary file is created with perm itself, so the kernel
	// applies the umask: reading the umask would mean setting it, which
	// races with files other goroutines create meanwhile.
	var tmp *os.File
	var err error
	for try := 0; ; try++ {
		name := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
		tmp, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return nil, fmt.Errorf("output %s: %w", path, err)
		}
	}
	return &File{File: tmp, final: path}, nil
}

// Commit flushes the file to stable storage, closes it and renames it to its
// final name.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: already committed or aborted")
	}
	f.done = true
	name := f.File.Name()
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		os.Remove(name)
		return fmt.Errorf("output %s: %w", f.final, err)
	}
	if err := f.File.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("output %s: %w", f.final, err)
	}
	if err := os.Rename(name, f.final); err != nil {
		os.Remove(name)
		return fmt.Errorf("output %s: %w", f.final, err)
	}
	return nil
}

// Abort discards the temporary file. It is safe to call more than once and
// after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// Final returns the name the file will have after Commit.
func (f *File) Final() string { return f.final }

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return f.Commit()
}
