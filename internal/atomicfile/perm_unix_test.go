//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPermissions: the published file has perm minus the umask, and
// creating it leaves the process umask as it was.
func TestPermissions(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "out")
	if err := WriteFile(path, []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o640 {
		t.Errorf("mode %o, want 640", got)
	}
	if m := syscall.Umask(0o027); m != 0o027 {
		t.Errorf("umask changed to %o", m)
	}
}

// TestRefusesNonRegular: an output is published by replacing the name it
// is given, so an existing FIFO, socket or device there (or a symlink to
// one, like /dev/stdout) is refused and left as it was; before, a run as
// root with --json=/dev/null or --root-hash-file /dev/full replaced the
// device node with a regular file.
func TestRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("fifo", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, link} {
		if err := WriteFile(path, []byte("x"), 0o644); err == nil || err.Error() != "output "+path+": is a FIFO, not a regular file" {
			t.Errorf("WriteFile(%s): %v", path, err)
		}
		var s Set
		if _, err := s.Create(path, 0o644); err == nil {
			t.Errorf("Set.Create(%s) accepted a FIFO", path)
		}
		s.Abort()
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("the FIFO was replaced: %v %v", st.Mode(), err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode().Type() != os.ModeSymlink {
		t.Errorf("the symlink was replaced: %v %v", st.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("left behind: %v", entries)
	}
}
