// Package progress reports the stages of long commands: on a terminal, a
// bar redrawn in place for each running stage; elsewhere (CI logs, pipes),
// one structured log line per finished stage through log/slog, never a
// bar. Quiet mode reports nothing.
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

// Task is one running stage.
type Task struct {
	r       *Reporter
	name    string
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
		r.clear()
		fmt.Fprintf(r.w, "%-10s done in %s%s\n", t.name, round(d), attrText(attrs))
		r.redraw(true)
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

func (t *Task) bar(now time.Time) string {
	el := now.Sub(t.started).Truncate(100 * time.Millisecond)
	if t.total <= 0 {
		return fmt.Sprintf("%-10s %s %s", t.name, mib(t.done), el)
	}
	frac := float64(t.done) / float64(t.total)
	if frac > 1 {
		frac = 1
	}
	n := int(frac * barWidth)
	return fmt.Sprintf("%-10s [%s%s] %3.0f%% %s/%s %s", t.name, strings.Repeat("=", n),
		strings.Repeat(" ", barWidth-n), frac*100, mib(t.done), mib(t.total), el)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
