package deb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
)

// Compression of a control or data member, from its name.
type Compression string

// Compressions dpkg-deb writes (bzip2 and lzma, which only very old
// packages use, are refused).
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	Zstd Compression = "zstd"
)

var suffixes = []struct {
	ext   string
	c     Compression
	magic string
}{
	{"", None, ""},
	{".gz", Gzip, "\x1f\x8b"},
	{".xz", XZ, "\xfd7zXZ\x00"},
	{".zst", Zstd, "\x28\xb5\x2f\xfd"},
}

// tarMember says whether name is base ("control" or "data") + ".tar" +
// a known compression suffix.
func tarMember(name, base string) (Compression, bool) {
	rest, ok := strings.CutPrefix(name, base+".tar")
	if !ok {
		return "", false
	}
	for _, s := range suffixes {
		if rest == s.ext {
			return s.c, true
		}
	}
	return "", false
}

// Limits bound what a package may make us do; zero fields take the
// defaults.
const (
	// MaxXZDict is the largest xz dictionary accepted (what xz -9 uses).
	MaxXZDict = 64 << 20
	// maxControl bounds the control file read into memory.
	maxControl = 1 << 20
	// DefaultMaxEntries and DefaultMaxBytes bound a data.tar walk: a
	// kernel package has about 5000 entries and 400 MiB.
	DefaultMaxEntries = 1 << 20
	DefaultMaxBytes   = 16 << 30
)

// Package is an opened .deb.
type Package struct {
	// Format is the first line of debian-binary ("2.0").
	Format string `json:"format"`
	// Control holds the fields of the control file.
	Control *Control `json:"control"`
	// Members are the ar members in file order.
	Members []Member `json:"members"`
	// ControlMember and DataMember are the two tar members.
	ControlMember Member      `json:"-"`
	DataMember    Member      `json:"-"`
	ControlComp   Compression `json:"control_compression"`
	DataComp      Compression `json:"data_compression"`

	r io.ReaderAt
}

