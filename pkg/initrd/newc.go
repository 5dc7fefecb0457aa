package initrd

// The newc ("new ASCII", magic 070701) cpio format: a 110-byte header of
// thirteen 8-digit hex fields after the magic, the NUL-terminated name,
// padding to 4 bytes, the data, padding to 4 bytes. The archive ends with an
// entry named TRAILER!!!.
//
// This is written by hand rather than with github.com/cavaliergopher/cpio
// (v1.0.1): its writer never writes rdevmajor/rdevminor (a /dev/console node
// would come out as device 0:0), mutates its package-level magic when one
// entry carries a checksum, and formats every field with fmt.Sprintf.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/imagebuilder/imagebuilder/internal/meter"
)

const (
	newcMagic     = "070701"
	newcHeaderLen = 110
	trailerName   = "TRAILER!!!"
)

// newcHeader is the decoded form of a newc header.
type newcHeader struct {
	Ino, Mode, UID, GID, NLink, MTime, FileSize uint32
	DevMajor, DevMinor, RDevMajor, RDevMinor    uint32
	NameSize, Check                             uint32
}

const hexDigits = "0123456789abcdef"

func putHex(b []byte, v uint32) {
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func (h *newcHeader) marshal(b []byte) {
	copy(b, newcMagic)
	fields := [...]uint32{h.Ino, h.Mode, h.UID, h.GID, h.NLink, h.MTime, h.FileSize,
		h.DevMajor, h.DevMinor, h.RDevMajor, h.RDevMinor, h.NameSize, h.Check}
	for i, v := range fields {
		putHex(b[6+8*i:], v)
	}
}

var zeros [4]byte

func pad4(n int64) int64 { return (4 - n%4) % 4 }

// cpioWriter writes newc records and counts bytes (also on step).
type cpioWriter struct {
	w    *bufio.Writer
	n    int64
	hdr  [newcHeaderLen]byte
	step *meter.Step
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.step.Add(int64(n))
	return err
}

// recordSize is the size of a newc record: header, name and data, each
// padded to 4 bytes.
func recordSize(name string, size int64) int64 {
	h := int64(newcHeaderLen + len(name) + 1)
	return h + pad4(h) + size + pad4(size)
}

func (c *cpioWriter) header(h newcHeader, name string) error {
	h.NameSize = uint32(len(name) + 1)
	h.marshal(c.hdr[:])
	if err := c.write(c.hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.WriteString(name); err != nil {
		return err
	}
	c.n += int64(len(name))
	c.step.Add(int64(len(name)))
	return c.write(zeros[:1+pad4(newcHeaderLen+int64(len(name))+1)])
}

// writeCPIO writes the archive as an uncompressed newc cpio to w, calling
// onHeader for every entry written. Entries are sorted (see Entries),
// inode numbers count from 1 in that order, hard links share an inode
// whose content is stored with the last name, directories carry the link
// count 2 + their subdirectories, and the file system device is 0:0.
// start, when not nil, is called with the archive's size before anything
// is written and returns the step its bytes count on.
func (a *Archive) writeCPIO(ctx context.Context, w io.Writer, opts WriteOptions, start func(total int64) *meter.Step, onHeader func(*Header)) error {
	entries := a.Entries()
	types := make(map[string]uint32, len(entries))
	for _, e := range entries {
		types[e.Path] = e.typ()
		if d := path.Dir(e.Path); d != "." && types[d] != TypeDir {
			return fmt.Errorf("%s: parent %s is not a directory", describe(e), d)
		}
	}
	// Hard link groups: inode of the first name, content on the last.
	type group struct {
		ino   uint32
		count uint32
		last  *Entry
	}
	groups := map[string]*group{}
	subdirs := map[string]uint32{}
	for _, e := range entries {
		if e.typ() == TypeReg && e.LinkGroup != "" {
			g := groups[e.LinkGroup]
			if g == nil {
				g = &group{}
				groups[e.LinkGroup] = g
			}
			g.count++
			g.last = e
		}
		if e.typ() == TypeDir {
			if d := path.Dir(e.Path); d != "." {
				subdirs[d]++
			}
		}
	}
	cw := &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
	if start != nil {
		total := recordSize(trailerName, 0)
		for _, e := range entries {
			var size int64
			switch e.typ() {
			case TypeSymlink:
				size = int64(len(e.Linkname))
			case TypeReg:
				if g := groups[e.LinkGroup]; g == nil || g.last == e {
					size = e.Size
				}
			}
			total += recordSize(e.Path, size)
		}
		cw.step = start(total)
	}
	var ino uint32
	buf := make([]byte, 256<<10)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := newcHeader{Mode: e.Mode, MTime: uint32(opts.SourceDateEpoch), NLink: 1}
		if opts.KeepOwners || e.KeepOwner {
			h.UID, h.GID = e.UID, e.GID
		}
		var data []byte
		var open func() (io.ReadCloser, error)
		size := int64(0)
		switch e.typ() {
		case TypeDir:
			h.NLink = 2 + subdirs[e.Path]
		case TypeSymlink:
			data = []byte(e.Linkname)
			size = int64(len(data))
		case TypeChar, TypeBlock:
			h.RDevMajor, h.RDevMinor = e.RDevMajor, e.RDevMinor
		case TypeReg:
			size, data, open = e.Size, e.Data, e.Open
		}
		ino++
		h.Ino = ino
		if g := groups[e.LinkGroup]; e.typ() == TypeReg && g != nil {
			if g.ino == 0 {
				g.ino = ino
			} else {
				ino--
			}
			h.Ino = g.ino
			h.NLink = g.count
			if g.last != e {
				size, data, open = 0, nil, nil
			}
		}
		h.FileSize = uint32(size)
		if err := cw.header(h, e.Path); err != nil {
			return err
		}
		if open != nil {
			if err := copyContent(ctx, cw, e, open, buf); err != nil {
				return err
			}
		} else if err := cw.write(data); err != nil {
			return err
		}
		if err := cw.write(zeros[:pad4(size)]); err != nil {
			return err
		}
		if onHeader != nil {
			onHeader(&Header{Name: e.Path, Ino: h.Ino, Mode: h.Mode, UID: h.UID, GID: h.GID, NLink: h.NLink,
				MTime: int64(h.MTime), Size: size, RDevMajor: h.RDevMajor, RDevMinor: h.RDevMinor, Linkname: e.Linkname})
		}
	}
	if err := cw.header(newcHeader{NLink: 1}, trailerName); err != nil {
		return err
	}
	return cw.w.Flush()
}

// copyContent copies a file's content, checking ctx between chunks.
func copyContent(ctx context.Context, cw *cpioWriter, e *Entry, open func() (io.ReadCloser, error), buf []byte) error {
	r, err := open()
	if err != nil {
		return fmt.Errorf("%s: %w", describe(e), err)
	}
	defer r.Close()
	left := e.Size
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(buf))
		if n > left {
			n = left
		}
		m, err := io.ReadFull(r, buf[:n])
		if err := cw.write(buf[:m]); err != nil {
			return err
		}
		left -= int64(m)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: content shorter than its size %d", describe(e), e.Size)
			}
			return fmt.Errorf("%s: %w", describe(e), err)
		}
	}
	return nil
}

