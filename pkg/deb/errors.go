package deb

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInsecurePath is what an InsecurePathError matches with errors.Is, as
// archive/tar's ErrInsecurePath.
var ErrInsecurePath = errors.New("insecure path")

// ErrNoKernel means a package holds no boot/vmlinuz-VERSION (for example
// the linux-image-amd64 metapackage).
var ErrNoKernel = errors.New("no kernel image (boot/vmlinuz-VERSION) in the package")

// FormatError is a malformed package: what is wrong and where.
type FormatError struct {
	Member string // ar member ("data.tar.xz"), "" for the ar archive itself
	Entry  string // tar entry name as written, if any
	Offset int64  // byte offset in the .deb, -1 when not known
	Msg    string
	Err    error // the underlying error, if any
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("deb: ")
	if e.Member != "" {
		b.WriteString(e.Member)
		b.WriteString(": ")
	}
	if e.Entry != "" {
		fmt.Fprintf(&b, "entry %q: ", e.Entry)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, "at offset %d: ", e.Offset)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return oneLine(b.String())
}

func (e *FormatError) Unwrap() error { return e.Err }

// InsecurePathError is an entry that would reach outside the target:
// an absolute name, a ".." element, a path through a symlink or a file,
// or a hard link to something that is not an earlier regular file.
type InsecurePathError struct {
	Member string // ar member
	Entry  string // entry name as written
	Reason string
}

func (e *InsecurePathError) Error() string {
	return oneLine(fmt.Sprintf("deb: %s: entry %q: insecure path: %s", e.Member, e.Entry, e.Reason))
}

// Is makes errors.Is(err, ErrInsecurePath) true.
func (e *InsecurePathError) Is(target error) bool { return target == ErrInsecurePath }

// oneLine keeps an error message on one line whatever an input put in it.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\n\r") {
		return s
	}
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}
