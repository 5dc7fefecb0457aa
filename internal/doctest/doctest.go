// Package doctest runs the console examples of a Markdown document, so
// that every example in docs/ stays true.
//
// Each ```console block is a shell session: a line starting with "$ " is a
// command (a line ending in a backslash continues on the next line), and
// the lines after it, up to the next command or the end of the block, are
// what it must print (stdout and stderr together, in the order written).
// A line "..." in the expected output stands for any number of lines.
//
// The commands of one document run in order, each with sh -c, in one
// directory, so later examples use the files earlier ones made; "$?" is
// the exit status of the previous command, as in a shell session. The
// environment is fixed (LC_ALL=C, TZ=UTC, umask 022), and the programs
// the test provides (see Wrapper) come first on PATH.
package doctest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Command is one command of a console block and the output it must print.
type Command struct {
	// Line is the line number of the "$ " line in the document.
	Line int
	// Cmd is the command as given to sh -c.
	Cmd string
	// Want is the expected output: its lines, each ending in "\n".
	Want string
}

// Block is one ```console block.
type Block struct {
	Line     int // line number of the opening fence
	Commands []Command
}

// Parse returns the console blocks of a Markdown document.
func Parse(doc []byte) ([]Block, error) {
	var blocks []Block
	var cur *Block
	var cmd *Command
	continued := false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	flush := func() {
		if cmd != nil {
			cur.Commands = append(cur.Commands, *cmd)
			cmd = nil
		}
	}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil:
			if trimmed == "```console" {
				blocks = append(blocks, Block{Line: n})
				cur = &blocks[len(blocks)-1]
			}
		case trimmed == "```":
			if continued {
				return nil, fmt.Errorf("line %d: the block ends inside a continued command", n)
			}
			flush()
			cur = nil
		case continued:
			cmd.Cmd += "\n" + line
			continued = strings.HasSuffix(line, `\`)
		case strings.HasPrefix(line, "$ "):
			flush()
			cmd = &Command{Line: n, Cmd: line[2:]}
			continued = strings.HasSuffix(line, `\`)
		case cmd == nil:
			return nil, fmt.Errorf("line %d: output before the first command of the block", n)
		default:
			cmd.Want += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: console block not closed", cur.Line)
	}
	return blocks, nil
}

// Options say where and how the commands run.
type Options struct {
	// Dir is the directory the commands run in; Run makes a new
	// temporary directory when it is empty.
	Dir string
	// Path lists directories put first on PATH (for example the one
	// Wrapper made).
	Path []string
	// Env is added to the environment (KEY=VALUE).
	Env []string
}

// Mismatch is a command whose output differs from the document.
type Mismatch struct {
	Command
	Got string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("line %d: $ %s\n--- got\n%s--- want\n%s", m.Line, m.Cmd, m.Got, m.Want)
}

// Run runs every console block of the Markdown file at path (see Check)
// and reports each command whose output differs from the document. It
// fails the test if the document has no console block.
func Run(t *testing.T, path string, opts Options) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ms, err := Check(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("%s: %v", filepath.Base(path), m)
	}
}

// Check runs every console block of the Markdown file at path in
// opts.Dir (which must be set) and returns the commands whose output
// differs from the document.
func Check(path string, opts Options) ([]Mismatch, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blocks, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%s: no console block", path)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("doctest: no directory to run %s in", path)
	}
	env := append(os.Environ(), "LC_ALL=C", "LANG=C", "TZ=UTC")
	env = append(env, "PATH="+strings.Join(append(append([]string{}, opts.Path...), os.Getenv("PATH")), string(os.PathListSeparator)))
	env = append(env, opts.Env...)
	var ms []Mismatch
	status := 0
	for _, b := range blocks {
		for _, c := range b.Commands {
			// "(exit N)" makes $? the previous command's status.
			script := "umask 022; (exit " + strconv.Itoa(status) + "); " + c.Cmd
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = opts.Dir
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			status = 0
			if err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					return nil, fmt.Errorf("%s:%d: %s: %w", path, c.Line, c.Cmd, err)
				}
				status = ee.ExitCode()
			}
			if !Match(string(out), c.Want) {
				ms = append(ms, Mismatch{Command: c, Got: string(out)})
			}
		}
	}
	return ms, nil
}

// Match says whether got is want, where a line "..." in want stands for
// any number of lines of got.
func Match(got, want string) bool {
	return match(splitLines(got), splitLines(want))
}

func match(got, want []string) bool {
	for len(want) > 0 {
		if want[0] == "..." {
			for i := 0; i <= len(got); i++ {
				if match(got[i:], want[1:]) {
					return true
				}
			}
			return false
		}
		if len(got) == 0 || got[0] != want[0] {
			return false
		}
		got, want = got[1:], want[1:]
	}
	return len(got) == 0
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// Wrapper writes an executable shell script called name in a new
// temporary directory that runs argv followed by its own arguments, with
// env added to the environment, and returns the directory (for
// Options.Path). A test of package main can run itself as the program:
// argv is os.Args[0] with flags that select a test which calls the
// command's main function.
func Wrapper(t *testing.T, name string, argv, env []string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, e := range env {
		b.WriteString("export " + shellQuote(e) + "\n")
	}
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(` "$@"` + "\n")
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
