package verity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// maxMemoryScratch is the largest hash area PrepareAppended keeps in
// memory (the hash area of about 2 GiB of data with the default
// parameters); larger ones go to an unnamed temporary file.
var maxMemoryScratch int64 = 16 << 20

// commitPiece is how much of the hash area Commit writes at a time, between
// checks of the context.
const commitPiece = 1 << 20

// Appended is a hash area computed for the file that holds the data, to be
// written into it after the data (veritysetup format DATA DATA: data and
// hash on one device). PrepareAppended computes it without changing the
// file; Commit writes it, and is the only step that does.
type Appended struct {
	f       *os.File
	size    int64 // size of f before Commit
	res     *Result
	scratch scratchFile

	mu       sync.Mutex
	started  bool // Commit has begun writing into f
	reverted bool
}

// scratchFile holds the hash area until Commit copies it into the file.
type scratchFile interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
}

// memScratch is a hash area held in memory.
type memScratch struct{ b []byte }

func (m *memScratch) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write of %d bytes at %d outside the hash area of %d bytes", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memScratch) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memScratch) Close() error { m.b = nil; return nil }

// shiftedWriter writes at off-base of w: the hash area at HashOffset of the
// device goes to offset 0 of the scratch space.
type shiftedWriter struct {
	w    io.WriterAt
	base int64
}

func (s shiftedWriter) WriteAt(p []byte, off int64) (int, error) { return s.w.WriteAt(p, off-s.base) }

// appendedParams fills in the data blocks and the hash offset of the
// appended mode from the size of the file: HashOffset 0 means right after
// the data blocks; DataBlocks 0 means all of the file (HashOffset 0) or
// the blocks before HashOffset.
func appendedParams(p *Params, size int64, name string) error {
	if err := p.Validate(); err != nil {
		return err
	}
	bs := uint64(p.DataBlockSize)
	if p.DataBlocks == 0 {
		if p.HashOffset == 0 {
			if size <= 0 || uint64(size)%bs != 0 {
				return fmt.Errorf("data size %d of %s is not a positive multiple of the data block size %d", size, name, bs)
			}
			p.HashOffset = uint64(size)
		}
		if p.HashOffset%bs != 0 || p.HashOffset/bs == 0 {
			return fmt.Errorf("with the hash area in %s at offset %d, the number of data blocks is needed", name, p.HashOffset)
		}
		p.DataBlocks = p.HashOffset / bs
	} else if p.HashOffset == 0 {
		if p.DataBlocks > (1<<63-1)/bs {
			return fmt.Errorf("%d data blocks of %d bytes overflow a 64-bit size", p.DataBlocks, bs)
		}
		p.HashOffset = p.DataBlocks * bs
	}
	if p.DataBlocks > p.HashOffset/bs {
		return fmt.Errorf("data area (%d blocks of %d bytes) overlaps the hash area at offset %d", p.DataBlocks, bs, p.HashOffset)
	}
	if p.DataBlocks > uint64(size)/bs {
		return fmt.Errorf("%s is %d bytes, too small for %d blocks of %d bytes", name, size, p.DataBlocks, bs)
	}
	// Checked again now that the offset is known (without a superblock
	// it must be a multiple of the hash block size).
	return p.Validate()
}

// PrepareAppended computes the hash tree of the data at the start of f and
// the hash area (the superblock unless p.NoSuperblock, then the tree) that
// goes at p.HashOffset of f, without changing f. Call Commit to write it,
// and Close in any case.
//
// p.HashOffset 0 means right after the data blocks. p.DataBlocks 0 means
// all of f when p.HashOffset is 0 (its size must then be a multiple of the
// data block size), else the blocks before p.HashOffset. The data area
// must end at or before p.HashOffset.
//
// The hash area is held in memory when it is at most 16 MiB (the tree of
// about 2 GiB of data with the default parameters), else in an unnamed
// temporary file in f's directory (O_TMPFILE on Linux, so nothing is left
// even if the process is killed; elsewhere a file removed as soon as it is
// created).
func PrepareAppended(ctx context.Context, f *os.File, p Params) (*Appended, error) {
	a, err := prepareAppended(ctx, f, p)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return a, nil
}

