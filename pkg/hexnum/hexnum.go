// Package hexnum is the one JSON form of numbers that people read in
// hexadecimal: addresses, registers, masks, guest policies, feature bits,
// CPU signatures, partition attributes. Every package of imagebuilder uses
// it for such fields, so all JSON outputs write them the same way: a
// string "0x" followed by lowercase hex digits without leading zeros
// ("0x0" for zero). Sizes and counts stay JSON numbers; digests are
// lowercase hex strings without a prefix.
package hexnum

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Uint64 is a number written as "0x..." in JSON and text.
type Uint64 uint64

// String is the number in Go's %#x form ("0x0" for zero).
func (h Uint64) String() string { return "0x" + strconv.FormatUint(uint64(h), 16) }

// MarshalText writes the "0x..." form.
func (h Uint64) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads "0x..." (any case) or a decimal number.
func (h *Uint64) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*h = Uint64(v)
	return nil
}

// UnmarshalJSON also accepts a plain JSON number.
func (h *Uint64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return h.UnmarshalText([]byte(s))
	}
	var n uint64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("hexnum: %s is neither a \"0x...\" string nor a number", b)
	}
	*h = Uint64(n)
	return nil
}

// Parse reads a number given as 0x-prefixed hex or decimal, as flags take
// them.
func Parse(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	var v uint64
	var err error
	if rest, ok := strings.CutPrefix(strings.ToLower(t), "0x"); ok {
		v, err = strconv.ParseUint(rest, 16, 64)
	} else {
		v, err = strconv.ParseUint(t, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a number (want 0x-prefixed hex or decimal)", s)
	}
	return v, nil
}
