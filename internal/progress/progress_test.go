package progress

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by step on every reading.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(step); return t }
}

func TestLogLines(t *testing.T) {
	var buf bytes.Buffer
	r, err := New(&buf, Auto, "json") // a buffer is not a terminal
	if err != nil {
		t.Fatal(err)
	}
	r.now = fakeClock(time.Second)
	task := r.Start("rootfs", 100)
	io.Copy(task.Writer(io.Discard), strings.NewReader(strings.Repeat("x", 100)))
	task.Done("cached", false)
	task.Done() // a second Done does nothing
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got %q", buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "stage done" || rec["stage"] != "rootfs" || rec["cached"] != false || rec["seconds"] != 1.0 {
		t.Errorf("log line %v", rec)
	}
	if strings.Contains(buf.String(), "\x1b") || strings.Contains(buf.String(), "\r") {
		t.Error("terminal control sequences in log output")
	}
}

func TestBars(t *testing.T) {
	var buf bytes.Buffer
	r, _ := New(&buf, Bars, "text")
	r.now = fakeClock(200 * time.Millisecond)
	a := r.Start("rootfs", 1<<20)
	b := r.Start("initrd", 0)
	a.Add(1 << 19)
	b.Add(1 << 20)
	a.Done()
	b.Done("cached", true)
	out := buf.String()
	for _, want := range []string{"rootfs     [", " 50% 0.5 MiB/1.0 MiB", "initrd     1.0 MiB", "rootfs     done in", "initrd     done in", "cached=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%q", want, out)
		}
	}
}

func TestQuietAndNil(t *testing.T) {
	var buf bytes.Buffer
	r, _ := New(&buf, Quiet, "text")
	task := r.Start("x", 10)
	task.Add(5)
	task.Done()
	if buf.Len() != 0 {
		t.Errorf("quiet reporter wrote %q", buf.String())
	}
	var nilR *Reporter
	nt := nilR.Start("x", 1)
	nt.Add(1)
	nt.Done()
	if _, err := New(&buf, Auto, "xml"); err == nil {
		t.Error("bad log format accepted")
	}
}
