package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cliChildEnv marks the test binary, re-executed by cliCommand, as the
// imagebuilder CLI.
const cliChildEnv = "IMAGEBUILDER_TEST_CLI_CHILD"

// TestCLIChildProcess is the imagebuilder CLI when the test binary is
// re-executed by cliCommand (so tests can signal and kill a real command
// process without building the binary); in a normal test run it returns
// at once.
func TestCLIChildProcess(t *testing.T) {
	if os.Getenv(cliChildEnv) != "1" {
		return
	}
	os.Exit(run(flag.Args()))
}

// cliCommand is an imagebuilder command run in a child process.
func cliCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCLIChildProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), cliChildEnv+"=1")
	return cmd
}

// openFiles lists the paths of the files process pid has open (Linux
// /proc; an unnamed O_TMPFILE file shows as "DIR/#INODE (deleted)").
func openFiles(pid int) []string {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, _ := os.ReadDir(dir)
	var paths []string
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			paths = append(paths, p)
		}
	}
	return paths
}

// waitOpen waits until process pid has a file open whose path satisfies
// match, or until timeout; it reports whether it saw one.
func waitOpen(pid int, timeout time.Duration, match func(string) bool) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		for _, p := range openFiles(pid) {
			if match(p) {
				return true
			}
		}
	}
	return false
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// inDir says whether path is an entry of dir (named or unnamed).
func inDir(dir string) func(string) bool {
	return func(p string) bool { return strings.HasPrefix(p, dir+"/") }
}