// Open reads the ar archive of r (a .deb of size bytes), checks the member
// order dpkg-deb requires (debian-binary, then control.tar*, then
// data.tar*, with only "_"-prefixed members between them) and reads the
// control file. The data is read later, by Walk or Extract.
func Open(ctx context.Context, r io.ReaderAt, size int64) (*Package, error) {
	members, err := readMembers(r, size)
	if err != nil {
		return nil, err
	}
	p := &Package{Members: members, r: r}
	stage := 0 // 0 want debian-binary, 1 want control, 2 want data, 3 done
	for _, m := range members {
		switch {
		case stage == 0:
			if m.Name != "debian-binary" {
				return nil, &FormatError{Member: m.Name, Offset: m.Offset - arHeaderSize, Msg: "first ar member is not debian-binary"}
			}
			if err := p.readFormat(m); err != nil {
				return nil, err
			}
			stage = 1
		case strings.HasPrefix(m.Name, "_"):
			// dpkg-deb skips members whose names start with "_" (signatures).
		case stage == 1:
			c, ok := tarMember(m.Name, "control")
			if !ok {
				return nil, &FormatError{Member: m.Name, Offset: m.Offset - arHeaderSize, Msg: "unexpected ar member where control.tar belongs"}
			}
			p.ControlMember, p.ControlComp, stage = m, c, 2
		case stage == 2:
			c, ok := tarMember(m.Name, "data")
			if !ok {
				return nil, &FormatError{Member: m.Name, Offset: m.Offset - arHeaderSize, Msg: "unexpected ar member where data.tar belongs"}
			}
			p.DataMember, p.DataComp, stage = m, c, 3
		default:
			return nil, &FormatError{Member: m.Name, Offset: m.Offset - arHeaderSize, Msg: "unexpected ar member after " + p.DataMember.Name}
		}
	}
	switch stage {
	case 0:
		return nil, &FormatError{Offset: -1, Msg: "empty ar archive: no debian-binary member"}
	case 1:
		return nil, &FormatError{Offset: -1, Msg: "no control.tar member"}
	case 2:
		return nil, &FormatError{Offset: -1, Msg: "no data.tar member"}
	}
	if err := p.readControl(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenFile opens the .deb at path; the caller closes the returned file
// after the last Walk or Extract.
func OpenFile(ctx context.Context, path string) (*Package, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("deb: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("deb: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("deb: %s: not a regular file", path)
	}
	p, err := Open(ctx, f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, f, nil
}

func (p *Package) readFormat(m Member) error {
	if m.Size > 64 {
		return &FormatError{Member: m.Name, Offset: m.Offset, Msg: fmt.Sprintf("%d bytes, want a short version line", m.Size)}
	}
	b := make([]byte, m.Size)
	if _, err := p.r.ReadAt(b, m.Offset); err != nil {
		return &FormatError{Member: m.Name, Offset: m.Offset, Msg: "read", Err: err}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	major, _, _ := strings.Cut(line, ".")
	if major != "2" || !strings.HasPrefix(line, "2.") {
		return &FormatError{Member: m.Name, Offset: m.Offset, Msg: fmt.Sprintf("format version %q, want 2.x", line)}
	}
	p.Format = line
	return nil
}

// open returns a reader of the uncompressed tar of member m.
func (p *Package) open(m Member, c Compression, workers int) (io.Reader, func(), error) {
	sr := bufio.NewReaderSize(io.NewSectionReader(p.r, m.Offset, m.Size), 256<<10)
	for _, s := range suffixes {
		if s.c != c || s.magic == "" {
			continue
		}
		head, err := sr.Peek(len(s.magic))
		if err != nil || string(head) != s.magic {
			return nil, nil, &FormatError{Member: m.Name, Offset: m.Offset, Msg: fmt.Sprintf("not %s data (bad magic)", c)}
		}
	}
	nop := func() {}
	switch c {
	case None:
		return sr, nop, nil
	case Gzip:
		zr, err := gzip.NewReader(sr)
		if err != nil {
			return nil, nil, &FormatError{Member: m.Name, Offset: m.Offset, Msg: "gzip", Err: err}
		}
		zr.Multistream(true)
		return zr, func() { zr.Close() }, nil
	case XZ:
		if workers <= 0 {
			workers = xzWorkers()
		}
		if w := workers; w > 1 {
			if hdr, blocks := xzBlocks(io.NewSectionReader(p.r, m.Offset, m.Size), m.Size); blocks != nil {
				px := newParallelXZ(io.NewSectionReader(p.r, m.Offset, m.Size), hdr, blocks, w)
				return px, px.close, nil
			}
		}
		xr, err := xz.NewReader(sr, MaxXZDict)
		if err != nil {
			return nil, nil, &FormatError{Member: m.Name, Offset: m.Offset, Msg: "xz", Err: err}
		}
		return xr, nop, nil
	case Zstd:
		zr, err := zstd.NewReader(sr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<27), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, &FormatError{Member: m.Name, Offset: m.Offset, Msg: "zstd", Err: err}
		}
		return zr, zr.Close, nil
	}
	return nil, nil, &FormatError{Member: m.Name, Offset: m.Offset, Msg: fmt.Sprintf("unknown compression %q", c)}
}

// readControl reads the control file from control.tar.
func (p *Package) readControl(ctx context.Context) error {
	m := p.ControlMember
	r, done, err := p.open(m, p.ControlComp, 1)
	if err != nil {
		return err
	}
	defer done()
	var control []byte
	err = walkTar(ctx, m, r, walkLimits{entries: 4096, bytes: 64 << 20}, func(e *Entry, data io.Reader) error {
		if e.Path != "control" || e.Type != TypeReg {
			return nil
		}
		if e.Size > maxControl {
			return &FormatError{Member: m.Name, Entry: e.Name, Offset: -1, Msg: fmt.Sprintf("control file of %d bytes (limit %d)", e.Size, maxControl)}
		}
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		control = b
		return nil
	})
	if err != nil {
		return err
	}
	if control == nil {
		return &FormatError{Member: m.Name, Offset: -1, Msg: "no control file"}
	}
	c, err := ParseControl(control)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Member, fe.Entry = m.Name, "./control"
		}
		return err
	}
	p.Control = c
	return nil
}
