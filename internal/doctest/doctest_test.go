package doctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	doc := "# Title\n\n```console\n$ echo a \\\n  b\na b\n$ false\n$ echo $?\n1\n```\n\ntext\n\n```go\n$ not a command\n```\n\n```console\n$ true\n```\n"
	blocks, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || len(blocks[0].Commands) != 3 || len(blocks[1].Commands) != 1 {
		t.Fatalf("blocks %+v", blocks)
	}
	c := blocks[0].Commands[0]
	if c.Line != 4 || c.Cmd != "echo a \\\n  b" || c.Want != "a b\n" {
		t.Fatalf("first command %+v", c)
	}
	for _, bad := range []string{"```console\noutput first\n```\n", "```console\n$ echo\n", "```console\n$ echo \\\n```\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		ok        bool
	}{
		{"", "", true},
		{"a\n", "a\n", true},
		{"a\n", "b\n", false},
		{"a\nb\nc\n", "a\n...\nc\n", true},
		{"a\nc\n", "a\n...\nc\n", true},
		{"a\nb\n", "a\n...\nc\n", false},
		{"a\nb\n", "...\n", true},
		{"a\n", "a\nb\n", false},
		{"a\nb\n", "a\n", false},
	} {
		if Match(tc.got, tc.want) != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.got, tc.want, !tc.ok)
		}
	}
}

// TestRun runs a document with a wrapper program, files shared between
// blocks and the exit status of the previous command.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.md")
	os.WriteFile(doc, []byte("```console\n$ greet world > out.txt\n$ cat out.txt\nhello world from test\n```\n\n```console\n$ greet; exit 3\nhello  from test\n$ echo $?\n3\n```\n"), 0o644)
	bin := Wrapper(t, "greet", []string{"sh", "-c", `echo "hello $1 from $WHO"`, "greet"}, []string{"WHO=test"})
	Run(t, doc, Options{Path: []string{bin}})

	// A wrong expectation is reported.
	os.WriteFile(doc, []byte("```console\n$ echo yes\nno\n$ echo fine\nfine\n```\n"), 0o644)
	ms, err := Check(doc, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Line != 2 || ms[0].Got != "yes\n" || !strings.Contains(ms[0].String(), "--- want\nno\n") {
		t.Fatalf("mismatches %v", ms)
	}
	if _, err := Check(doc, Options{}); err == nil {
		t.Fatal("Check without a directory")
	}
}
