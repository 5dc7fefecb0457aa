// Package progress reports the stages of long commands and their steps:
// on a terminal, a bar redrawn in place for each running stage and step;
// elsewhere (CI logs, pipes), one structured log line per finished stage
// or step through log/slog, never a bar. Quiet mode reports nothing.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Mode selects how progress is shown.
type Mode int

const (
	// Auto shows bars when the writer is a terminal, log lines otherwise.
	Auto Mode = iota
	// Bars forces bars.
	Bars
	// Log forces log lines.
	Log
	// Quiet shows nothing.
	Quiet
)

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Reporter shows the progress of stages. It is safe for concurrent use:
// stages that run side by side (rootfs and initrd) report at once.
type Reporter struct {
	w      io.Writer
	bars   bool
	quiet  bool
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	running []*Task
	drawn   int // lines of bars currently on screen
	last    time.Time
}

// New returns a reporter writing to w (stderr, usually). logFormat is
// "text" or "json" for the log lines.
func New(w io.Writer, mode Mode, logFormat string) (*Reporter, error) {
	r := &Reporter{w: w, now: time.Now}
	switch mode {
	case Quiet:
		r.quiet = true
	case Bars:
		r.bars = true
	case Auto:
		if f, ok := w.(*os.File); ok && IsTerminal(f) {
			r.bars = true
		}
	}
	switch logFormat {
	case "", "text":
		r.logger = slog.New(slog.NewTextHandler(w, nil))
	case "json":
		r.logger = slog.New(slog.NewJSONHandler(w, nil))
	default:
		return nil, fmt.Errorf("log format %q: want text or json", logFormat)
	}
	return r, nil
}

// Logger is the logger of the log lines (for messages beside the stages).
func (r *Reporter) Logger() *slog.Logger { return r.logger }

// Task is one running stage, or one step of a stage.
type Task struct {
	r       *Reporter
	name    string
	parent  *Task // of a step
	total   int64
	done    int64
	started time.Time
	ended   bool
}

// Start begins a stage; total is the amount of work in bytes (0 if
// unknown).
func (r *Reporter) Start(name string, total int64) *Task {
	if r == nil {
		return &Task{name: name, total: total}
	}
	t := &Task{r: r, name: name, total: total, started: r.now()}
	if r.quiet {
		return t
	}
	r.mu.Lock()
	r.running = append(r.running, t)
	r.redraw(true)
	r.mu.Unlock()
	return t
}

// Step begins a step of the stage t (a pull, a pass over the data); total
// is its work in bytes (0 if unknown). Its bar, named STAGE/STEP, is drawn
// under the stage's; its Done writes its own line ("step done" off a
// terminal, with the bytes done).
func (t *Task) Step(name string, total int64) *Task {
	if t == nil || t.r == nil {
		return &Task{name: name, total: total}
	}
	r := t.r
	s := &Task{r: r, name: t.name + "/" + name, parent: t, total: total, started: r.now()}
	if r.quiet {
		return s
	}
	r.mu.Lock()
	// After the stage and its other running steps.
	at := len(r.running)
	for i, x := range r.running {
		if x == t {
			at = i + 1
			for at < len(r.running) && r.running[at].parent == t {
				at++
			}
			break
		}
	}
	r.running = append(r.running[:at], append([]*Task{s}, r.running[at:]...)...)
	r.redraw(true)
	r.mu.Unlock()
	return s
}

// Add records n more bytes of work done.
func (t *Task) Add(n int64) {
	if t == nil || t.r == nil || t.r.quiet {
		return
	}
	t.r.mu.Lock()
	t.done += n
	t.r.redraw(false)
	t.r.mu.Unlock()
}

// SetTotal changes the amount of work once it is known.
func (t *Task) SetTotal(total int64) {
	if t == nil || t.r == nil || t.r.quiet {
		return
	}
	t.r.mu.Lock()
	t.total = total
	t.r.mu.Unlock()
}

// Writer wraps w so that every byte written counts as progress.
func (t *Task) Writer(w io.Writer) io.Writer { return countingWriter{w, t} }

// Reader wraps r so that every byte read counts as progress.
func (t *Task) Reader(r io.Reader) io.Reader { return countingReader{r, t} }

type countingWriter struct {
	w io.Writer
	t *Task
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.Add(int64(n))
	return n, err
}

type countingReader struct {
	r io.Reader
	t *Task
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}

// Done ends the stage: on a terminal its bar is replaced by a final line,
// elsewhere one log line records it with attrs (e.g. "cached", true).
func (t *Task) Done(attrs ...any) {
	if t == nil || t.r == nil || t.ended {
		return
	}
	t.ended = true
	r := t.r
	if r.quiet {
		return
	}
	d := r.now().Sub(t.started)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.running {
		if x == t {
			r.running = append(r.running[:i], r.running[i+1:]...)
			break
		}
	}
	if r.bars {
		size := ""
		if t.parent != nil && t.done > 0 {
			size = ", " + mib(t.done)
		}
		r.clear()
		fmt.Fprintf(r.w, "%-*s done in %s%s%s\n", nameWidth, t.name, round(d), size, attrText(attrs))
		r.redraw(true)
		return
	}
	if t.parent != nil && t.done > 0 {
		attrs = append([]any{"bytes", t.done}, attrs...)
	}
	if t.parent != nil {
		args := append([]any{"stage", t.parent.name, "step", strings.TrimPrefix(t.name, t.parent.name+"/"),
			"seconds", float64(d.Milliseconds()) / 1000}, attrs...)
		r.logger.Info("step done", args...)
		return
	}
	args := append([]any{"stage", t.name, "seconds", float64(d.Milliseconds()) / 1000}, attrs...)
	r.logger.Info("stage done", args...)
}

func attrText(attrs []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(attrs); i += 2 {
		fmt.Fprintf(&b, " %v=%v", attrs[i], attrs[i+1])
	}
	return b.String()
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// clear erases the bars drawn so far (the cursor is after them).
func (r *Reporter) clear() {
	for i := 0; i < r.drawn; i++ {
		fmt.Fprint(r.w, "\x1b[1A\x1b[2K")
	}
	r.drawn = 0
}

// redraw draws one bar per running stage, at most ten times a second
// unless forced.
func (r *Reporter) redraw(force bool) {
	if !r.bars {
		return
	}
	now := r.now()
	if !force && now.Sub(r.last) < 100*time.Millisecond {
		return
	}
	r.last = now
	r.clear()
	for _, t := range r.running {
		fmt.Fprintln(r.w, t.bar(now))
		r.drawn++
	}
}

const barWidth = 30

// nameWidth fits the longest stage/step name ("rootfs/flatten").
const nameWidth = 16

func (t *Task) bar(now time.Time) string {
	el := now.Sub(t.started).Truncate(100 * time.Millisecond)
	switch {
	case t.total <= 0 && t.done == 0:
		return fmt.Sprintf("%-*s %s", nameWidth, t.name, el)
	case t.total <= 0:
		return fmt.Sprintf("%-*s %s %s", nameWidth, t.name, mib(t.done), el)
	}
	frac := float64(t.done) / float64(t.total)
	if frac > 1 {
		frac = 1
	}
	n := int(frac * barWidth)
	return fmt.Sprintf("%-*s [%s%s] %3.0f%% %s/%s %s", nameWidth, t.name, strings.Repeat("=", n),
		strings.Repeat(" ", barWidth-n), frac*100, mib(t.done), mib(t.total), el)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
