// Package stagecache is the content-addressed cache of pipeline stages.
//
// A stage's key is the sha256 of its name, a schema version, the tool's
// revision, the canonical JSON of its part of the configuration and the
// digests of its inputs. An entry holds the stage's output files and its
// result (JSON), with the size and sha256 of every file; a lookup hashes
// the files again and treats any difference as a miss (the entry is
// removed and the stage rebuilt), so a corrupt entry is never used.
//
// Entries are published all at once (atomicfile.Dir): concurrent builds
// and interrupted ones never see half an entry.
package stagecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/ctxio"
)

// Schema is the version of the entry layout; bump it when entries change
// meaning, so old ones are never read.
const Schema = 1

// entryFile is the name of an entry's description inside its directory.
const entryFile = "entry.json"

// Key identifies one execution of a stage.
type Key struct {
	Stage    string `json:"stage"`
	Schema   int    `json:"schema"`
	Revision string `json:"revision"`
	// Config is the canonical JSON of the stage's part of the config.
	Config json.RawMessage `json:"config"`
	// Inputs maps an input's name to its digest ("sha256:...").
	Inputs map[string]string `json:"inputs"`
}

// Sum is the hex sha256 of the key's canonical JSON (encoding/json sorts
// map keys; Config must itself be canonical).
func (k Key) Sum() (string, error) {
	if k.Schema == 0 {
		k.Schema = Schema
	}
	b, err := json.Marshal(k)
	if err != nil {
		return "", fmt.Errorf("stage cache key of %s: %w", k.Stage, err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// Output is one file of an entry.
type Output struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Entry is a stage's cached outputs and result.
type Entry struct {
	Key     string          `json:"key"`
	Stage   string          `json:"stage"`
	Outputs []Output        `json:"outputs"`
	Result  json.RawMessage `json:"result"`

	dir string
}

// Path is the file of the entry named name.
func (e *Entry) Path(name string) string { return filepath.Join(e.dir, name) }

// Output returns the description of the output named name.
func (e *Entry) Output(name string) (Output, bool) {
	for _, o := range e.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return Output{}, false
}

// Cache is a stage cache rooted at a directory.
type Cache struct {
	dir string
}

// Open returns the cache under dir (created when first written).
func Open(dir string) *Cache { return &Cache{dir: filepath.Join(dir, "stages")} }

func (c *Cache) entryDir(sum string) string { return filepath.Join(c.dir, sum[:2], sum) }

// CorruptError says a cached entry did not match its description; Lookup
// removes such an entry and reports a miss, with the error for the log.
type CorruptError struct {
	Stage, Key, File string
	Reason           string
}

func (e *CorruptError) Error() string {
	stage := ""
	if e.Stage != "" { // unknown when the entry's description does not parse
		stage = e.Stage + " "
	}
	return fmt.Sprintf("stage cache: %sentry %s: %s: %s", stage, e.Key[:12], e.File, e.Reason)
}

// Lookup returns the entry for sum if it exists and every file still has
// its recorded size and sha256. A corrupt entry is removed and returned as
// a miss with a *CorruptError describing it.
func (c *Cache) Lookup(ctx context.Context, sum string) (*Entry, error) {
	dir := c.entryDir(sum)
	b, err := os.ReadFile(filepath.Join(dir, entryFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Key != sum {
		os.RemoveAll(dir)
		return nil, &CorruptError{Key: sum, File: entryFile, Reason: "unreadable description"}
	}
	e.dir = dir
	for _, o := range e.Outputs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		size, sha, err := hashFile(ctx, e.Path(o.Name))
		reason := ""
		switch {
		case err != nil:
			reason = err.Error()
		case size != o.Size:
			reason = fmt.Sprintf("%d bytes, recorded %d", size, o.Size)
		case sha != o.SHA256:
			reason = fmt.Sprintf("sha256 %s, recorded %s", sha, o.SHA256)
		}
		if reason != "" {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			os.RemoveAll(dir)
			return nil, &CorruptError{Stage: e.Stage, Key: sum, File: o.Name, Reason: reason}
		}
	}
	return &e, nil
}

func hashFile(ctx context.Context, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// Pending is an entry being written.
type Pending struct {
	c     *Cache
	sum   string
	stage string
	dir   *atomicfile.Dir
	files map[string]*atomicfile.File
	names []string
}

// Begin starts an entry for sum; the stage writes its outputs with Create
// and publishes them with Commit.
func (c *Cache) Begin(stage, sum string) (*Pending, error) {
	parent := filepath.Dir(c.entryDir(sum))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	d, err := atomicfile.NewDir(c.entryDir(sum))
	if err != nil {
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	// An entry that exists was found corrupt or raced with another
	// build: it may be replaced.
	d.CanReplace = func(string) error { return nil }
	return &Pending{c: c, sum: sum, stage: stage, dir: d, files: map[string]*atomicfile.File{}}, nil
}

// Create adds an output file to the entry. The file is unnamed until
// Commit; it can be read back (it is an *os.File) by later stages.
func (p *Pending) Create(name string) (*atomicfile.File, error) {
	if name == entryFile {
		return nil, fmt.Errorf("stage cache: %s is reserved", name)
	}
	f, err := p.dir.Create(name, 0o644)
	if err != nil {
		return nil, err
	}
	p.files[name] = f
	p.names = append(p.names, name)
	return f, nil
}

// Commit hashes the outputs, records result and publishes the entry.
func (p *Pending) Commit(ctx context.Context, result any) (*Entry, error) {
	rb, err := json.Marshal(result)
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("stage cache: %s result: %w", p.stage, err)
	}
	e := &Entry{Key: p.sum, Stage: p.stage, Result: rb, dir: p.c.entryDir(p.sum)}
	names := slices.Clone(p.names)
	slices.Sort(names)
	for _, n := range names {
		f := p.files[n]
		h := sha256.New()
		size, err := io.Copy(h, ctxio.Reader(ctx, io.NewSectionReader(f, 0, 1<<62)))
		if err != nil {
			p.Abort()
			return nil, fmt.Errorf("stage cache: %s: %w", n, err)
		}
		e.Outputs = append(e.Outputs, Output{Name: n, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	desc, err := p.dir.Create(entryFile, 0o644)
	if err != nil {
		p.Abort()
		return nil, err
	}
	eb, _ := json.Marshal(e)
	if _, err := desc.Write(append(eb, '\n')); err != nil {
		p.Abort()
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	if err := p.dir.Commit(); err != nil {
		return nil, fmt.Errorf("stage cache: %w", err)
	}
	return e, nil
}

// Abort discards the entry.
func (p *Pending) Abort() { p.dir.Abort() }

// Canonical returns the canonical JSON of v: encoding/json's output (map
// keys sorted, struct fields in declaration order), compact, no HTML
// escaping.
func Canonical(v any) (json.RawMessage, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return json.RawMessage(strings.TrimSuffix(b.String(), "\n")), nil
}
