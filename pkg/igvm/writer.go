package igvm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Bytes wraps a byte slice as a data source for Builder.Add.
func Bytes(b []byte) *io.SectionReader {
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
}

// Builder collects headers and their data sources and writes a canonical
// IGVM file:
//
//   - the 24-byte fixed header (version 1, variable headers at offset 24);
//   - the variable headers in the order added, each padded to 8 bytes with
//     zeros;
//   - the file data right after the headers, in order of first use, each
//     distinct content stored once (PAGE_DATA, VP_CONTEXT and
//     PARAMETER_AREA contents are deduplicated by SHA-256 of the padded
//     content);
//   - PAGE_DATA and PARAMETER_AREA whose contents are all zero (or that
//     have no source) get file_offset 0 and no file data.
//
// The FileOffset fields of added headers are ignored: the Builder assigns
// them. Data sources are read twice (once to hash, once to copy), through
// small buffers, so a large initrd is never held in memory; they must not
// change until WriteTo returns.
type Builder struct {
	headers []Header
	data    []source
}

// source is the file data of one header: size bytes of r at off, or of b
// when r is nil; ok is false for a header without data. Held by value, so
// adding a page costs no allocation beyond its header.
type source struct {
	r    io.ReaderAt
	b    []byte
	off  int64
	size int64
	ok   bool
}

