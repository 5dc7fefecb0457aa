package initrd

import (
	"errors"
	"fmt"
)

// ErrInsecurePath is matched (errors.Is) by every InsecurePathError.
var ErrInsecurePath = errors.New("insecure path")

// InsecurePathError is an entry path that would climb out of the archive
// root ("../etc/passwd", "a/../../x") or that holds a NUL byte. Like
// archive/tar's ErrInsecurePath it is refused, never cleaned into
// something else.
type InsecurePathError struct {
	Path   string
	Reason string // "escapes the archive root", "contains a NUL byte"
}

func (e *InsecurePathError) Error() string { return fmt.Sprintf("path %q %s", e.Path, e.Reason) }

// Is makes errors.Is(err, ErrInsecurePath) true.
func (e *InsecurePathError) Is(target error) bool { return target == ErrInsecurePath }

// SpecError is a line of a gen_init_cpio spec that cannot be used: a
// syntax error, or a file it names that cannot be read.
type SpecError struct {
	Name string // the spec, as given (a file name)
	Line int    // 1-based
	Err  error
}

func (e *SpecError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err) }
func (e *SpecError) Unwrap() error { return e.Err }

// FormatError is malformed initramfs data met by Reader or Walk: a bad or
// truncated newc header, a corrupt compressed stream, unknown data between
// archives, a compression window larger than MaxWindow.
type FormatError struct {
	// Segment is the 1-based number of the segment (Walk: an uncompressed
	// archive, or one compressed stream) the problem is in; 0 from a
	// Reader used on its own.
	Segment int
	// Compression is the segment's compression.
	Compression Compression
	// SegmentOffset is the file offset where the segment starts.
	SegmentOffset int64
	// Offset is the offset of the problem in the segment's uncompressed
	// newc data, or -1 when the problem is in the compressed stream or
	// between segments.
	Offset int64
	// Msg says what is wrong.
	Msg string
	// Err is the decompressor's own error, if one reported it.
	Err error
}

func (e *FormatError) Error() string {
	s := e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Offset >= 0 {
		s = fmt.Sprintf("cpio: %s at offset %d", s, e.Offset)
	}
	if e.Segment == 0 {
		return s
	}
	return fmt.Sprintf("segment %d (%s, at file offset %d): %s", e.Segment, e.Compression, e.SegmentOffset, s)
}

func (e *FormatError) Unwrap() error { return e.Err }

// ErrNotModulesTree is matched (errors.Is) when a modules directory is not
// a lib/modules/VERSION tree.
var ErrNotModulesTree = errors.New("not a lib/modules/VERSION tree")

// ModuleNotFoundError is a requested module, or a dependency of one, that
// is neither in the modules tree nor built into the kernel.
type ModuleNotFoundError struct {
	Name     string // the module name or alias asked for
	NeededBy string // the module that depends on it; "" when requested
	Dir      string // the modules tree
}

func (e *ModuleNotFoundError) Error() string {
	if e.NeededBy == "" {
		return fmt.Sprintf("module %s (requested) not found in %s", e.Name, e.Dir)
	}
	return fmt.Sprintf("module %s, needed by %s, not found in %s", e.Name, e.NeededBy, e.Dir)
}
