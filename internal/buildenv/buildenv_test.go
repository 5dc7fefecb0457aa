package buildenv

import "testing"

func TestParseSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1700000000", 1700000000, true},
		{"4294967295", 4294967295, true},
		{"4294967296", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{" 1", 0, false},
		{"0x10", 0, false},
	} {
		got, err := ParseSourceDateEpoch(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSourceDateEpoch(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestSourceDateEpochEnv(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if v, set, err := SourceDateEpoch(); v != 0 || set || err != nil {
		t.Errorf("empty: %d %v %v", v, set, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "42")
	if v, set, err := SourceDateEpoch(); v != 42 || !set || err != nil {
		t.Errorf("42: %d %v %v", v, set, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "soon")
	if _, _, err := SourceDateEpoch(); err == nil {
		t.Error("bad value accepted")
	}
}
