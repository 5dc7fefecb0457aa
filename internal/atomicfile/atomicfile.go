// Package atomicfile publishes outputs all or nothing.
//
// On Linux an output is created as an unnamed file (O_TMPFILE) in the
// directory it will live in and gets its name with linkat only when it is
// complete, so no named temporary file exists while it is written and a
// process killed with SIGKILL leaves nothing behind. Where O_TMPFILE is not
// available (other systems, some file systems) the output is written under a
// temporary name ".NAME.tmp-NNNN" beside the target, which is removed on
// Abort and by Cleanup (which the CLI calls when it is interrupted).
//
// Replacing an existing file needs a name for the new inode before rename
// makes it the target; that name exists only between the link and the
// rename (two system calls).
//
// A command with several outputs puts them in a Set and commits the Set:
// every file is written and synced first, then all are named; if naming one
// fails, the ones already named are removed, so a reader sees either all
// outputs or none of them. Dir does the same for a whole output directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// File is an output being written. Write to it (it is an *os.File, so it is
// also an io.WriterAt and io.ReaderAt), then call Commit to publish it, or
// Abort to discard it. Abort after Commit does nothing, so
// `defer f.Abort()` is the usual pattern.
type File struct {
	*os.File
	final string
	// tmpName is the temporary name of a file written under one (no
	// O_TMPFILE); "" for an unnamed file.
	tmpName string
	done    bool
	inSet   bool
	unreg   func()
}

// Create starts a new output that will be published as path with the given
// permission bits (before the umask, as with os.OpenFile).
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("output %s: is a directory name, not a file name", path)
	}
	if dir == "" {
		dir = "."
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("output %s: is a directory", path)
	} else if err == nil && !st.Mode().IsRegular() {
		// Publishing replaces the name: a device, FIFO or socket there
		// (or behind a symlink, like /dev/stdout) would be replaced by a
		// regular file, not written to.
		return nil, fmt.Errorf("output %s: is a %s, not a regular file", path, Kind(st.Mode()))
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("output %s: %s is not a directory", path, dir)
	}
	// The file is created with perm itself, so the kernel applies the
	// umask: reading the umask would mean setting it, which races with
	// files other goroutines create meanwhile.
	if f, err := openUnnamed(dir, perm); err == nil {
		return &File{File: f, final: path}, nil
	} else if !errors.Is(err, errUnsupported) {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	tmp, name, err := createTemp(dir, base, perm)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	f := &File{File: tmp, final: path, tmpName: name}
	f.unreg = RegisterCleanup(func() { os.Remove(name) })
	return f, nil
}

// Kind names a non-regular file type (FIFO, socket, device) for an error
// refusing it as an output.
func Kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// createTemp creates a new file ".base.tmp-NNNN" in dir.
func createTemp(dir, base string, perm os.FileMode) (*os.File, string, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return nil, "", err
		}
	}
}

// tempName returns an unused name ".base.tmp-NNNN" in dir (for a link that
// a rename replaces at once).
func tempName(dir, base string) string {
	return filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
}

// Commit flushes the file to stable storage, closes it and gives it its
// final name.
func (f *File) Commit() error {
	if f.inSet {
		return errors.New("atomicfile: a file of a Set is committed by the Set")
	}
	if err := f.prepare(); err != nil {
		f.Abort()
		return err
	}
	p, err := f.link(f.final)
	if err != nil {
		f.Abort()
		return err
	}
	if err := p.publish(false); err != nil {
		p.undo()
		f.Abort()
		return err
	}
	f.finish()
	return nil
}

// prepare syncs the contents to stable storage.
func (f *File) prepare() error {
	if f.done {
		return errors.New("atomicfile: already committed or aborted")
	}
	if err := f.File.Sync(); err != nil {
		return fmt.Errorf("output %s: %w", f.final, err)
	}
	return nil
}

// pending is a file that has a name in its directory but is not yet
// published under its final name: either it was linked straight to the
// final name (which did not exist: nothing to do but undo on failure) or it
// waits under a temporary name for a rename over the existing file.
type pending struct {
	tmp, final string
	direct     bool // linked straight to final
	// backup is a second name of the file publish replaced, kept until
	// the whole set is published so that a failure can restore it.
	backup string
}

// publish makes the pending file the final one. keepOld keeps the replaced
// file under p.backup so that restore can put it back.
func (p *pending) publish(keepOld bool) error {
	if p.direct {
		return nil
	}
	if keepOld {
		dir, base := filepath.Split(p.final)
		if dir == "" {
			dir = "."
		}
		b := tempName(dir, base)
		if err := os.Link(p.final, b); err == nil {
			p.backup = b
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("output %s: %w", p.final, err)
		}
	}
	if err := os.Rename(p.tmp, p.final); err != nil {
		p.dropBackup()
		return fmt.Errorf("output %s: %w", p.final, err)
	}
	return nil
}

