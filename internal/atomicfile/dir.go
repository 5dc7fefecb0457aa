package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir is an output directory published all at once: its files are written
// as unnamed files beside it, and Commit makes a new directory holding them
// and swaps it with the old one, so readers see the old directory or the
// new one, never a mix, and a build killed before Commit leaves nothing.
type Dir struct {
	final string
	// CanReplace decides whether an existing directory at the final path
	// may be replaced (it is given its path). nil allows only an empty
	// one, so that a mistyped -o never deletes unrelated files.
	CanReplace func(existing string) error

	files []*File
	names []string
	links []dirLink
	done  bool
}

// dirLink is an existing file that Commit puts into the directory.
type dirLink struct{ name, src string }

// NewDir starts an output directory that Commit publishes at path.
func NewDir(path string) (*Dir, error) {
	clean := filepath.Clean(path)
	if st, err := os.Stat(clean); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("output directory %s: exists and is not a directory", path)
	}
	parent := filepath.Dir(clean)
	if st, err := os.Stat(parent); err != nil {
		return nil, fmt.Errorf("output directory %s: %w", path, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("output directory %s: %s is not a directory", path, parent)
	}
	return &Dir{final: clean}, nil
}

// Path is the final path of the directory.
func (d *Dir) Path() string { return d.final }

// Create adds a file named name (one path element) to the directory.
func (d *Dir) Create(name string, perm os.FileMode) (*File, error) {
	if d.done {
		return nil, errors.New("atomicfile: directory already committed or aborted")
	}
	if err := d.checkName(name); err != nil {
		return nil, err
	}
	// The file is created in the parent, where the directory will be,
	// under a name in the parent (that is only used without O_TMPFILE).
	f, err := Create(filepath.Join(filepath.Dir(d.final), "."+filepath.Base(d.final)+"."+name), perm)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", filepath.Join(d.final, name), err)
	}
	f.inSet = true
	f.final = filepath.Join(d.final, name)
	d.files = append(d.files, f)
	d.names = append(d.names, name)
	return f, nil
}

// checkName refuses a name that is not one path element or that the
// directory already holds.
func (d *Dir) checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("output %s: not a plain file name", name)
	}
	for _, n := range d.names {
		if n == name {
			return fmt.Errorf("output %s: given twice", filepath.Join(d.final, name))
		}
	}
	for _, l := range d.links {
		if l.name == name {
			return fmt.Errorf("output %s: given twice", filepath.Join(d.final, name))
		}
	}
	return nil
}

// AddLink puts the existing file src into the directory as name when the
// directory is committed: a hard link where src is on the same file
// system, a copy otherwise. src must not change until Commit.
func (d *Dir) AddLink(name, src string) error {
	if d.done {
		return errors.New("atomicfile: directory already committed or aborted")
	}
	if err := d.checkName(name); err != nil {
		return err
	}
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("output %s: %w", filepath.Join(d.final, name), err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("output %s: %s is not a regular file", filepath.Join(d.final, name), src)
	}
	d.links = append(d.links, dirLink{name, src})
	return nil
}

// Commit syncs every file, assembles the new directory under a temporary
// name beside the final one and swaps it into place; the old directory, if
// any, is removed. On any error nothing changes at the final path.
func (d *Dir) Commit() error {
	if d.done {
		return errors.New("atomicfile: directory already committed or aborted")
	}
	defer d.Abort()
	exists := false
	if _, err := os.Lstat(d.final); err == nil {
		exists = true
		check := d.CanReplace
		if check == nil {
			check = requireEmpty
		}
		if err := check(d.final); err != nil {
			return fmt.Errorf("output directory %s: %w", d.final, err)
		}
	}
	for _, f := range d.files {
		if err := f.prepare(); err != nil {
			return err
		}
	}
	parent, base := filepath.Split(d.final)
	if parent == "" {
		parent = "."
	}
	var tmp string
	for try := 0; ; try++ {
		tmp = tempName(parent, base)
		err := os.Mkdir(tmp, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return fmt.Errorf("output directory %s: %w", d.final, err)
		}
	}
	unreg := RegisterCleanup(func() { os.RemoveAll(tmp) })
	defer unreg()
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return err
	}
	for i, f := range d.files {
		target := filepath.Join(tmp, d.names[i])
		if f.tmpName != "" {
			if err := os.Rename(f.tmpName, target); err != nil {
				return fail(fmt.Errorf("output %s: %w", f.final, err))
			}
			f.tmpName = ""
			continue
		}
		if err := linkUnnamed(f.File, target); err != nil {
			return fail(fmt.Errorf("output %s: %w", f.final, err))
		}
	}
	for _, l := range d.links {
		if err := linkOrCopy(l.src, filepath.Join(tmp, l.name)); err != nil {
			return fail(fmt.Errorf("output %s: %w", filepath.Join(d.final, l.name), err))
		}
	}
	if err := syncDir(tmp); err != nil {
		return fail(fmt.Errorf("output directory %s: %w", d.final, err))
	}
	if exists {
		if err := exchange(tmp, d.final); err == nil {
			// tmp now holds the old directory.
			os.RemoveAll(tmp)
		} else if errors.Is(err, errUnsupported) {
			// No atomic exchange: move the old one aside first.
			old := tempName(parent, base)
			if err := os.Rename(d.final, old); err != nil {
				return fail(fmt.Errorf("output directory %s: %w", d.final, err))
			}
			if err := os.Rename(tmp, d.final); err != nil {
				os.Rename(old, d.final)
				return fail(fmt.Errorf("output directory %s: %w", d.final, err))
			}
			os.RemoveAll(old)
		} else {
			return fail(fmt.Errorf("output directory %s: %w", d.final, err))
		}
	} else if err := os.Rename(tmp, d.final); err != nil {
		return fail(fmt.Errorf("output directory %s: %w", d.final, err))
	}
	syncDir(parent)
	for _, f := range d.files {
		f.finish()
	}
	d.done = true
	return nil
}

// Abort discards every file not yet published.
func (d *Dir) Abort() {
	for _, f := range d.files {
		f.Abort()
	}
	d.done = true
}

func requireEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("exists and is not empty (and holds no earlier output to replace)")
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// linkOrCopy makes dst a hard link of src, or a copy where a link is not
// possible (another file system). The copy uses copy_file_range where the
// kernel offers it (io.Copy between files does).
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