// readAt reads exactly len(p) bytes of the source at off.
func (s *source) readAt(p []byte, off int64) error {
	if s.r == nil {
		if copy(p, s.b[off:]) != len(p) {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	n, err := s.r.ReadAt(p, s.off+off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Add appends a header. data is the header's file data: for PAGE_DATA at
// most the page size (nil or short data is zero-padded), for VP_CONTEXT at
// most 4 KiB (required), for PARAMETER_AREA at most number_of_bytes
// (optional); other headers take nil. Errors are reported by WriteTo.
func (b *Builder) Add(h Header, data *io.SectionReader) {
	var s source
	if data != nil {
		s.r, s.off, s.size = data.Outer()
		s.ok = true
	}
	b.headers = append(b.headers, h)
	b.data = append(b.data, s)
}

// AddBytes is Add with the data in memory (nil for none); the Builder
// keeps data, which must not change until WriteTo returns.
func (b *Builder) AddBytes(h Header, data []byte) {
	b.headers = append(b.headers, h)
	b.data = append(b.data, source{b: data, size: int64(len(data)), ok: data != nil})
}

// Headers returns the headers added so far.
func (b *Builder) Headers() []Header { return b.headers }

// CopyFile adds every header of f with its file data, so that WriteTo
// re-encodes f canonically.
func (b *Builder) CopyFile(f *File) {
	for _, h := range f.Headers {
		var d *io.SectionReader
		if HasData(h) {
			d = f.DataReader(h)
		}
		b.Add(h, d)
	}
}

// ReplaceIDBlock returns a Builder holding f with its SNP_ID_BLOCK headers
// for the platforms in mask removed and, when h is not nil, h appended
// after the last directive (where igvmgen puts it). Every other header
// keeps its place and its file data, which is read from f when the Builder
// writes. With h nil it gives the file without its ID block, as measured
// before signing.
func ReplaceIDBlock(f *File, mask uint32, h *SNPIDBlock) *Builder {
	b := &Builder{}
	for _, x := range f.Headers {
		if id, ok := x.(*SNPIDBlock); ok && id.CompatibilityMask&mask != 0 {
			continue
		}
		var d *io.SectionReader
		if HasData(x) {
			d = f.DataReader(x)
		}
		b.Add(x, d)
	}
	if h != nil {
		b.Add(h, nil)
	}
	return b
}

// headerSize is the encoded size of h: type, length, body, padding.
func headerSize(h Header) (int, error) {
	if u, ok := h.(*Unknown); ok {
		return 8 + (len(u.Body)+7)&^7, nil
	}
	n, ok := bodySizes[h.Type()]
	if !ok {
		return 0, fmt.Errorf("unknown header type %#x", uint32(h.Type()))
	}
	return 8 + (n+7)&^7, nil
}

type blob struct {
	src  *source
	size int64
}

// WriteTo validates the headers (the same rules as Open) and writes the
// file to w (see Write).
func (b *Builder) WriteTo(w io.Writer) (int64, error) { return b.Write(context.Background(), w) }

// ctxCheckBytes is how much data Write hashes or copies between two looks
// at its context (a few milliseconds of work).
const ctxCheckBytes = 4 << 20

// Write validates the headers (the same rules as Open) and writes the file
// to w, sequentially (w may be a pipe). It stops with ctx's error soon
// after ctx is cancelled; w then holds a partial file.
func (b *Builder) Write(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	v := newValidator()
	hdrBytes := 0
	offsets := make([]int64, len(b.headers))
	for i, h := range b.headers {
		offsets[i] = int64(FixedHeaderSize + hdrBytes)
		herr := func(err error) error {
			return &FormatError{Index: i, Type: h.Type(), Offset: offsets[i], Msg: err.Error()}
		}
		n, err := headerSize(h)
		if err != nil {
			return 0, herr(err)
		}
		hdrBytes += n
		if err := v.check(h); err != nil {
			return 0, herr(err)
		}
		d := &b.data[i]
		switch x := h.(type) {
		case *PageData, *ParameterArea:
		case *VPContext:
			if !d.ok {
				return 0, herr(errors.New("a VP context needs data (the VMSA page)"))
			}
			if v.maskType[x.CompatibilityMask] == PlatformSEVSNP && d.size <= PageSize4K {
				page := make([]byte, PageSize4K)
				if err := d.readAt(page[:d.size], 0); err != nil {
					return 0, herr(fmt.Errorf("read VMSA: %w", err))
				}
				if err := checkVMSA(page); err != nil {
					return 0, herr(err)
				}
			}
		default:
			if d.ok {
				return 0, herr(errors.New("this header type carries no file data"))
			}
		}
		if d.ok && d.size > DataSize(h) {
			return 0, herr(fmt.Errorf("data of %d bytes exceeds the %d bytes the header loads", d.size, DataSize(h)))
		}
	}
	if err := v.finish(); err != nil {
		return 0, &FormatError{Index: len(b.headers), Offset: int64(FixedHeaderSize + hdrBytes), Msg: err.Error()}
	}
	if hdrBytes > MaxHeaderSection {
		return 0, fmt.Errorf("igvm: %d bytes of variable headers exceed the %d-byte limit", hdrBytes, MaxHeaderSection)
	}

	// Assign file offsets, deduplicating contents.
	dataStart := int64(FixedHeaderSize + hdrBytes)
	pos := dataStart
	fileOff := make([]uint32, len(b.headers))
	seen := map[[sha256.Size]byte]uint32{}
	var blobs []blob
	buf := make([]byte, 64<<10)
	sinceCheck := int64(0)
	for i, h := range b.headers {
		d := &b.data[i]
		if !d.ok {
			continue
		}
		size := DataSize(h)
		if sinceCheck += size; sinceCheck >= ctxCheckBytes {
			sinceCheck = 0
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		sum, zero, err := hashPadded(d, size, buf)
		if err != nil {
			return 0, fmt.Errorf("igvm: header %d (%v): read data: %w", i, h.Type(), err)
		}
		if _, isVP := h.(*VPContext); zero && !isVP {
			continue
		}
		if off, ok := seen[sum]; ok {
			fileOff[i] = off
			continue
		}
		if pos+size > math.MaxUint32 {
			return 0, fmt.Errorf("igvm: header %d (%v): file would exceed 4 GiB", i, h.Type())
		}
		fileOff[i] = uint32(pos)
		seen[sum] = uint32(pos)
		blobs = append(blobs, blob{d, size})
		pos += size
	}

	// The reference parser rejects a file without file data. If every
	// content was zero, store the first one explicitly.
	if len(blobs) == 0 {
		for i := range b.data {
			if d := &b.data[i]; d.ok {
				fileOff[i] = uint32(pos)
				blobs = append(blobs, blob{d, DataSize(b.headers[i])})
				pos += DataSize(b.headers[i])
				break
			}
		}
		if len(blobs) == 0 {
			return 0, errors.New("igvm: no header carries file data; an IGVM file needs some (a VP_CONTEXT or a PAGE_DATA with contents)")
		}
	}

	// Encode the variable headers.
	section := make([]byte, 0, hdrBytes)
	for i, h := range b.headers {
		start := len(section)
		section = binary.LittleEndian.AppendUint32(section, uint32(h.Type()))
		section = binary.LittleEndian.AppendUint32(section, 0)
		var err error
		if section, err = appendBody(section, h, fileOff[i]); err != nil {
			return 0, err
		}
		binary.LittleEndian.PutUint32(section[start+4:], uint32(len(section)-start-8))
		for len(section)%8 != 0 {
			section = append(section, 0)
		}
	}
	fixed := FixedHeader{
		Magic:                Magic,
		FormatVersion:        FormatVersion1,
		VariableHeaderOffset: FixedHeaderSize,
		VariableHeaderSize:   uint32(len(section)),
		TotalFileSize:        uint32(pos),
	}
	fb, _ := binary.Append(nil, binary.LittleEndian, fixed)
	crc := crc32.NewIEEE()
	crc.Write(fb)
	crc.Write(section)
	binary.LittleEndian.PutUint32(fb[20:], crc.Sum32())

	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &countWriter{w: bw}
	cw.Write(fb)
	cw.Write(section)
	sinceCheck = 0
	for _, bl := range blobs {
		if sinceCheck += bl.size; sinceCheck >= ctxCheckBytes {
			sinceCheck = 0
			if err := ctx.Err(); err != nil {
				return cw.n, err
			}
		}
		n := bl.src.size
		for off := int64(0); off < n; {
			chunk := buf[:min(int64(len(buf)), n-off)]
			if err := bl.src.readAt(chunk, off); err != nil {
				return cw.n, fmt.Errorf("igvm: read file data while writing (did a source change?): %w", err)
			}
			if _, err := cw.Write(chunk); err != nil {
				return cw.n, fmt.Errorf("igvm: write file data: %w", err)
			}
			off += int64(len(chunk))
		}
		if pad := bl.size - n; pad > 0 {
			if _, err := io.CopyN(cw, zeroStream{}, pad); err != nil {
				return cw.n, fmt.Errorf("igvm: write file data: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("igvm: write: %w", err)
	}
	if cw.err != nil {
		return cw.n, fmt.Errorf("igvm: write: %w", cw.err)
	}
	if cw.n != pos {
		return cw.n, fmt.Errorf("igvm: wrote %d bytes, expected %d", cw.n, pos)
	}
	return cw.n, nil
}

// hashPadded hashes d zero-padded to size and reports whether it is all
// zeros.
func hashPadded(d *source, size int64, buf []byte) ([sha256.Size]byte, bool, error) {
	h := sha256.New()
	zero := true
	total := d.size
	for off := int64(0); off < total; {
		chunk := buf[:min(int64(len(buf)), total-off)]
		if err := d.readAt(chunk, off); err != nil {
			return [sha256.Size]byte{}, false, err
		}
		if zero && !allZero(chunk) {
			zero = false
		}
		h.Write(chunk)
		off += int64(len(chunk))
	}
	clear(buf)
	for rest := size - total; rest > 0; {
		n := min(rest, int64(len(buf)))
		h.Write(buf[:n])
		rest -= n
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, zero, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

type zeroStream struct{}

func (zeroStream) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
