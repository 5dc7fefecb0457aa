package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// consoleCommand is one "$ " command of a console block and the output
// the page shows for it.
type consoleCommand struct {
	line   int // in the page
	cmd    string
	output string
}

// consoleBlocks reads the ```console blocks of a Markdown page: "$ "
// starts a command, a trailing backslash continues it on the next line, a
// here-document (<<'EOF') runs to its EOF line, and the lines up to the
// next command are its output.
func consoleBlocks(t *testing.T, page string) [][]consoleCommand {
	t.Helper()
	var blocks [][]consoleCommand
	lines := strings.Split(page, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```console" {
			continue
		}
		var block []consoleCommand
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			l := lines[i]
			if !strings.HasPrefix(l, "$ ") {
				if len(block) == 0 {
					t.Fatalf("line %d: output before any command", i+1)
				}
				block[len(block)-1].output += l + "\n"
				continue
			}
			c := consoleCommand{line: i + 1, cmd: strings.TrimPrefix(l, "$ ")}
			for strings.HasSuffix(c.cmd, "\\") && i+1 < len(lines) {
				i++
				c.cmd = strings.TrimSuffix(c.cmd, "\\") + " " + strings.TrimSpace(lines[i])
			}
			if strings.Contains(c.cmd, "<<'EOF'") {
				for i++; i < len(lines) && lines[i] != "EOF"; i++ {
					c.cmd += "\n" + lines[i]
				}
				c.cmd += "\nEOF"
			}
			block = append(block, c)
		}
		blocks = append(blocks, block)
	}
	return blocks
}

// TestInitrdDocExamples runs the console examples of docs/initrd.md, in
// order, in one shell in an empty directory, with imagebuilder being this
// test binary (TestInitrdCLIChild) and ~/.cache/imagebuilder the fixture
// cache, and compares every output with the page: "[...]" matches any
// text, and the Debian kernel's release is written VERSION. bin/guest-init
// is a stand-in: no output shown depends on its bytes.
func TestInitrdDocExamples(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "initrd.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "cpio", "zstd", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			fixtures.Missing(t, "%s not installed", tool)
		}
	}
	blocks := consoleBlocks(t, string(page))
	if len(blocks) < 5 {
		t.Fatalf("%d console blocks in docs/initrd.md", len(blocks))
	}

	tmp := t.TempDir()
	work, home, bin := filepath.Join(tmp, "work"), filepath.Join(tmp, "home"), filepath.Join(tmp, "path")
	for _, d := range []string{work, filepath.Join(work, "bin"), filepath.Join(home, ".cache"), bin} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(work, "bin", "guest-init"), []byte("stand-in for bin/guest-init\n"), 0o755)
	wrapper := "#!/bin/sh\nIMAGEBUILDER_TEST_CLI=1 exec '" + os.Args[0] + "' -test.run='^TestInitrdCLIChild$' -- \"$@\"\n"
	os.WriteFile(filepath.Join(bin, "imagebuilder"), []byte(wrapper), 0o755)
	release := ""
	if strings.Contains(string(page), "~/.cache/imagebuilder/debian-kernel") {
		k := fixtures.DebianKernel(t)
		release = k.Version
		os.Symlink(fixtures.CacheDir(), filepath.Join(home, ".cache", "imagebuilder"))
	}

	// One script for the page, with a separator after each command.
	const sep = "\x1e--- next command ---\x1e\n"
	var script strings.Builder
	var all []consoleCommand
	script.WriteString("status=0\n")
	for _, b := range blocks {
		for _, c := range b {
			all = append(all, c)
			script.WriteString("(exit $status)\n{\n" + c.cmd + "\n} 2>&1\nstatus=$?\nprintf '" + strings.ReplaceAll(sep, "\n", `\n`) + "'\n")
		}
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = work
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + home, "LC_ALL=C", "TZ=UTC", "TMPDIR=" + tmp}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "GOCOVERDIR" || k == "GOFLAGS" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the examples' shell: %v", err)
	}
	outputs := strings.Split(string(out), sep)
	if len(outputs) != len(all)+1 {
		t.Fatalf("%d outputs for %d commands:\n%s", len(outputs)-1, len(all), out)
	}
	for i, c := range all {
		got := outputs[i]
		if release != "" {
			got = strings.ReplaceAll(got, release, "VERSION")
		}
		if !matchOutput(c.output, got) {
			t.Errorf("docs/initrd.md:%d: $ %s\n--- the page shows\n%s--- it printed\n%s", c.line, c.cmd, c.output, got)
		}
	}
}

// matchOutput compares an output with the page's, where "[...]" stands
// for any text on its line.
func matchOutput(want, got string) bool {
	if !strings.Contains(want, "[...]") {
		return want == got
	}
	parts := strings.Split(want, "[...]")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `[^\n]*`) + `$`).MatchString(got)
}
