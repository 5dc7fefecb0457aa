package golden

import (
	"os"
	"path/filepath"
	"testing"
)

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}

func TestCheck(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "g.txt")
	t.Setenv(EnvVar, "1")
	Check(t, p, []byte("v1"))
	if b, _ := os.ReadFile(p); string(b) != "v1" {
		t.Fatalf("update wrote %q", b)
	}
	t.Setenv(EnvVar, "")
	Check(t, p, []byte("v1"))
	r := &recorder{TB: t}
	Check(r, p, []byte("v2"))
	if !r.failed {
		t.Error("a difference did not fail")
	}
}
