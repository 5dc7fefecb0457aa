// Package golden is the one switch for rewriting golden files in every
// package: IMAGEBUILDER_UPDATE_GOLDEN=1 (or `make golden`) makes each test
// that checks a golden file write what it computed instead, so a
// deliberate change is one command and one reviewable diff.
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// EnvVar is the environment variable that turns updating on.
const EnvVar = "IMAGEBUILDER_UPDATE_GOLDEN"

// Update reports whether golden files are to be rewritten.
func Update() bool { return os.Getenv(EnvVar) != "" }

// Hint is what a failing golden test tells the developer to run.
const Hint = "if the change is intended: make golden (" + EnvVar + "=1 go test ./...), then review the diff"

// Check compares got with the golden file at path; when Update is on, it
// writes got to path first. A difference fails the test naming the file.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if Update() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (%s)", path, err, Hint)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the test computed (%d bytes, golden %d); %s", path, len(got), len(want), Hint)
	}
}
