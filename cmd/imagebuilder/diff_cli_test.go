package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// diff's exit status is diff(1)'s: 0 identical, 1 different (no error
// line), 2 trouble; --json=FILE is written in every case with a result.
func TestDiffCLI(t *testing.T) {
	dir := t.TempDir()
	a, b, j := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), filepath.Join(dir, "d.json")
	os.WriteFile(a, []byte("one\n"), 0o644)
	os.WriteFile(b, []byte("two\n"), 0o644)
	for _, tc := range []struct {
		args         []string
		code         int
		out, errLine string
	}{
		{[]string{"diff", a, a}, 0, a + " and " + a + " are identical (text files)\n", ""},
		{[]string{"diff", a, b}, 1, "text files differ: 1 difference\n  lines line 1: \"one\" -> \"two\"", ""},
		{[]string{"diff", a, b, "--json=" + j}, 1, "text files differ", ""},
		{[]string{"diff", a, b, "--kind", "data"}, 1, "files differ: 1 difference\n  bytes content: 4 bytes, sha256 ", ""},
		{[]string{"diff", a, b, "--kind", "igvm"}, 2, "", "imagebuilder: diff: " + a + ": igvm: "},
		{[]string{"diff", a, b, "--kind", "nope"}, 2, "", "--kind nope: not one of rootfs, erofs"},
		{[]string{"diff", dir, dir, "--kind", "text"}, 2, "", "is a directory; --kind compares two files"},
		{[]string{"diff", a, filepath.Join(dir, "none")}, 2, "", "none: no such file or directory\n"},
	} {
		code, out, errOut := runCaptured(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || (tc.errLine == "") != (errOut == "") ||
			!strings.Contains(errOut, tc.errLine) || strings.Count(errOut, "\n") > 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", tc.args, code, out, errOut, tc.code, tc.out, tc.errLine)
		}
	}
	var res struct {
		Identical   bool
		Differences []struct{ Section, Path, A, B string }
	}
	data, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil || res.Identical || len(res.Differences) != 1 || res.Differences[0].Path != "line 1" {
		t.Errorf("--json=FILE: %v %s", err, data)
	}
}
