// Package buildenv reads the environment variables that the
// reproducible-builds conventions give to every build step.
package buildenv

import (
	"fmt"
	"os"
	"strconv"
)

// MaxSourceDateEpoch is the largest SOURCE_DATE_EPOCH accepted: the newc
// cpio and erofs formats store times in 32 bits.
const MaxSourceDateEpoch = 1<<32 - 1

// ParseSourceDateEpoch parses a SOURCE_DATE_EPOCH value: decimal seconds
// since 1970, 0 to MaxSourceDateEpoch.
func ParseSourceDateEpoch(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > MaxSourceDateEpoch {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want whole seconds since 1970, 0 to %d", s, int64(MaxSourceDateEpoch))
	}
	return v, nil
}

// SourceDateEpoch returns $SOURCE_DATE_EPOCH and whether it is set (an
// empty value counts as unset, as reproducible-builds.org specifies).
func SourceDateEpoch() (v int64, set bool, err error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, false, nil
	}
	v, err = ParseSourceDateEpoch(s)
	return v, err == nil, err
}