// restore undoes a publish: the old file comes back, or the new name goes.
func (p *pending) restore() {
	if p.backup != "" {
		os.Rename(p.backup, p.final)
		p.backup = ""
		return
	}
	os.Remove(p.final)
}

func (p *pending) dropBackup() {
	if p.backup != "" {
		os.Remove(p.backup)
		p.backup = ""
	}
}

// undo removes the name a pending, unpublished file got.
func (p *pending) undo() {
	if p.direct {
		os.Remove(p.final)
	} else {
		os.Remove(p.tmp)
	}
}

// link gives the file a name that publish turns into target: the target
// itself when it does not exist yet, else a temporary name to rename.
func (f *File) link(target string) (pending, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	if f.tmpName != "" {
		return pending{tmp: f.tmpName, final: target}, nil
	}
	err := linkUnnamed(f.File, target)
	if err == nil {
		return pending{final: target, direct: true}, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return pending{}, fmt.Errorf("output %s: %w", target, err)
	}
	for try := 0; ; try++ {
		tmp := tempName(dir, base)
		err := linkUnnamed(f.File, tmp)
		if err == nil {
			return pending{tmp: tmp, final: target}, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return pending{}, fmt.Errorf("output %s: %w", target, err)
		}
	}
}

// finish closes the published file.
func (f *File) finish() {
	f.done = true
	if f.unreg != nil {
		f.unreg()
	}
	f.File.Close()
}

// Abort discards the file. It is safe to call more than once and after
// Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	if f.tmpName != "" {
		os.Remove(f.tmpName)
	}
	if f.unreg != nil {
		f.unreg()
	}
}

// Final returns the name the file will have after Commit.
func (f *File) Final() string { return f.final }

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return f.Commit()
}

// Set is a group of outputs published together by Commit.
type Set struct {
	files []*File
	done  bool
}

// Create adds a new output to the set (see the package Create).
func (s *Set) Create(path string, perm os.FileMode) (*File, error) {
	if s.done {
		return nil, errors.New("atomicfile: set already committed or aborted")
	}
	for _, f := range s.files {
		if filepath.Clean(f.final) == filepath.Clean(path) {
			return nil, fmt.Errorf("output %s: given twice", path)
		}
	}
	f, err := Create(path, perm)
	if err != nil {
		return nil, err
	}
	f.inSet = true
	s.files = append(s.files, f)
	return f, nil
}

// Commit syncs every file, then names them all. If any step fails, the
// names already given are removed and every file is discarded.
func (s *Set) Commit() error {
	if s.done {
		return errors.New("atomicfile: set already committed or aborted")
	}
	defer s.Abort()
	for _, f := range s.files {
		if err := f.prepare(); err != nil {
			return err
		}
	}
	var linked []*pending
	undo := func() {
		for _, p := range linked {
			p.undo()
		}
	}
	for _, f := range s.files {
		p, err := f.link(f.final)
		if err != nil {
			undo()
			return err
		}
		linked = append(linked, &p)
	}
	// Files replaced by the set keep a second name until every file is
	// in place, so that a failure halfway can put them back.
	for i, p := range linked {
		if err := p.publish(true); err != nil {
			for _, q := range linked[:i] {
				q.restore()
			}
			for _, q := range linked[i:] {
				q.undo()
			}
			return err
		}
	}
	for _, p := range linked {
		p.dropBackup()
	}
	for _, f := range s.files {
		f.finish()
	}
	s.done = true
	return nil
}

// Abort discards every file of the set that is not published.
func (s *Set) Abort() {
	for _, f := range s.files {
		f.Abort()
	}
	s.done = true
}

var cleanups struct {
	sync.Mutex
	next int
	fns  map[int]func()
}

// RegisterCleanup records fn to be run by Cleanup, for work that must be
// undone when the process is interrupted (a temporary name, a file grown in
// place). The returned function removes it again once the work is finished
// or undone otherwise.
func RegisterCleanup(fn func()) (unregister func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.fns == nil {
		cleanups.fns = map[int]func(){}
	}
	id := cleanups.next
	cleanups.next++
	cleanups.fns[id] = fn
	return func() {
		cleanups.Lock()
		delete(cleanups.fns, id)
		cleanups.Unlock()
	}
}

// Cleanup runs every registered cleanup function, newest first, and
// forgets them. The CLI calls it when a signal interrupts a command that
// does not return in time.
func Cleanup() {
	cleanups.Lock()
	fns := cleanups.fns
	cleanups.fns = nil
	cleanups.Unlock()
	ids := make([]int, 0, len(fns))
	for id := range fns {
		ids = append(ids, id)
	}
	// Newest first, as deferred calls run.
	slices.Sort(ids)
	slices.Reverse(ids)
	for _, id := range ids {
		fns[id]()
	}
}
