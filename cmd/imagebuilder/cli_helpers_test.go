package main

import (
	"io"
	"os"
	"testing"
)

// capture runs f with *stream (os.Stdout or os.Stderr) redirected to a
// pipe and returns what f wrote there. The pipe is drained while f runs,
// so large outputs do not block.
func capture(t *testing.T, stream **os.File, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := *stream
	*stream = w
	defer func() { *stream = old }()
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		done <- string(b)
	}()
	f()
	w.Close()
	return <-done
}

// captureStderr runs f with os.Stderr redirected and returns what it wrote.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	return capture(t, &os.Stderr, f)
}

// runCaptured runs the CLI with args and returns its exit code and what it
// wrote to stdout and stderr.
func runCaptured(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stdout = capture(t, &os.Stdout, func() {
		stderr = capture(t, &os.Stderr, func() { code = run(args) })
	})
	return code, stdout, stderr
}
