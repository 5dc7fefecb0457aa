package diff

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// diffFields compares two byte images of one structure and calls emit
// once per field that differs, in offset order, with both values. field
// names the field holding a byte offset and its extent ("" for bytes no
// field covers, which are shown as "offset 0x...").
func diffFields(a, b []byte, field func(off int) (name string, start, size int), emit func(name, x, y string) error) error {
	n := min(len(a), len(b))
	for off := 0; off < n; off++ {
		if a[off] == b[off] {
			continue
		}
		name, start, size := field(off)
		if name == "" || size <= 0 || start > off {
			name, start, size = fmt.Sprintf("offset %#x", off), off, 1
		}
		end := min(start+size, n)
		if err := emit(name, fieldValue(a[start:end]), fieldValue(b[start:end])); err != nil {
			return err
		}
		off = end - 1
	}
	return nil
}

// fieldValue shows a field: a number of up to 8 bytes in hexadecimal
// (little-endian), a longer one as printable text or hex bytes.
func fieldValue(b []byte) string {
	switch len(b) {
	case 1, 2, 4, 8:
		var v uint64
		switch len(b) {
		case 1:
			v = uint64(b[0])
		case 2:
			v = uint64(binary.LittleEndian.Uint16(b))
		case 4:
			v = uint64(binary.LittleEndian.Uint32(b))
		case 8:
			v = binary.LittleEndian.Uint64(b)
		}
		return hexText(v)
	}
	// Text: printable bytes, then only NULs.
	text := cString(b)
	printable := text != ""
	for i, c := range b {
		if i < len(text) && (c < 0x20 || c > 0x7e) || i >= len(text) && c != 0 {
			printable = false
			break
		}
	}
	if printable {
		return strconv.Quote(text)
	}
	if len(b) > 64 {
		return fmt.Sprintf("%x... (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// fieldOf finds the extent of the field name(off) holds, for a namer that
// gives only names (bootparams.FieldName): the run of offsets with the
// same name around off, within [0, limit).
func fieldOf(name func(int) string, off, limit int) (string, int, int) {
	n := name(off)
	if n == "" {
		return "", off, 1
	}
	start, end := off, off+1
	for start > 0 && name(start-1) == n {
		start--
	}
	for end < limit && name(end) == n {
		end++
	}
	return n, start, end - start
}
