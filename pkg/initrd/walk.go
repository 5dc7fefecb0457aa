package initrd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxWindow is the largest zstd window and xz dictionary Walk gives a
// decoder (8 MiB: what `zstd -19`, `xz -6`, mkinitramfs, dracut and the
// kernel's own initramfs compression use). A decoder allocates its window
// when a stream starts, so honouring a larger one would let a few bytes of
// header claim gigabytes. A larger declared size is lowered to MaxWindow:
// streams whose matches reach back at most MaxWindow bytes (every stream
// of at most that length, whatever its header declares) read as they are;
// others fail with a FormatError saying the window was lowered.
const MaxWindow = 8 << 20

// Segment says where an entry read by Walk was found.
type Segment struct {
	// Index is the 1-based number of the segment: an uncompressed
	// archive, or one compressed stream (which may hold several
	// archives).
	Index int `json:"segment"`
	// Compression is the segment's compression.
	Compression Compression `json:"compression"`
	// Offset is the file offset where the segment starts.
	Offset int64 `json:"segment_offset"`
}

// WalkFunc is called by Walk for every entry, with a reader of its content
// (valid until the function returns) and the segment it is in. An error it
// returns stops Walk, which returns that error unchanged.
type WalkFunc func(h *Header, seg Segment, content io.Reader) error

// Walk reads an initramfs as the kernel does: a sequence of uncompressed
// newc archives and gzip, zstd or xz compressed streams (each holding newc
// archives), separated by zero padding, and calls fn for every entry.
// Malformed data is a *FormatError naming the segment and offset; an error
// of r is returned as it is. Work is proportional to the input's real
// (decompressed) length and memory bounded by MaxWindow, whatever sizes
// the headers declare. Cancelling ctx stops the walk within a second.
func Walk(ctx context.Context, r io.Reader, fn WalkFunc) error {
	_, err := walkCounting(ctx, r, fn)
	return err
}

// walkCounting is Walk that also returns the number of decompressed bytes
// it read (for the fuzz targets' work bound).
func walkCounting(ctx context.Context, r io.Reader, fn WalkFunc) (int64, error) {
	src := &sourceReader{r: r}
	w := &walker{ctx: ctx, src: src, fn: fn}
	w.br = bufio.NewReaderSize(src, 64<<10)
	err := w.top()
	if w.zdec != nil {
		w.zdec.Close()
	}
	if err != nil {
		var fe fnError
		if errors.As(err, &fe) {
			return w.decoded, fe.err
		}
		if src.err != nil && errors.Is(err, src.err) {
			return w.decoded, fmt.Errorf("initrd: read: %w", src.err)
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return w.decoded, fmt.Errorf("initrd: %w", err)
		}
		return w.decoded, fmt.Errorf("initrd: %w", err)
	}
	return w.decoded, nil
}

// sourceReader counts what is read from the input and keeps its first
// error, so that errors of the input are told apart from errors of the
// data (which decoders report as their own).
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// fnError carries an error of the WalkFunc through the walker unchanged.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }
func (e fnError) Unwrap() error { return e.err }

type walker struct {
	ctx     context.Context
	src     *sourceReader
	br      *bufio.Reader
	fn      WalkFunc
	seg     Segment
	decoded int64
	fr      *framer // of the current zstd or xz segment
	// One gzip and one zstd decoder serve every segment, so that their
	// buffers (the zstd window above all) are allocated once per walk,
	// not once per segment.
	gz       *gzip.Reader
	zdec     *zstd.Decoder
	innerBuf *bufio.Reader
	// windows is the sum of the xz dictionaries handed to the decoder,
	// which allocates one per block.
	windows uint64
}

// windowAllowance is what the xz dictionaries of a walk may add up to:
// 64 MiB, plus 1 KiB for every byte of input read. Each xz block gets a
// fresh dictionary from ulikunitz/xz; without a bound, blocks of a few
// bytes each declaring MaxWindow would cost 8 MiB of allocation apiece.
// Real xz files have one block per stream (xz), or blocks of megabytes
// (xz -T), far within it.
func (w *walker) chargeWindow(n uint64) error {
	w.windows += n
	if allowed := uint64(64<<20) + 1024*uint64(w.src.n); w.windows > allowed {
		return streamError("xz blocks declare %d bytes of dictionaries for %d bytes of input (at most 64 MiB + 1 KiB a byte)", w.windows, w.src.n)
	}
	return nil
}

// pos is the file offset of the next unread byte.
func (w *walker) pos() int64 { return w.src.n - int64(w.br.Buffered()) }

// skipZeros skips zero bytes; it returns io.EOF at the end of br.
func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.Peek(1)
		if err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return err
		}
		if b[0] != 0 {
			return nil
		}
		n := br.Buffered()
		buf, _ := br.Peek(n)
		i := 0
		for i < len(buf) && buf[i] == 0 {
			i++
		}
		br.Discard(i)
	}
}

