//go:build !linux

package atomicfile

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("unnamed files not supported")

func openUnnamed(dir string, perm os.FileMode) (*os.File, error) { return nil, errUnsupported }

func linkUnnamed(f *os.File, target string) error { return errUnsupported }

func exchange(a, b string) error { return errUnsupported }
