package e2e

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsole checks the console reading of the harness with a shell
// script standing in for QEMU (so it runs under -short too, in well under
// a second): lines are split as they come, cleaned of carriage returns and
// colour escapes, timed, found in any order, and the VM's end (by itself,
// or killed by the timeout) is reported.
func TestConsole(t *testing.T) {
	script := `printf 'Booting from ROM..\033cfirst\r\n\033[0;32m  OK  \033[0m] Reached target\r\n'; sleep 0.3; printf 'late line\r\n'; printf 'no newline at the end'`
	v := startConsole(t, 10*time.Second, "sh", "-c", script)
	l, err := v.waitFor(regexp.MustCompile(`^late line$`))
	if err != nil {
		t.Fatal(err)
	}
	if l.At < 250*time.Millisecond {
		t.Errorf("late line seen at %v, before it was written", l.At)
	}
	// Earlier lines are still found, cleaned.
	if l, err := v.waitFor(regexp.MustCompile(`^  OK  \] Reached target$`)); err != nil || l.At > 250*time.Millisecond {
		t.Errorf("coloured line: %+v, %v", l, err)
	}
	if _, err := v.waitFor(regexp.MustCompile(`^no newline at the end$`)); err != nil {
		t.Errorf("unterminated last line: %v", err)
	}
	if _, err := v.wait(); err != nil {
		t.Errorf("wait: %v", err)
	}
	_, err = v.waitFor(regexp.MustCompile(`never`))
	if !errors.Is(err, errVMStopped) {
		t.Errorf("waiting for a line that never comes: %v, want errVMStopped", err)
	}
	if want := "Booting from ROM..first\n  OK  ] Reached target\nlate line\nno newline at the end\n"; v.console() != want {
		t.Errorf("console %q, want %q", v.console(), want)
	}

	t.Run("timeout", func(t *testing.T) {
		// A child that keeps the console open is killed with its parent.
		v := startConsole(t, 200*time.Millisecond, "sh", "-c", "sleep 30 & echo started; wait")
		_, err := v.waitFor(regexp.MustCompile(`never`))
		if err == nil || errors.Is(err, errVMStopped) || !strings.Contains(err.Error(), "still running after 200ms") {
			t.Errorf("waitFor: %v, want a timeout", err)
		}
		if took, err := v.wait(); err == nil || took > 5*time.Second {
			t.Errorf("wait: %v after %v, want the timeout error soon after 200ms", err, took)
		}
		if !strings.Contains(v.console(), "started") {
			t.Errorf("console %q", v.console())
		}
	})

	t.Run("failure", func(t *testing.T) {
		v := startConsole(t, 10*time.Second, "sh", "-c", "echo 'qemu: could not open disk' >&2; exit 1")
		if _, err := v.wait(); err == nil || !strings.Contains(err.Error(), "exit status 1") {
			t.Errorf("wait: %v, want the exit status", err)
		}
		if !strings.Contains(v.console(), "could not open disk") {
			t.Errorf("stderr not in the console: %q", v.console())
		}
	})
}
