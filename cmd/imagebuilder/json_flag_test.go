package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
)

// TestJSONFileNotAFile: --json=FILE naming a directory or a FIFO is a bad
// flag value in every command that has --json: exit 2, naming --json and
// the path, before any work. (Before, rootfs build and initrd build failed
// with exit 1 after the work, naming neither the flag nor the command's
// usage, and verity format with exit 2.)
func TestJSONFileNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		// measure reference-values has a --json of its own (stdout only).
		if f := c.Flags().Lookup("json"); c.Runnable() && f != nil && f.Value.Type() == "file" {
			paths = append(paths, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCmd(), nil)
	if len(paths) < 10 {
		t.Fatalf("only %d commands with --json: %v", len(paths), paths)
	}
	for _, path := range paths {
		for _, c := range []struct{ target, want string }{
			{dir, dir + ": is a directory; give a file name"},
			{fifo, fifo + ": is a FIFO, not a regular file"},
		} {
			args := append(append([]string(nil), path...), "--json="+c.target)
			code, _, stderr := runCaptured(t, args...)
			if code != exitUsage || !strings.Contains(stderr, `"--json"`) || !strings.Contains(stderr, c.want) {
				t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
			}
		}
	}
}
