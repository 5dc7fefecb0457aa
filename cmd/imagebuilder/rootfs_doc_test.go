package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// consoleBlock is one ```console block of a Markdown page: commands
// ("$ " lines) with the output each must print.
type consoleBlock struct {
	steps []consoleStep
}

type consoleStep struct {
	cmd      string
	want     []string
	lineFrom int // index of the first output line in the page
	lineTo   int // one past the last
}

func parseConsoleBlocks(lines []string) []consoleBlock {
	var blocks []consoleBlock
	var cur *consoleBlock
	for i, l := range lines {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```console":
			blocks = append(blocks, consoleBlock{})
			cur = &blocks[len(blocks)-1]
		case cur != nil && strings.TrimSpace(l) == "```":
			cur = nil
		case cur != nil && strings.HasPrefix(l, "$ "):
			cur.steps = append(cur.steps, consoleStep{cmd: l[2:], lineFrom: i + 1, lineTo: i + 1})
		case cur != nil && len(cur.steps) > 0:
			s := &cur.steps[len(cur.steps)-1]
			s.want = append(s.want, l)
			s.lineTo = i + 1
		}
	}
	return blocks
}

// TestRootfsDocExamples runs the console examples of docs/rootfs.md, each
// block in an empty directory (umask 022, TZ=UTC, LC_ALL=C) with
// `imagebuilder` on PATH (this test binary, see TestMainProcess), and
// compares what each command prints (stdout and stderr) with the page.
// UPDATE_GOLDEN=1 writes the outputs into the page instead.
func TestRootfsDocExamples(t *testing.T) {
	const page = "../../docs/rootfs.md"
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	blocks := parseConsoleBlocks(lines)
	if len(blocks) == 0 {
		t.Fatal("no console examples")
	}
	bin := t.TempDir()
	wrapper := fmt.Sprintf("#!/bin/sh\nIMAGEBUILDER_TEST_MAIN=1 exec %q -test.run='^TestMainProcess$' -- \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(bin, "imagebuilder"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	update := os.Getenv("UPDATE_GOLDEN") != ""
	type patch struct {
		from, to int
		out      []string
	}
	var patches []patch
	for i, blk := range blocks {
		dir := t.TempDir()
		for _, s := range blk.steps {
			cmd := exec.Command("bash", "-c", "umask 022\n"+s.cmd)
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + dir, "TZ=UTC", "LC_ALL=C",
				"IMAGEBUILDER_CACHE=" + filepath.Join(dir, ".cache")}
			out, _ := cmd.CombinedOutput()
			got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(out) == 0 {
				got = nil
			}
			if update {
				patches = append(patches, patch{s.lineFrom, s.lineTo, got})
				continue
			}
			if strings.Join(got, "\n") != strings.Join(s.want, "\n") {
				t.Errorf("block %d: $ %s\ngot:\n%s\nwant:\n%s", i+1, s.cmd, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
			}
		}
	}
	if update {
		for k := len(patches) - 1; k >= 0; k-- {
			p := patches[k]
			lines = append(lines[:p.from], append(p.out, lines[p.to:]...)...)
		}
		if err := os.WriteFile(page, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
