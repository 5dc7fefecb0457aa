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
	for _, want := range []string{"rootfs           [", " 50% 0.5 MiB/1.0 MiB", "initrd           1.0 MiB", "rootfs           done in", "initrd           done in", "cached=true"} {
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

// TestStepBars draws a stage with two steps: each step's bar under the
// stage's, then its final line before the stage's.
func TestStepBars(t *testing.T) {
	var buf bytes.Buffer
	r, _ := New(&buf, Bars, "text")
	r.now = fakeClock(200 * time.Millisecond)
	st := r.Start("rootfs", 0)
	other := r.Start("initrd", 0)
	pull := st.Step("pull", 4<<20)
	pull.Add(1 << 20)
	screen := lastScreen(buf.String())
	if want := []string{"rootfs ", "rootfs/pull      [=======                       ]  25% 1.0 MiB/4.0 MiB", "initrd "}; !prefixes(screen, want) {
		t.Errorf("screen %q, want lines starting %q", screen, want)
	}
	pull.Add(3 << 20)
	pull.Done()
	flat := st.Step("flatten", 0)
	flat.Add(1 << 19)
	flat.Done()
	st.Done()
	other.Done()
	out := buf.String()
	order := []string{"rootfs/pull      done in", ", 4.0 MiB", "rootfs/flatten   0.5 MiB", "rootfs/flatten   done in", "rootfs           done in", "initrd           done in"}
	at := 0
	for _, want := range order {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("output lacks %q after offset %d:\n%q", want, at, out)
		}
		at += i
	}
	if screen := lastScreen(out); len(screen) != 0 {
		t.Errorf("bars left on screen: %q", screen)
	}
}

// lastScreen is the bars on screen at the end of out: the lines after the
// last erase sequence that are not final "done in" lines.
func lastScreen(out string) []string {
	if i := strings.LastIndex(out, "\x1b[2K"); i >= 0 {
		out = out[i+len("\x1b[2K"):]
	}
	var bars []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" && !strings.Contains(l, " done in ") {
			bars = append(bars, l)
		}
	}
	return bars
}

func prefixes(lines, want []string) bool {
	if len(lines) != len(want) {
		return false
	}
	for i := range lines {
		if !strings.HasPrefix(lines[i], want[i]) {
			return false
		}
	}
	return true
}

// TestStepLogLines: off a terminal, one "step done" line per step (with
// its stage, step and bytes), then the stage's line; no bars.
func TestStepLogLines(t *testing.T) {
	var buf bytes.Buffer
	r, _ := New(&buf, Log, "json")
	r.now = fakeClock(time.Second)
	st := r.Start("initrd", 0)
	c := st.Step("compress", 100)
	io.Copy(c.Writer(io.Discard), strings.NewReader(strings.Repeat("x", 100)))
	c.Done()
	st.Done("cached", false)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two log lines, got %q", buf.String())
	}
	var step, stage map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &step); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &stage); err != nil {
		t.Fatal(err)
	}
	if step["msg"] != "step done" || step["stage"] != "initrd" || step["step"] != "compress" || step["bytes"] != 100.0 || step["seconds"] != 1.0 {
		t.Errorf("step line %v", step)
	}
	if stage["msg"] != "stage done" || stage["stage"] != "initrd" {
		t.Errorf("stage line %v", stage)
	}
	if strings.Contains(buf.String(), "\x1b") {
		t.Error("terminal control sequences in log output")
	}
	// Quiet: steps print nothing either.
	buf.Reset()
	q, _ := New(&buf, Quiet, "text")
	qs := q.Start("rootfs", 0)
	qs.Step("pull", 10).Done()
	qs.Done()
	if buf.Len() != 0 {
		t.Errorf("quiet reporter wrote %q", buf.String())
	}
}