// top reads the segments of the file.
func (w *walker) top() error {
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := skipZeros(w.br); err != nil {
			if err == io.EOF {
				if w.seg.Index == 0 {
					return &FormatError{Offset: -1, Msg: "no archive (empty or all zero input)"}
				}
				return nil
			}
			return err
		}
		w.seg = Segment{Index: w.seg.Index + 1, Compression: None, Offset: w.pos()}
		w.fr = nil
		magic, _ := w.br.Peek(6)
		var err error
		switch {
		case bytes.HasPrefix(magic, []byte("07070")):
			err = w.archives(w.br, true)
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			w.seg.Compression = Gzip
			err = w.gzip()
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			w.seg.Compression = Zstd
			err = w.zstd()
		case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
			w.seg.Compression = XZ
			err = w.xz()
		default:
			msg := fmt.Sprintf("unknown data (% x): not newc, gzip, zstd or xz", magic)
			if name := otherCompression(magic); name != "" {
				msg = name + " compression, which this reader does not support (newc, gzip, zstd and xz)"
			}
			return &FormatError{Segment: w.seg.Index, Compression: None, SegmentOffset: w.seg.Offset, Offset: -1, Msg: msg}
		}
		if err == nil && w.pos() == w.seg.Offset {
			// Every segment consumes its data; a reader that read
			// nothing would otherwise meet the same bytes forever.
			err = &FormatError{Offset: -1, Msg: "no data read"}
		}
		if err != nil {
			return w.classify(err)
		}
	}
}

// otherCompression names the initramfs compressions the kernel knows and
// this reader does not.
func otherCompression(m []byte) string {
	switch {
	case bytes.HasPrefix(m, []byte("BZh")):
		return "bzip2"
	case bytes.HasPrefix(m, []byte{0x5d, 0, 0}):
		return "lzma"
	case bytes.HasPrefix(m, []byte{0x89, 'L', 'Z', 'O'}):
		return "lzo"
	case bytes.HasPrefix(m, []byte{0x02, 0x21, 0x4c, 0x18}):
		return "lz4"
	}
	return ""
}

// classify turns an error met in the current segment into a FormatError
// unless it is the WalkFunc's, the input's or the context's.
func (w *walker) classify(err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return err
	}
	if w.src.err != nil && errors.Is(err, w.src.err) {
		return err
	}
	if w.ctx.Err() != nil && errors.Is(err, w.ctx.Err()) {
		return err
	}
	var f *FormatError
	if errors.As(err, &f) {
		if f.Segment == 0 {
			f.Segment, f.Compression, f.SegmentOffset = w.seg.Index, w.seg.Compression, w.seg.Offset
		}
		return f
	}
	msg := "corrupt " + string(w.seg.Compression) + " stream"
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg = "truncated " + string(w.seg.Compression) + " stream"
		err = nil
	} else if w.fr != nil && w.fr.lowered != 0 {
		msg += fmt.Sprintf(" (or one that needs more than its window of %d bytes, lowered from the %d it declares)", MaxWindow, w.fr.lowered)
	}
	return &FormatError{Segment: w.seg.Index, Compression: w.seg.Compression, SegmentOffset: w.seg.Offset, Offset: -1, Msg: msg, Err: err}
}

// archives reads newc archives from br. At the top level (uncompressed)
// it reads one archive and returns; inside a compressed stream it reads
// archives separated by zero padding until the stream ends, as the kernel
// does ("junk within compressed archive" otherwise).
func (w *walker) archives(br *bufio.Reader, one bool) error {
	var base int64 // offset of the archive in the segment's cpio data
	for {
		if !one {
			start := base
			if err := skipZeros(br); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			if m, _ := br.Peek(5); !bytes.Equal(m, []byte("07070")) {
				return &FormatError{Offset: start, Msg: fmt.Sprintf("data that is not a newc archive (% x) in a compressed stream", m)}
			}
		}
		r := NewReader(br)
		for {
			if err := w.ctx.Err(); err != nil {
				return err
			}
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var f *FormatError
				if errors.As(err, &f) {
					f.Offset += base
				}
				return err
			}
			if err := w.fn(h, w.seg, r); err != nil {
				// An error of the content reader (truncated data, a
				// corrupt stream) is the data's, whoever passes it on.
				if r.err != nil && r.err != io.EOF && errors.Is(err, r.err) {
					var f *FormatError
					if errors.As(err, &f) {
						f.Offset += base
					}
					return r.err
				}
				return fnError{err}
			}
		}
		if one {
			return nil
		}
		base += r.Offset()
	}
}

