// Package initrd builds Linux initramfs archives reproducibly: newc cpio
// archives whose bytes depend only on the entries put in (never on the host's
// clock, umask, user names, time zone, directory listing order or
// GOMAXPROCS), optionally compressed with gzip or zstd, optionally preceded
// by an uncompressed early cpio (CPU microcode), and with kernel modules
// resolved from a modules tree together with a load order for the init.
//
// Build takes a Config, the whole description of an initramfs: its
// sources in order (Dir, SpecFile, File, Image, or Entry values; later
// sources replace earlier entries of the same path), then kernel Modules,
// then the Init program, the Early archive, the compression and the
// timestamp. It streams the archive to an io.Writer and returns a Result
// (entries, modules in load order, size and sha256 of what it wrote).
// Entries are written sorted by path, parents first, with inode numbers
// assigned in that order, every mtime set to one timestamp
// (SOURCE_DATE_EPOCH) and owners 0:0 unless asked to keep them.
//
// Walk reads any initramfs the kernel accepts (uncompressed, gzip, zstd or
// xz segments, concatenated) with work and memory bounded by the input,
// never by a size it declares.
//
// The lower layer, Archive, is a set of entries keyed by path that a
// program can fill and write itself.
package initrd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// File type bits of Entry.Mode (the values of the st_mode S_IF* constants).
const (
	TypeMask    = 0o170000
	TypeSocket  = 0o140000
	TypeSymlink = 0o120000
	TypeReg     = 0o100000
	TypeBlock   = 0o060000
	TypeDir     = 0o040000
	TypeChar    = 0o020000
	TypeFifo    = 0o010000
	PermMask    = 0o7777
)

// MaxFileSize is the largest file a newc archive can hold (its size field is
// 32 bits).
const MaxFileSize = 1<<32 - 1

// Entry is one file of the archive. An Entry is also a Source: in
// Config.Sources it adds itself.
type Entry struct {
	// Path is the slash-separated path inside the archive, relative to its
	// root (no leading "/", no "." or ".." elements).
	Path string
	// Mode holds the file type (Type*) and permission bits (PermMask).
	Mode uint32
	// UID and GID are the owners; they are stored as 0:0 unless
	// WriteOptions.KeepOwners or KeepOwner is set.
	UID, GID uint32
	// KeepOwner stores UID and GID whatever WriteOptions says (entries of a
	// spec file, which states owners explicitly).
	KeepOwner bool
	// Size is the length of a regular file's content; with Data and no
	// Open, 0 means len(Data).
	Size int64
	// Linkname is a symlink's target.
	Linkname string
	// RDevMajor and RDevMinor are a device node's numbers.
	RDevMajor, RDevMinor uint32
	// Open returns a regular file's content (exactly Size bytes). Nil means
	// Data is used.
	Open func() (io.ReadCloser, error)
	// Data is a regular file's content when Open is nil.
	Data []byte
	// LinkGroup, when not empty, makes all regular-file entries with the same
	// value hard links of one inode (one content, written with the last name
	// as the newc convention asks).
	LinkGroup string
	// Source describes where the entry came from, for error messages and
	// for spec output (a file's location on the host).
	Source string
}

func (e *Entry) typ() uint32 { return e.Mode & TypeMask }

// Archive is a set of entries keyed by path. The zero value is not usable;
// call New.
type Archive struct {
	entries map[string]*Entry
	closers []io.Closer       // temporary files of Image sources
	images  []source.Resolved // what Image sources resolved to
}

// New returns an empty archive.
func New() *Archive { return &Archive{entries: map[string]*Entry{}} }

// CleanPath turns a path given by a user or a source ("/bin/sh", "./bin/sh",
// "bin//sh") into the archive form ("bin/sh"). It fails for an empty path,
// the root itself, and (with an *InsecurePathError) for paths that escape
// the root with ".." or hold a NUL byte.
func CleanPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", &InsecurePathError{Path: p, Reason: "contains a NUL byte"}
	}
	// Reject ".." that would climb above the root before cleaning hides it.
	depth := 0
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", &InsecurePathError{Path: p, Reason: "escapes the archive root"}
			}
		default:
			depth++
		}
	}
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "", fmt.Errorf("path %q names the archive root", p)
	}
	if len(c)+1 > 4096 {
		return "", fmt.Errorf("path %q is longer than 4095 bytes", c[:64]+"...")
	}
	return c, nil
}