// Header is one entry as read back from an archive.
type Header struct {
	Name      string `json:"name"`
	Ino       uint32 `json:"ino"`
	Mode      uint32 `json:"mode"`
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	NLink     uint32 `json:"nlink"`
	MTime     int64  `json:"mtime"`
	Size      int64  `json:"size"`
	DevMajor  uint32 `json:"devmajor"`
	DevMinor  uint32 `json:"devminor"`
	RDevMajor uint32 `json:"rdevmajor"`
	RDevMinor uint32 `json:"rdevminor"`
	Linkname  string `json:"linkname,omitempty"`
}

// Reader reads newc entries from an uncompressed cpio stream.
type Reader struct {
	r        *bufio.Reader
	off      int64 // bytes consumed
	left     int64 // unread bytes of the current entry's data plus padding
	dataLeft int64 // unread bytes of the current entry's data
	name     string
	err      error
}

// NewReader returns a Reader of the newc archive in r.
func NewReader(r io.Reader) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Reader{r: br}
}

func (r *Reader) read(p []byte) error {
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	return err
}

func (r *Reader) skip(n int64) error {
	m, err := r.r.Discard(int(n))
	r.off += int64(m)
	return err
}

func parseHex(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint32(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// fail records and returns a format error at offset off.
func (r *Reader) fail(off int64, format string, args ...any) error {
	r.err = &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
	return r.err
}

// Next advances to the next entry and returns its header; it returns
// io.EOF after the trailer. The entry's content can be read from the Reader
// until the next call. Malformed input gives a *FormatError. Memory use
// does not depend on the sizes a header declares: names and symlink
// targets are at most 4096 bytes, file contents are streamed.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.left > 0 {
		if err := r.skip(r.left); err != nil {
			if !isEOF(err) {
				return nil, r.ioError(err)
			}
			return nil, r.fail(r.off, "truncated entry data")
		}
		r.left, r.dataLeft = 0, 0
	}
	start := r.off
	var b [newcHeaderLen]byte
	if err := r.read(b[:]); err != nil {
		if !isEOF(err) {
			return nil, r.ioError(err)
		}
		return nil, r.fail(start, "truncated header")
	}
	if string(b[:6]) != "070701" && string(b[:6]) != "070702" {
		return nil, r.fail(start, "no newc magic (070701 or 070702)")
	}
	var f [13]uint32
	for i := range f {
		v, ok := parseHex(b[6+8*i : 14+8*i])
		if !ok {
			return nil, r.fail(start, "bad hex field %d in header", i+1)
		}
		f[i] = v
	}
	h := &Header{Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], NLink: f[4], MTime: int64(f[5]),
		Size: int64(f[6]), DevMajor: f[7], DevMinor: f[8], RDevMajor: f[9], RDevMinor: f[10]}
	nameSize := int64(f[11])
	if nameSize < 1 || nameSize > 4096 {
		return nil, r.fail(start, "bad name size %d", nameSize)
	}
	name := make([]byte, nameSize+pad4(newcHeaderLen+nameSize))
	if err := r.read(name); err != nil {
		if !isEOF(err) {
			return nil, r.ioError(err)
		}
		return nil, r.fail(start, "truncated name")
	}
	if name[nameSize-1] != 0 {
		return nil, r.fail(start, "name not NUL-terminated")
	}
	h.Name = string(name[:nameSize-1])
	if h.Name == trailerName {
		r.err = io.EOF
		return nil, io.EOF
	}
	if h.Mode&TypeMask == TypeSymlink {
		if h.Size > 4095 {
			return nil, r.fail(start, "symlink %q with a target of %d bytes (at most 4095)", h.Name, h.Size)
		}
		t := make([]byte, h.Size+pad4(h.Size))
		if err := r.read(t); err != nil {
			if !isEOF(err) {
				return nil, r.ioError(err)
			}
			return nil, r.fail(start, "truncated target of symlink %q", h.Name)
		}
		h.Linkname = string(t[:h.Size])
		return h, nil
	}
	r.left = h.Size + pad4(h.Size)
	r.dataLeft = h.Size
	r.name = h.Name
	return h, nil
}

func isEOF(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

// ioError records an error of the underlying reader (not of the data).
func (r *Reader) ioError(err error) error {
	r.err = err
	return err
}

// Read reads the content of the current regular file. Content cut short
// by the end of the input is a *FormatError.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.dataLeft <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.dataLeft {
		p = p[:r.dataLeft]
	}
	n, err := r.r.Read(p)
	r.off += int64(n)
	r.dataLeft -= int64(n)
	r.left -= int64(n)
	if err == io.EOF {
		return n, r.fail(r.off, "truncated content of %q (%d bytes missing)", r.name, r.dataLeft)
	}
	if err != nil {
		return n, r.ioError(err)
	}
	return n, nil
}

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }
