package deb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
)

// ExtractOptions select what Extract writes.
type ExtractOptions struct {
	WalkOptions
	// Filter, when set, chooses the entries to write; the parents of a
	// chosen entry are created as directories (0755) when not chosen.
	Filter func(e *Entry) bool
}

// ExtractResult counts what Extract wrote.
type ExtractResult struct {
	Dir       string `json:"dir"`
	Files     int    `json:"files"`
	Dirs      int    `json:"dirs"` // listed directories (not implied parents)
	Symlinks  int    `json:"symlinks"`
	HardLinks int    `json:"hard_links"`
	Bytes     int64  `json:"bytes"` // regular file contents
}

// Extract writes the data tree of the package into dir, which must not
// exist or be empty. Modes are set as the package gives them (the umask
// does not matter; directory modes last, so that read-only directories
// can be filled); owners and times are not restored: the tree is an
// intermediate, and imagebuilder takes every output time from
// SOURCE_DATE_EPOCH. All writes go through an os.Root of dir, so no entry
// can reach outside it, even through a symlink the package made. On error
// the files written so far are removed.
func (p *Package) Extract(ctx context.Context, dir string, opts ExtractOptions) (*ExtractResult, error) {
	return p.extract(ctx, dir, opts, nil)
}

// extract is Extract; tee, when set, may return a writer that also gets a
// regular file's contents.
func (p *Package) extract(ctx context.Context, dir string, opts ExtractOptions, tee func(*Entry) io.Writer) (*ExtractResult, error) {
	created, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("deb: %w", err)
	}
	x := &extractor{root: root, res: &ExtractResult{Dir: dir}, made: map[string]bool{}, buf: make([]byte, 256<<10), tee: tee}
	err = p.Walk(ctx, opts.WalkOptions, func(e *Entry, r io.Reader) error {
		if opts.Filter != nil && !opts.Filter(e) {
			return nil
		}
		return x.add(e, r)
	})
	x.closeDir()
	if err == nil {
		err = x.finish()
	}
	root.Close()
	if err != nil {
		cleanup(dir, created)
		return nil, err
	}
	return x.res, nil
}

// prepareDir makes sure dir is an empty directory, creating it if needed.
func prepareDir(dir string) (created bool, err error) {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return false, fmt.Errorf("deb: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("deb: %w", err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("deb: target %s is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("deb: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, fmt.Errorf("deb: target %s is not empty", dir)
	}
	return false, nil
}

// cleanup removes what a failed Extract wrote.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(dir + "/" + e.Name())
	}
}

type extractor struct {
	root *os.Root
	res  *ExtractResult
	made map[string]bool // directories created
	dirs []dirMode       // modes to set at the end
	buf  []byte
	tee  func(*Entry) io.Writer
	// The directory of the last entry, opened as a root of its own, so
	// that each file costs one openat instead of one per path element
	// (tar lists a directory's entries together).
	curDir  string
	curRoot *os.Root
}

// dirRoot returns a root for the directory holding p and p's base name.
func (x *extractor) dirRoot(p string) (*os.Root, string, error) {
	dir, base := path.Split(p)
	if dir == "" {
		return x.root, base, nil
	}
	dir = dir[:len(dir)-1]
	if x.curRoot == nil || x.curDir != dir {
		x.closeDir()
		r, err := x.root.OpenRoot(dir)
		if err != nil {
			return nil, "", fmt.Errorf("deb: %w", err)
		}
		x.curDir, x.curRoot = dir, r
	}
	return x.curRoot, base, nil
}

func (x *extractor) closeDir() {
	if x.curRoot != nil {
		x.curRoot.Close()
		x.curRoot = nil
	}
}

type dirMode struct {
	path string
	mode fs.FileMode
}

// mkdirs creates the missing parents of p.
func (x *extractor) mkdirs(p string) error {
	dir := path.Dir(p)
	if dir == "." || x.made[dir] {
		return nil
	}
	if err := x.mkdirs(dir); err != nil {
		return err
	}
	if err := x.root.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("deb: %w", err)
	}
	x.made[dir] = true
	x.dirs = append(x.dirs, dirMode{dir, 0o755}) // not left to the umask
	return nil
}

func (x *extractor) add(e *Entry, r io.Reader) error {
	if err := x.mkdirs(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case TypeDir:
		if !x.made[e.Path] {
			if err := x.root.Mkdir(e.Path, 0o700); err != nil {
				return fmt.Errorf("deb: %w", err)
			}
			x.made[e.Path] = true
		}
		x.dirs = append(x.dirs, dirMode{e.Path, e.Mode})
		x.res.Dirs++
	case TypeReg:
		dr, base, err := x.dirRoot(e.Path)
		if err != nil {
			return err
		}
		f, err := dr.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		var w io.Writer = f
		if x.tee != nil {
			if t := x.tee(e); t != nil {
				w = io.MultiWriter(f, t)
			}
		}
		n, err := io.CopyBuffer(w, r, x.buf)
		if err != nil {
			f.Close()
			return err
		}
		if n != e.Size {
			f.Close()
			return &FormatError{Entry: e.Name, Offset: -1, Msg: fmt.Sprintf("%d bytes of contents, header says %d", n, e.Size)}
		}
		if err := f.Chmod(e.Mode); err != nil {
			f.Close()
			return fmt.Errorf("deb: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		x.res.Files++
		x.res.Bytes += n
	case TypeSymlink:
		dr, base, err := x.dirRoot(e.Path)
		if err != nil {
			return err
		}
		if err := dr.Symlink(e.Linkname, base); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		x.res.Symlinks++
	case TypeLink:
		if err := x.root.Link(e.Linkname, e.Path); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		x.res.HardLinks++
	}
	return nil
}

// finish sets directory modes, deepest first.
func (x *extractor) finish() error {
	sort.SliceStable(x.dirs, func(i, j int) bool { return len(x.dirs[i].path) > len(x.dirs[j].path) })
	for _, d := range x.dirs {
		if err := x.root.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
	}
	return nil
}
