package deb

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
)

// EntryType is the kind of a data.tar entry. Only these four occur in
// packages; device nodes, fifos and sparse files are refused.
type EntryType byte

// Entry types, with tar's type flags as values.
const (
	TypeReg     EntryType = tar.TypeReg
	TypeDir     EntryType = tar.TypeDir
	TypeSymlink EntryType = tar.TypeSymlink
	TypeLink    EntryType = tar.TypeLink // a hard link to an earlier regular file
)

func (t EntryType) String() string {
	switch t {
	case TypeReg:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeLink:
		return "hardlink"
	}
	return fmt.Sprintf("type %q", byte(t))
}

// impliedDir marks, during a walk, a directory no entry named but an
// entry below it implied.
const impliedDir EntryType = 0xff

// Entry is one checked entry of a package's tar member.
type Entry struct {
	// Name is the name as written in the tar ("./boot/vmlinuz-...").
	Name string `json:"name"`
	// Path is the checked relative path: no leading "./" or "/", no ".."
	// element, slash-separated ("boot/vmlinuz-6.1.0-57-amd64").
	Path string      `json:"path"`
	Type EntryType   `json:"type"`
	Mode fs.FileMode `json:"mode"` // permissions, setuid, setgid, sticky, and fs.ModeDir or fs.ModeSymlink
	Size int64       `json:"size"` // of a regular file
	// Linkname is a symlink's target as written (any string: it is never
	// followed), or a hard link's checked target path.
	Linkname string    `json:"linkname,omitempty"`
	UID      int       `json:"uid"`
	GID      int       `json:"gid"`
	ModTime  time.Time `json:"mtime"`
}

// WalkOptions bound a walk; zero fields take the defaults.
type WalkOptions struct {
	// MaxEntries (default DefaultMaxEntries) and MaxBytes (default
	// DefaultMaxBytes, the sum of regular file sizes) stop a package that
	// expands beyond them (a decompression bomb).
	MaxEntries int
	MaxBytes   int64
	// XZWorkers is how many blocks of a multi-block data.tar.xz are
	// decoded at once: 0 means GOMAXPROCS, at most 4; 1 decodes
	// sequentially with the least memory (each worker holds one block,
	// 24 MiB in Debian's kernel packages, and an 8 MiB dictionary).
	XZWorkers int
}

type walkLimits struct {
	entries int
	bytes   int64
}

func (o WalkOptions) limits() walkLimits {
	l := walkLimits{entries: o.MaxEntries, bytes: o.MaxBytes}
	if l.entries <= 0 {
		l.entries = DefaultMaxEntries
	}
	if l.bytes <= 0 {
		l.bytes = DefaultMaxBytes
	}
	return l
}

// Walk calls fn for each entry of data.tar in archive order, with a reader
// of a regular file's contents (an empty reader for other types). fn may
// leave the reader unread. Entry names are checked before fn sees them
// (see InsecurePathError), so a caller may join Path to its own root. An
// error from fn stops the walk and is returned as is.
func (p *Package) Walk(ctx context.Context, opts WalkOptions, fn func(e *Entry, r io.Reader) error) error {
	r, done, err := p.open(p.DataMember, p.DataComp, opts.XZWorkers)
	if err != nil {
		return err
	}
	defer done()
	return walkTar(ctx, p.DataMember, r, opts.limits(), fn)
}

// dataReader turns an early EOF of an entry's contents into a FormatError
// and passes the caller's own errors through.
type dataReader struct {
	m    Member
	name string
	r    io.Reader
}

func (d *dataReader) Read(b []byte) (int, error) {
	n, err := d.r.Read(b)
	if err != nil && err != io.EOF {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return n, err
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			msg := "reading contents"
			if errors.Is(err, io.ErrUnexpectedEOF) {
				msg = "truncated contents"
			}
			err = &FormatError{Member: d.m.Name, Entry: d.name, Offset: -1, Msg: msg, Err: err}
		}
	}
	return n, err
}

