package podvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/stagecache"
)

// pipelineSchema versions what this package's stages store in the stage
// cache (their results and files); bump it when one changes meaning, so
// that old entries are never read.
const pipelineSchema = 1

// Progress receives the stages of a build as they run: the CLI draws bars
// from it on a terminal and writes one log line per stage elsewhere. Its
// methods may be called from several goroutines at once (the kernel and
// initrd stages run beside the root file system).
type Progress interface {
	// Start begins a stage; total is its work in bytes, 0 if unknown.
	Start(stage string, total int64) ProgressTask
}

// ProgressTask is one running stage, or one step of a stage.
type ProgressTask interface {
	// Add records n more bytes of work done.
	Add(n int64)
	// Step begins a step of the stage; total is its work in bytes, 0 if
	// unknown. The rootfs stage's steps are "pull" (registry blobs not
	// in the blob cache yet), "flatten", "erofs" and "verity"; the
	// initrd stage's are those of its image sources, if any, then
	// "compress". Steps of a stage run one after another: each one's
	// Done, with StageStatus.Stage "STAGE/STEP", comes before the next
	// Step and before the stage's Done. A stage reused from the cache
	// has no steps; a step that fails gets no Done.
	Step(name string, total int64) ProgressTask
	// Done ends the stage or step.
	Done(StageStatus)
}

// StageStatus says how a stage ended: built, or reused from the stage
// cache, and how long it took. It is what a build did on this machine,
// not part of the manifest.
type StageStatus struct {
	Stage   string        `json:"stage"`
	Cached  bool          `json:"cached"`
	Elapsed time.Duration `json:"elapsed"`
	// Rebuilt says why a cache entry was not used although it existed
	// (a file whose digest did not match); "" otherwise.
	Rebuilt string `json:"rebuilt,omitempty"`
}

type noProgress struct{}

func (noProgress) Start(string, int64) ProgressTask { return noTask{} }

type noTask struct{}

func (noTask) Add(int64)                       {}
func (noTask) Step(string, int64) ProgressTask { return noTask{} }
func (noTask) Done(StageStatus)                {}

// steps turns the progress callback of pkg/source, pkg/rootfs and
// pkg/initrd (see internal/meter) into steps of task t: a call with done
// 0 begins a step, ending the one before; end ends the last. It is not
// safe for concurrent use, nor need it be: the callback's calls are
// serialized.
type steps struct {
	t     ProgressTask
	stage string
	cur   ProgressTask
	name  string
	done  int64
	start time.Time
}

func newSteps(t ProgressTask, stage string) *steps { return &steps{t: t, stage: stage} }

// report is the callback.
func (s *steps) report(step string, done, total int64) {
	if s.cur == nil || done == 0 || step != s.name {
		s.end()
		s.cur, s.name, s.done, s.start = s.t.Step(step, total), step, 0, time.Now()
	}
	if done > s.done {
		s.cur.Add(done - s.done)
		s.done = done
	}
}

// end ends the current step, if any.
func (s *steps) end() {
	if s.cur != nil {
		s.cur.Done(StageStatus{Stage: s.stage + "/" + s.name, Elapsed: time.Since(s.start)})
		s.cur = nil
	}
}

// stageFile is one file a stage made, open for reading.
type stageFile struct {
	Name   string
	Size   int64
	SHA256 string
	f      *os.File
	// path is the file in the stage cache, "" when the stage ran without
	// the cache (the file is then an unnamed file, or one of the output
	// directory's).
	path string
}