func prepareAppended(ctx context.Context, f *os.File, p Params) (*Appended, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	size := st.Size()
	if err := appendedParams(&p, size, f.Name()); err != nil {
		return nil, err
	}
	plan, err := Plan(p)
	if err != nil {
		return nil, err
	}
	var scratch scratchFile
	if plan.HashAreaSize <= maxMemoryScratch {
		scratch = &memScratch{b: make([]byte, plan.HashAreaSize)}
	} else if scratch, err = tempScratch(filepath.Dir(f.Name())); err != nil {
		return nil, fmt.Errorf("temporary file for the hash area: %w", err)
	}
	res, err := Format(ctx, f, size, shiftedWriter{scratch, int64(p.HashOffset)}, p)
	if err != nil {
		scratch.Close()
		// Format's errors already say "verity: ".
		return nil, unwrapVerity(err)
	}
	return &Appended{f: f, size: size, res: res, scratch: scratch}, nil
}

// unwrapVerity drops the "verity: " an exported function put before an
// error, for a caller that puts it again.
func unwrapVerity(err error) error {
	if inner := errors.Unwrap(err); inner != nil && err.Error() == "verity: "+inner.Error() {
		return inner
	}
	return err
}

// Result is the tree that Commit writes.
func (a *Appended) Result() *Result { return a.res }

// Commit writes the hash area into the file at HashOffset, extends the file
// to the hash device size if the hash area does not reach it, and syncs
// it. It is the only step that changes the file: if it fails, or ctx is
// cancelled while it writes, the file is cut back to its old size. Bytes
// of the file inside the hash area (when it lies within the old size) are
// overwritten and not restored.
func (a *Appended) Commit(ctx context.Context) error {
	a.mu.Lock()
	if a.started || a.reverted || a.scratch == nil {
		a.mu.Unlock()
		return errors.New("verity: the hash area was already written, reverted or closed")
	}
	a.started = true
	a.mu.Unlock()
	if err := a.commit(ctx); err != nil {
		a.Revert()
		return fmt.Errorf("verity: %w", err)
	}
	return nil
}

func (a *Appended) commit(ctx context.Context) error {
	off := int64(a.res.Params.HashOffset)
	buf := make([]byte, min(commitPiece, max(a.res.HashAreaSize, 1)))
	for done := int64(0); done < a.res.HashAreaSize; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), a.res.HashAreaSize-done)
		if k, err := a.scratch.ReadAt(buf[:n], done); int64(k) < n {
			return fmt.Errorf("reading back the hash area: %w", err)
		}
		if err := a.writeAt(buf[:n], off+done); err != nil {
			return fmt.Errorf("writing the hash area into %s: %w", a.f.Name(), err)
		}
		done += n
	}
	if end := a.res.HashDeviceSize(); end > a.size && a.res.HashAreaSize == 0 {
		if err := a.truncate(end); err != nil {
			return fmt.Errorf("extending %s: %w", a.f.Name(), err)
		}
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", a.f.Name(), err)
	}
	return nil
}

// writeAt writes into the file unless Revert has run (which may be called
// from another goroutine, by a signal handler's cleanup).
func (a *Appended) writeAt(p []byte, off int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reverted {
		return errors.New("reverted")
	}
	_, err := a.f.WriteAt(p, off)
	return err
}

func (a *Appended) truncate(size int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reverted {
		return errors.New("reverted")
	}
	return a.f.Truncate(size)
}

// Revert cuts the file back to the size it had before Commit, for a caller
// whose later step failed (or that was interrupted). Nothing is written
// into the file after Revert. It may be called from another goroutine
// than Commit's, more than once, and before Commit (it then only stops
// Commit from writing).
func (a *Appended) Revert() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reverted {
		return nil
	}
	a.reverted = true
	if !a.started {
		return nil
	}
	st, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	if st.Size() > a.size {
		if err := a.f.Truncate(a.size); err != nil {
			return fmt.Errorf("verity: cutting %s back to %d bytes: %w", a.f.Name(), a.size, err)
		}
	}
	return nil
}

// Close releases the scratch space holding the hash area. It does not
// change the file.
func (a *Appended) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.scratch == nil {
		return nil
	}
	err := a.scratch.Close()
	a.scratch = nil
	return err
}

// FormatAppended computes the hash tree of the data at the start of f and
// writes the hash area into f after the data, as `veritysetup format F F
// --hash-offset=...` does: PrepareAppended, then Commit. The file is
// changed only in the final step, which writes the precomputed hash area;
// on an error or cancellation it is cut back to its old size. A process
// killed during that step (by SIGKILL, which no code can catch) leaves
// the file longer than it was; a caller that can run code on SIGINT or
// SIGTERM calls Revert from its handler (the CLI does).
func FormatAppended(ctx context.Context, f *os.File, p Params) (*Result, error) {
	a, err := PrepareAppended(ctx, f, p)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if err := a.Commit(ctx); err != nil {
		return nil, err
	}
	return a.Result(), nil
}
