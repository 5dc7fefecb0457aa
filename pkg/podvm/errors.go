package podvm

import (
	"fmt"
	"strings"
)

// Error is a config error: the file, the line and the field path.
type Error struct {
	File   string // as given to Load
	Line   int    // 1-based, 0 when not known
	Column int
	Path   string // "spec.rootfs.sources[1]", "" for the document
	Msg    string
}

// Error is "FILE:LINE: PATH: MSG" on one line.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	s := b.String()
	if strings.ContainsAny(s, "\n\r") {
		s = strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
	}
	return s
}