// section is the file as an io.ReaderAt of its size.
func (s *stageFile) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// readAll returns the file's content.
func (s *stageFile) readAll() ([]byte, error) {
	b := make([]byte, s.Size)
	if _, err := s.f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// stageRun describes one execution of a stage.
type stageRun struct {
	name string
	// config is the stage's part of the config, inputs the digests of
	// what it reads: with the tool's revision they make the cache key.
	config any
	inputs map[string]string
	// files are the names of the files the stage writes; publish maps
	// those that are outputs to their name in the output directory.
	files   []string
	publish map[string]string
	// result points to the stage's typed result: filled by run, or from
	// the cache. It goes through JSON either way, so that a cached and a
	// built stage give the same value.
	result any
	total  int64
	run    func(ctx context.Context, out map[string]*os.File, t ProgressTask) error
}

// runStage runs s, or reuses its cache entry.
func (b *builder) runStage(ctx context.Context, s stageRun) (map[string]*stageFile, error) {
	start := time.Now()
	task := b.progress.Start(s.name, s.total)
	status := StageStatus{Stage: s.name}
	cfg, err := CanonicalJSON(s.config)
	if err != nil {
		return nil, &StageError{Stage: s.name, Err: err}
	}
	key := stagecache.Key{Stage: s.name, Schema: pipelineSchema, Revision: b.revision, Config: cfg, Inputs: s.inputs}
	sum, err := key.Sum()
	if err != nil {
		return nil, &StageError{Stage: s.name, Err: err}
	}
	finish := func(files map[string]*stageFile, cached bool) (map[string]*stageFile, error) {
		b.track(files)
		status.Cached, status.Elapsed = cached, time.Since(start)
		task.Done(status)
		b.statusMu.Lock()
		b.status = append(b.status, status)
		b.statusMu.Unlock()
		return files, nil
	}
	if b.cache != nil {
		e, err := b.cache.Lookup(ctx, sum)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ce *stagecache.CorruptError
		switch {
		case errors.As(err, &ce):
			status.Rebuilt = ce.Error()
			b.log.Warn("stage cache entry corrupt: rebuilding", "stage", s.name, "error", ce.Error())
		case err != nil:
			status.Rebuilt = err.Error()
			b.log.Warn("stage cache entry unreadable: rebuilding", "stage", s.name, "error", err.Error())
		case e != nil:
			files, err := b.entryFiles(e, s)
			if err == nil {
				err = decodeResult(e.Result, s.result)
			}
			if err == nil {
				return finish(files, true)
			}
			closeFiles(files)
			status.Rebuilt = err.Error()
			b.log.Warn("stage cache entry unusable: rebuilding", "stage", s.name, "error", err.Error())
		}
		p, err := b.cache.Begin(s.name, sum)
		if err != nil {
			b.log.Warn("stage cache not writable: building without it", "stage", s.name, "error", err.Error())
		} else {
			out := map[string]*os.File{}
			for _, n := range s.files {
				f, err := p.Create(n)
				if err != nil {
					p.Abort()
					return nil, &StageError{Stage: s.name, Input: "stage cache", Err: err}
				}
				out[n] = f.File
			}
			if err := s.run(ctx, out, task); err != nil {
				p.Abort()
				return nil, err
			}
			e, err := p.Commit(ctx, s.result)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, &StageError{Stage: s.name, Input: "stage cache", Err: err}
			}
			files, err := b.entryFiles(e, s)
			if err == nil {
				err = decodeResult(e.Result, s.result)
			}
			if err != nil {
				closeFiles(files)
				return nil, &StageError{Stage: s.name, Input: "stage cache", Err: err}
			}
			return finish(files, false)
		}
	}
	// Without the cache: outputs are made in the output directory,
	// other files unnamed beside it, discarded at the end.
	out := map[string]*os.File{}
	var made []*atomicfile.File
	abort := func() {
		for _, f := range made {
			f.Abort()
		}
	}
	for _, n := range s.files {
		var f *atomicfile.File
		if o, ok := s.publish[n]; ok {
			// Stages run side by side; the directory is not safe for
			// concurrent use.
			b.outMu.Lock()
			f, err = b.out.Create(o, 0o644)
			b.outMu.Unlock()
		} else {
			f, err = atomicfile.Create(filepath.Join(filepath.Dir(b.out.Path()), ".imagebuilder-"+s.name+"-"+n), 0o600)
			if err == nil {
				b.scratchMu.Lock()
				b.scratch = append(b.scratch, f)
				b.scratchMu.Unlock()
			}
		}
		if err != nil {
			abort()
			return nil, &StageError{Stage: s.name, Input: n, Err: err}
		}
		made = append(made, f)
		out[n] = f.File
	}
	if err := s.run(ctx, out, task); err != nil {
		return nil, err
	}
	data, err := json.Marshal(s.result)
	if err == nil {
		err = decodeResult(data, s.result)
	}
	if err != nil {
		return nil, &StageError{Stage: s.name, Err: err}
	}
	files := map[string]*stageFile{}
	for _, n := range s.files {
		f := out[n]
		st, err := f.Stat()
		if err != nil {
			return nil, &StageError{Stage: s.name, Input: n, Err: err}
		}
		sum, size, err := readerDigest(ctx, ioSection(f, st.Size()))
		if err != nil {
			return nil, &StageError{Stage: s.name, Input: n, Err: err}
		}
		files[n] = &stageFile{Name: n, Size: size, SHA256: sum, f: f}
	}
	// The handles belong to the output directory or the scratch list:
	// they are not closed with the stage files.
	for _, f := range files {
		f.path = ""
	}
	status.Cached, status.Elapsed = false, time.Since(start)
	task.Done(status)
	b.statusMu.Lock()
	b.status = append(b.status, status)
	b.statusMu.Unlock()
	return files, nil
}

// entryFiles opens the files of a cache entry.
func (b *builder) entryFiles(e *stagecache.Entry, s stageRun) (map[string]*stageFile, error) {
	files := map[string]*stageFile{}
	for _, n := range s.files {
		o, ok := e.Output(n)
		if !ok {
			closeFiles(files)
			return nil, fmt.Errorf("entry lacks %s", n)
		}
		f, err := os.Open(e.Path(n))
		if err != nil {
			closeFiles(files)
			return nil, err
		}
		files[n] = &stageFile{Name: n, Size: o.Size, SHA256: o.SHA256, f: f, path: e.Path(n)}
	}
	return files, nil
}

func closeFiles(files map[string]*stageFile) {
	for _, f := range files {
		if f.path != "" {
			f.f.Close()
		}
	}
}

// track keeps the open cache files to close at the end of the build.
func (b *builder) track(files map[string]*stageFile) {
	b.scratchMu.Lock()
	defer b.scratchMu.Unlock()
	for _, f := range files {
		if f.path != "" {
			b.open = append(b.open, f.f)
		}
	}
}

// decodeResult decodes data into the value result points to, replacing it
// whole, so that a result read from the cache and one just built are
// the same value.
func decodeResult(data []byte, result any) error {
	v := reflect.ValueOf(result).Elem()
	fresh := reflect.New(v.Type())
	if err := json.Unmarshal(data, fresh.Interface()); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	v.Set(fresh.Elem())
	return nil
}

// ioSection is f's first size bytes as a reader.
func ioSection(f *os.File, size int64) *io.SectionReader { return io.NewSectionReader(f, 0, size) }
