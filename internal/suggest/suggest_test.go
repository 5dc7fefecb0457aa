package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"verity", "verity", 0},
		{"verty", "verity", 1},
		{"verty", "verify", 2},
		{"fromat", "format", 2},
		{"kitten", "sitting", 3},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.b, c.a, got, c.want)
		}
	}
}

func TestClosest(t *testing.T) {
	for _, c := range []struct {
		word  string
		cands []string
		max   int
		want  string
	}{
		{"verty", []string{"verify", "verity", "version"}, -1, "verity"},
		{"rootFS", []string{"kernel", "rootfs", "initrd"}, 2, "rootfs"},
		{"agnet", []string{"source", "agent"}, 2, "agent"},
		{"vcpu", []string{"platform", "vcpus", "cpu"}, 2, "vcpus"}, // equally near: the first
		{"zzzzzz", []string{"kernel", "rootfs"}, 2, ""},
		{"zzzzzz", []string{"kernel", "rootfs"}, -1, "kernel"},
		{"x", nil, -1, ""},
	} {
		if got := Closest(c.word, c.cands, c.max); got != c.want {
			t.Errorf("Closest(%q, %q, %d) = %q, want %q", c.word, c.cands, c.max, got, c.want)
		}
	}
}