// Add puts e into the archive, replacing an entry of the same path. Missing
// parent directories are created (mode 0755) when the archive is written.
func (a *Archive) Add(e Entry) error {
	if err := a.add(e); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}

// AddTo adds the entry to a (Entry is a Source).
func (e Entry) AddTo(_ context.Context, a *Archive) error { return a.add(e) }

func (e Entry) String() string { return "entry " + e.Path }

func (a *Archive) add(e Entry) error {
	p, err := CleanPath(e.Path)
	if err != nil {
		if e.Source != "" {
			return fmt.Errorf("%s: %w", e.Source, err)
		}
		return err
	}
	e.Path = p
	if e.typ() == TypeReg && e.Open == nil && e.Size == 0 {
		e.Size = int64(len(e.Data))
	}
	switch e.typ() {
	case TypeReg:
		if e.Size < 0 {
			return fmt.Errorf("%s: negative size", p)
		}
		if e.Size > MaxFileSize {
			return fmt.Errorf("%s: size %d exceeds the newc limit of %d bytes (4 GiB - 1)", describe(&e), e.Size, int64(MaxFileSize))
		}
		if e.Open == nil && int64(len(e.Data)) != e.Size {
			return fmt.Errorf("%s: size %d but %d bytes of data", p, e.Size, len(e.Data))
		}
	case TypeSymlink:
		if e.Linkname == "" {
			return fmt.Errorf("%s: symlink without a target", p)
		}
		if len(e.Linkname) > 4095 {
			return fmt.Errorf("%s: symlink target longer than 4095 bytes", p)
		}
	case TypeDir, TypeChar, TypeBlock, TypeFifo, TypeSocket:
	default:
		return fmt.Errorf("%s: unknown file type %#o", p, e.typ())
	}
	if old, ok := a.entries[p]; ok && old.typ() == TypeDir && e.typ() != TypeDir {
		// Replacing a directory by a file drops what was below it.
		prefix := p + "/"
		for k := range a.entries {
			if strings.HasPrefix(k, prefix) {
				delete(a.entries, k)
			}
		}
	}
	a.entries[p] = &e
	return nil
}

func describe(e *Entry) string {
	if e.Source != "" && e.Source != e.Path {
		return fmt.Sprintf("%s (from %s)", e.Path, e.Source)
	}
	return e.Path
}

// Close releases the temporary files that Image sources keep their
// contents in; the archive cannot be written after it.
func (a *Archive) Close() error {
	var first error
	for _, c := range a.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	a.closers = nil
	return first
}

// Len returns the number of entries added (without implied parents).
func (a *Archive) Len() int { return len(a.entries) }

// Entries returns the entries in archive order: implied parent directories
// added, sorted by path element by element (so every directory precedes its
// contents).
func (a *Archive) Entries() []*Entry {
	all := make(map[string]*Entry, len(a.entries))
	for p, e := range a.entries {
		all[p] = e
	}
	for p := range a.entries {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := all[d]; ok {
				break
			}
			all[d] = &Entry{Path: d, Mode: TypeDir | 0o755, Source: "implied parent"}
		}
	}
	out := make([]*Entry, 0, len(all))
	for _, e := range all {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return lessPath(out[i].Path, out[j].Path) })
	return out
}

// lessPath orders paths element by element: "a" < "a/b" < "a-b".
func lessPath(x, y string) bool {
	for {
		xi, yi := strings.IndexByte(x, '/'), strings.IndexByte(y, '/')
		xe, ye := x, y
		if xi >= 0 {
			xe = x[:xi]
		}
		if yi >= 0 {
			ye = y[:yi]
		}
		if xe != ye {
			return xe < ye
		}
		if xi < 0 || yi < 0 {
			return xi < 0 && yi >= 0
		}
		x, y = x[xi+1:], y[yi+1:]
	}
}

// fileSource opens a host file for an entry and checks that its size did
// not change since it was added.
func fileSource(name string, size int64) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if st.Size() != size {
			f.Close()
			return nil, fmt.Errorf("%s changed size while building (%d, now %d)", name, size, st.Size())
		}
		return f, nil
	}
}
