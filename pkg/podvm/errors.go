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

// StageError is a build that failed in a stage: the stage ("inputs",
// "sources", "kernel", "rootfs", "initrd", "cmdline", "igvm", "measure",
// "idblock", "output"), the config field or input concerned, and why. A
// config error found before anything is built (a value, a target the
// layout cannot satisfy) is an *Error instead.
type StageError struct {
	Stage string
	// Field is the config field ("spec.kernel.deb",
	// "spec.rootfs.sources[1]"), "" when the failure is not about one.
	Field string
	// Input is the input as written in the config (a path, a source), or
	// the output concerned; "" when none.
	Input string
	Err   error
}

// Error is "STAGE: FIELD (INPUT): CAUSE" on one line.
func (e *StageError) Error() string {
	var b strings.Builder
	b.WriteString(e.Stage)
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Input != "" {
			fmt.Fprintf(&b, " (%s)", e.Input)
		}
		b.WriteString(": ")
	} else if e.Input != "" {
		b.WriteString(e.Input)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(b.String())
}

func (e *StageError) Unwrap() error { return e.Err }