// ctxReader counts decompressed bytes and stops when ctx is cancelled.
type ctxReader struct {
	w *walker
	r io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.w.decoded += int64(n)
	if err == io.ErrUnexpectedEOF {
		// The compressed stream ended early; io.EOF alone would read as
		// a truncated cpio archive.
		err = &FormatError{Offset: -1, Msg: "truncated " + string(c.w.seg.Compression) + " stream"}
	}
	return n, err
}

// inner returns the buffered reader of a segment's decompressed data (one
// buffer for the walk).
func (w *walker) inner(r io.Reader) *bufio.Reader {
	cr := &ctxReader{w: w, r: r}
	if w.innerBuf == nil {
		w.innerBuf = bufio.NewReaderSize(cr, 64<<10)
	} else {
		w.innerBuf.Reset(cr)
	}
	return w.innerBuf
}

func (w *walker) gzip() error {
	var err error
	if w.gz == nil {
		w.gz, err = gzip.NewReader(w.br)
	} else {
		err = w.gz.Reset(w.br)
	}
	if err != nil {
		return err
	}
	// One gzip member is one segment: the kernel's gunzip stops at the
	// end of the member.
	w.gz.Multistream(false)
	return w.archives(w.inner(w.gz), false)
}

func (w *walker) zstd() error {
	// The decoder reads ahead: give it only this run of adjacent zstd
	// frames, so that segments after it stay readable; zstdFrames also
	// lowers windows above MaxWindow before the decoder allocates them.
	frames := newZstdFrames(w.br)
	w.fr = &frames.framer
	var err error
	if w.zdec == nil {
		w.zdec, err = zstd.NewReader(frames, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(MaxWindow), zstd.WithDecoderLowmem(true))
	} else {
		err = w.zdec.Reset(frames)
	}
	if err != nil {
		return err
	}
	if err := w.archives(w.inner(w.zdec), false); err != nil {
		return err
	}
	return drain(frames)
}

func (w *walker) xz() error {
	// xzStream passes exactly one xz stream and lowers dictionaries
	// above MaxWindow; ulikunitz/xz would allocate whatever a block
	// header declares (up to 4 GiB).
	stream := newXZStream(w.br)
	stream.charge = w.chargeWindow
	w.fr = &stream.framer
	xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(stream)
	if err != nil {
		return err
	}
	if err := w.archives(w.inner(xr), false); err != nil {
		return err
	}
	return drain(stream)
}

// drain checks that the decoder, having reported the end of its data,
// read its stream to the end as the framer delimits it.
func drain(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n > 0 {
		return &FormatError{Offset: -1, Msg: fmt.Sprintf("%d bytes of the stream after the end of its data", n)}
	}
	return nil
}

// FormatEntry formats h as one line of `cpio -tv`, with numeric owners and
// the date in UTC. Control characters and invalid UTF-8 in names are
// escaped as in a Go string literal, so that a hostile name cannot
// rewrite the terminal or forge a line.
func FormatEntry(h *Header) string {
	size := fmt.Sprintf("%8d", h.Size)
	if t := h.Mode & TypeMask; t == TypeChar || t == TypeBlock {
		size = fmt.Sprintf("%3d, %3d", h.RDevMajor, h.RDevMinor)
	}
	s := fmt.Sprintf("%s %3d %-8d %-8d %s %s %s", ModeString(h.Mode), h.NLink, h.UID, h.GID, size,
		time.Unix(h.MTime, 0).UTC().Format("Jan _2  2006"), printable(h.Name))
	if h.Linkname != "" {
		s += " -> " + printable(h.Linkname)
	}
	return s
}

// printable escapes what a terminal would interpret.
func printable(s string) string {
	ok := utf8.ValidString(s)
	for _, r := range s {
		if !ok || unicode.IsControl(r) || r == utf8.RuneError {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	q := strconv.Quote(s)
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

// ModeString renders a mode as ls does ("drwxr-xr-x").
func ModeString(m uint32) string {
	b := []byte("?rwxrwxrwx")
	switch m & TypeMask {
	case TypeReg:
		b[0] = '-'
	case TypeDir:
		b[0] = 'd'
	case TypeSymlink:
		b[0] = 'l'
	case TypeChar:
		b[0] = 'c'
	case TypeBlock:
		b[0] = 'b'
	case TypeFifo:
		b[0] = 'p'
	case TypeSocket:
		b[0] = 's'
	}
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	set := func(i int, bit uint32, on, off byte) {
		if m&bit != 0 {
			if b[i] == '-' {
				b[i] = off
			} else {
				b[i] = on
			}
		}
	}
	set(3, 0o4000, 's', 'S')
	set(6, 0o2000, 's', 'S')
	set(9, 0o1000, 't', 'T')
	return string(b)
}
