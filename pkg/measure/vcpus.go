package measure

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseVCPURange reads a vCPU count ("4") or an inclusive range of them
// ("1-8"), each from 1 to MaxVCPUs: the syntax of the config file's
// vcpus and of the CLI's --vcpus.
func ParseVCPURange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || lo > hi {
		return 0, 0, fmt.Errorf("%q: want a vCPU count or a range such as \"1-8\"", s)
	}
	if lo < 1 || hi > MaxVCPUs {
		return 0, 0, fmt.Errorf("%q: want 1 to %d (vCPU counts)", s, MaxVCPUs)
	}
	return lo, hi, nil
}