// walkTar reads the tar stream r of member m.
func walkTar(ctx context.Context, m Member, r io.Reader, lim walkLimits, fn func(e *Entry, r io.Reader) error) error {
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	seen := map[string]EntryType{} // checked path -> type, for parents, links and duplicates
	var total int64
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return &FormatError{Member: m.Name, Offset: -1, Msg: "empty tar archive"}
			}
			// Read the compressed stream to its end, so that its
			// integrity checks (and a truncation) are seen.
			if _, err := io.Copy(io.Discard, ctxio.Reader(ctx, r)); err != nil {
				if ce := ctx.Err(); ce != nil {
					return ce
				}
				return &FormatError{Member: m.Name, Offset: -1, Msg: "after the end of the tar archive", Err: err}
			}
			return nil
		}
		if err != nil {
			if ce := ctx.Err(); ce != nil {
				return ce
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return &FormatError{Member: m.Name, Offset: -1, Msg: fmt.Sprintf("truncated after %d entries", n), Err: err}
			}
			return &FormatError{Member: m.Name, Offset: -1, Msg: fmt.Sprintf("tar header after %d entries", n), Err: err}
		}
		if n >= lim.entries {
			return &FormatError{Member: m.Name, Offset: -1, Msg: fmt.Sprintf("more than %d entries", lim.entries)}
		}
		e, err := checkEntry(m, h, seen)
		if err != nil {
			return err
		}
		if e == nil { // the root directory "./"
			continue
		}
		if e.Type == TypeReg {
			total += e.Size
			if total > lim.bytes {
				return &FormatError{Member: m.Name, Entry: h.Name, Offset: -1, Msg: fmt.Sprintf("contents exceed %d bytes", lim.bytes)}
			}
		}
		seen[e.Path] = e.Type
		for dir := path.Dir(e.Path); dir != "."; dir = path.Dir(dir) {
			if _, ok := seen[dir]; ok {
				break
			}
			seen[dir] = impliedDir
		}
		var data io.Reader = strings.NewReader("")
		if e.Type == TypeReg {
			data = &dataReader{m: m, name: h.Name, r: tr}
		}
		if err := fn(e, data); err != nil {
			return err
		}
	}
}

// checkEntry validates a tar header and returns its entry (nil for the
// root directory).
func checkEntry(m Member, h *tar.Header, seen map[string]EntryType) (*Entry, error) {
	insecure := func(reason string) error {
		return &InsecurePathError{Member: m.Name, Entry: h.Name, Reason: reason}
	}
	bad := func(format string, args ...any) error {
		return &FormatError{Member: m.Name, Entry: h.Name, Offset: -1, Msg: fmt.Sprintf(format, args...)}
	}
	var typ EntryType
	switch h.Typeflag {
	case tar.TypeReg: // tar.Reader turns the legacy TypeRegA into TypeReg or TypeDir
		typ = TypeReg
	case tar.TypeDir:
		typ = TypeDir
	case tar.TypeSymlink:
		typ = TypeSymlink
	case tar.TypeLink:
		typ = TypeLink
	default:
		return nil, bad("unsupported entry type %q (only files, directories, symlinks and hard links)", h.Typeflag)
	}
	p, err := cleanName(h.Name)
	if err != nil {
		return nil, insecure(err.Error())
	}
	if p == "" {
		if typ != TypeDir {
			return nil, bad("the root entry is a %s, not a directory", typ)
		}
		return nil, nil
	}
	if t, dup := seen[p]; dup {
		if t != impliedDir {
			return nil, bad("duplicate entry %s", p)
		}
		if typ != TypeDir {
			return nil, bad("%s is a %s, but entries below it came earlier", p, typ)
		}
	}
	// Every parent must be a directory (listed or implied), never a
	// symlink or a file: writing below a symlink could leave the target.
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if t, ok := seen[dir]; ok && t != TypeDir && t != impliedDir {
			return nil, insecure(fmt.Sprintf("parent %s is a %s", dir, t))
		}
	}
	if h.Size < 0 || (typ != TypeReg && h.Size != 0) {
		return nil, bad("size %d for a %s", h.Size, typ)
	}
	if h.Mode < 0 || h.Mode > 0o7777 {
		return nil, bad("mode %#o out of range", h.Mode)
	}
	mode := fs.FileMode(h.Mode & 0o777)
	if h.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch typ {
	case TypeDir:
		mode |= fs.ModeDir
	case TypeSymlink:
		mode |= fs.ModeSymlink
	}
	e := &Entry{Name: h.Name, Path: p, Type: typ, Mode: mode, UID: h.Uid, GID: h.Gid, ModTime: h.ModTime}
	switch typ {
	case TypeReg:
		e.Size = h.Size
	case TypeSymlink:
		if h.Linkname == "" || strings.IndexByte(h.Linkname, 0) >= 0 {
			return nil, bad("symlink with an empty or NUL-holding target")
		}
		e.Linkname = h.Linkname
	case TypeLink:
		t, err := cleanName(h.Linkname)
		if err != nil || t == "" {
			return nil, insecure(fmt.Sprintf("hard link target %q", h.Linkname))
		}
		if seen[t] != TypeReg {
			return nil, insecure(fmt.Sprintf("hard link to %s, which is not an earlier regular file", t))
		}
		e.Linkname = t
	}
	return e, nil
}

// cleanName checks an entry name and returns its relative path ("" for
// the root).
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("NUL in name")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute name")
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", errors.New(`".." element`)
		}
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	return p, nil
}
