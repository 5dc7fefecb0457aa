package deb

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// arMagic starts every ar archive; each member follows a 60-byte header.
const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
	// maxMembers bounds the members read: a package has three, plus a
	// few signatures (_gpg*).
	maxMembers = 64
)

// Member is one member of the ar archive.
type Member struct {
	Name   string `json:"name"`   // as dpkg reads it: trailing spaces and "/" removed
	Offset int64  `json:"offset"` // of its data in the .deb
	Size   int64  `json:"size"`
}

// readMembers reads the ar headers of r (size bytes), checking that every
// member lies inside the file.
func readMembers(r io.ReaderAt, size int64) ([]Member, error) {
	magic := make([]byte, len(arMagic))
	if _, err := r.ReadAt(magic, 0); err != nil || string(magic) != arMagic {
		return nil, &FormatError{Offset: 0, Msg: "not a Debian package (no ar archive magic \"!<arch>\\n\")"}
	}
	var members []Member
	var hdr [arHeaderSize]byte
	off := int64(len(arMagic))
	for off < size {
		if len(members) == maxMembers {
			return nil, &FormatError{Offset: off, Msg: fmt.Sprintf("more than %d ar members", maxMembers)}
		}
		if size-off < arHeaderSize {
			return nil, &FormatError{Offset: off, Msg: fmt.Sprintf("truncated ar header (%d bytes left)", size-off)}
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return nil, &FormatError{Offset: off, Msg: "reading ar header", Err: err}
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, &FormatError{Offset: off, Msg: "bad ar header (no terminator)"}
		}
		name := string(bytes.TrimRight(hdr[0:16], " "))
		if len(name) > 1 && name[len(name)-1] == '/' {
			name = name[:len(name)-1]
		}
		if name == "" || name == "/" || name == "//" || bytes.HasPrefix(hdr[0:16], []byte("#1/")) {
			return nil, &FormatError{Offset: off, Msg: fmt.Sprintf("ar member name %q: symbol tables and long names do not belong in a package", name)}
		}
		sz, err := arSize(hdr[48:58])
		if err != nil {
			return nil, &FormatError{Member: name, Offset: off, Msg: err.Error()}
		}
		data := off + arHeaderSize
		if sz > size-data {
			return nil, &FormatError{Member: name, Offset: off, Msg: fmt.Sprintf("declared size %d runs past the end of the file (%d bytes left)", sz, size-data)}
		}
		members = append(members, Member{Name: name, Offset: data, Size: sz})
		off = data + sz + sz%2
	}
	return members, nil
}

// arSize parses the decimal size field (space padded).
func arSize(b []byte) (int64, error) {
	f := string(bytes.TrimRight(b, " "))
	if f == "" {
		return 0, fmt.Errorf("empty ar size field")
	}
	for _, c := range []byte(f) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("ar size field %q is not a decimal number", f)
		}
	}
	n, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ar size field %q: %v", f, err)
	}
	return n, nil
}
