package initrd

// Pass-through readers that delimit one compressed stream inside an
// initramfs by reading its framing (not its compressed data): the
// decoders read ahead, and without them a segment after a zstd or xz
// stream would be swallowed. They also keep the window and dictionary a
// stream declares within MaxWindow before a decoder allocates them: a
// larger one is lowered to MaxWindow in the header the decoder sees (the
// xz block header's CRC32 recomputed), so a stream whose matches stay
// within MaxWindow (any stream of at most MaxWindow bytes, whatever its
// header says) decodes to the same bytes, and one that reaches further
// back fails with the decoder's error instead of allocating what its
// header asked for.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// streamError is a framing error of a compressed stream.
func streamError(format string, args ...any) error {
	return &FormatError{Offset: -1, Msg: fmt.Sprintf(format, args...)}
}

// framer passes pieces of br through: next says how long the following
// piece is (left), or puts a replacement for it in out.
type framer struct {
	br   *bufio.Reader
	left int64  // bytes of the current piece still to pass through
	out  []byte // bytes to give before reading br again
	err  error
	// lowered is the window or dictionary size a header declared when
	// it was lowered to MaxWindow (0 if none was).
	lowered uint64
}

func (f *framer) read(p []byte, next func() error) (int, error) {
	for f.left == 0 && len(f.out) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if err := next(); err != nil {
			f.err = err
			return 0, err
		}
	}
	if len(f.out) > 0 {
		n := copy(p, f.out)
		f.out = f.out[n:]
		return n, nil
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.br.Read(p)
	f.left -= int64(n)
	if err == io.EOF && f.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// replace takes the next n bytes of br out as a copy to be changed and
// given instead.
func (f *framer) replace(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(f.br, b); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	f.out = b
	return b, nil
}

func newZstdFrames(br *bufio.Reader) *zstdFrames { return &zstdFrames{framer: framer{br: br}} }

func newXZStream(br *bufio.Reader) *xzStream { return &xzStream{framer: framer{br: br}} }

// zstdFrames passes through exactly one run of adjacent zstd frames (and
// skippable frames) from br and then reports EOF, by reading the frame and
// block headers (RFC 8878).
type zstdFrames struct {
	framer
	state    int // what follows the current piece
	checksum bool
	frames   int
}

const (
	zfFrame = iota
	zfBlock
	zfChecksum
)

func (z *zstdFrames) next() error {
	switch z.state {
	case zfChecksum:
		z.left, z.state = 4, zfFrame
		return nil
	case zfBlock:
		h, err := z.br.Peek(3)
		if err != nil {
			return io.ErrUnexpectedEOF
		}
		v := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		size := int64(v >> 3)
		switch (v >> 1) & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return streamError("reserved zstd block type")
		}
		z.left = 3 + size
		if v&1 == 1 {
			z.state = zfFrame
			if z.checksum {
				z.state = zfChecksum
			}
		}
		return nil
	}
	m, err := z.br.Peek(4)
	if err != nil || (z.frames > 0 && !isZstdMagic(m) && !isSkippable(m)) {
		if z.frames == 0 {
			return io.ErrUnexpectedEOF
		}
		return io.EOF
	}
	z.frames++
	if isSkippable(m) {
		h, err := z.br.Peek(8)
		if err != nil {
			return io.ErrUnexpectedEOF
		}
		z.left = 8 + int64(binary.LittleEndian.Uint32(h[4:]))
		return nil
	}
	if !isZstdMagic(m) {
		return streamError("no zstd frame magic")
	}
	h, err := z.br.Peek(5)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	fhd := h[4]
	if fhd&0x08 != 0 {
		return streamError("zstd frame header with the reserved bit set")
	}
	single := fhd>>5&1 == 1
	n := int64(5)
	if !single {
		n++ // window descriptor
	}
	didLen := []int64{0, 1, 2, 4}[fhd&3]
	n += didLen
	fcsLen := []int64{0, 2, 4, 8}[fhd>>6]
	if fcsLen == 0 && single {
		fcsLen = 1
	}
	hdr, err := z.br.Peek(int(n + fcsLen))
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	var window uint64
	if single {
		// The window is the content size.
		f := hdr[n:]
		switch fcsLen {
		case 1:
			window = uint64(f[0])
		case 2:
			window = uint64(binary.LittleEndian.Uint16(f)) + 256
		case 4:
			window = uint64(binary.LittleEndian.Uint32(f))
		case 8:
			window = binary.LittleEndian.Uint64(f)
		}
	} else {
		wd := hdr[5]
		base := uint64(1) << (10 + wd>>3)
		window = base + base/8*uint64(wd&7)
	}
	z.checksum = fhd>>2&1 == 1
	z.state = zfBlock
	if window <= MaxWindow {
		z.left = n + fcsLen
		return nil
	}
	// Lower the window to MaxWindow: a single-segment frame (window =
	// content size) becomes a frame with a window descriptor, one byte
	// longer; its content size field keeps its length, since a content
	// size above MaxWindow never uses the 1-byte form.
	z.lowered = window
	old, err := z.replace(int(n + fcsLen))
	if err != nil {
		return err
	}
	const maxWindowDescriptor = (23 - 10) << 3 // 1<<23 = MaxWindow
	if single {
		h := append([]byte(nil), old[:5]...)
		h[4] &^= 0x20
		h = append(h, maxWindowDescriptor)
		z.out = append(h, old[5:]...)
	} else {
		old[5] = maxWindowDescriptor
	}
	return nil
}

func isZstdMagic(m []byte) bool { return bytes.Equal(m, []byte{0x28, 0xb5, 0x2f, 0xfd}) }

func isSkippable(m []byte) bool {
	return m[0]&0xf0 == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18
}

func (z *zstdFrames) Read(p []byte) (int, error) { return z.read(p, z.next) }

// xzStream passes through exactly one xz stream (stream header, blocks,
// index, stream footer; the .xz file format 1.2.1) from br and then
// reports EOF. It reads the block headers and the LZMA2 chunk headers
// (each says how long it is), so it never needs the decoder to find the
// end.
type xzStream struct {
	framer
	state int
	// charge, if set, is told the dictionary of every block before the
	// decoder allocates it.
	charge func(dict uint64) error

	check     int   // bytes of the block check
	blockData int64 // compressed bytes of the current block so far
	records   uint64
	varints   uint64 // index varints still to read
	indexLen  int64
}

const (
	xzHeader = iota
	xzBlockOrIndex
	xzChunk
	xzIndexCount
	xzIndexRecords
	xzIndexEnd
	xzFooter
	xzDone
)

var xzCheckSizes = [16]int{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

func (x *xzStream) Read(p []byte) (int, error) { return x.read(p, x.next) }

func (x *xzStream) peek(n int) ([]byte, error) {
	b, err := x.br.Peek(n)
	if err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return b, nil
}

// varintLen returns the length of the multibyte integer at the start of
// the unread input (at most 9 bytes) and its value.
func (x *xzStream) varint() (int, uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := x.peek(i + 1)
		if err != nil {
			return 0, 0, err
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, streamError("xz integer not in its shortest form")
			}
			return i + 1, v, nil
		}
	}
	return 0, 0, streamError("xz integer longer than 9 bytes")
}

func (x *xzStream) next() error {
	switch x.state {
	case xzHeader:
		h, err := x.peek(12)
		if err != nil {
			return err
		}
		if h[6] != 0 || h[7]&0xf0 != 0 {
			return streamError("xz stream flags %#x %#x: reserved bits set", h[6], h[7])
		}
		if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:12]) {
			return streamError("xz stream header CRC32 mismatch")
		}
		x.check = xzCheckSizes[h[7]&0x0f]
		x.left, x.state = 12, xzBlockOrIndex
		return nil
	case xzBlockOrIndex:
		b, err := x.peek(1)
		if err != nil {
			return err
		}
		if b[0] == 0 { // index indicator
			x.left, x.state, x.indexLen = 1, xzIndexCount, 1
			return nil
		}
		size := (int(b[0]) + 1) * 4
		h, err := x.peek(size)
		if err != nil {
			return err
		}
		if crc32.ChecksumIEEE(h[:size-4]) != binary.LittleEndian.Uint32(h[size-4:]) {
			return streamError("xz block header CRC32 mismatch")
		}
		dictAt, dict, err := xzDictionary(h[:size-4])
		if err != nil {
			return err
		}
		x.state, x.blockData = xzChunk, 0
		// The dictionary never needs to exceed the block's data: when
		// the whole block is in the buffer, its LZMA2 chunk headers say
		// how much that is, and the dictionary is lowered to it (xz does
		// not shrink it for small inputs: xz -9 declares 64 MiB for
		// anything). Otherwise it is lowered to MaxWindow at most.
		want := min(dict, MaxWindow)
		if u, ok := xzBlockUnpacked(x.br, size); ok {
			want = min(want, xzDictFor(u))
		}
		if x.charge != nil {
			if err := x.charge(want); err != nil {
				return err
			}
		}
		if want == dict {
			x.left = int64(size)
			return nil
		}
		if dict > MaxWindow {
			x.lowered = dict
		}
		hb, err := x.replace(size)
		if err != nil {
			return err
		}
		hb[dictAt] = xzDictCode(want)
		binary.LittleEndian.PutUint32(hb[size-4:], crc32.ChecksumIEEE(hb[:size-4]))
		return nil
	case xzChunk:
		b, err := x.peek(1)
		if err != nil {
			return err
		}
		c := b[0]
		var n int64
		switch {
		case c == 0: // end of the LZMA2 data; padding and check follow
			x.blockData++
			x.left = 1 + (4-x.blockData%4)%4 + int64(x.check)
			x.state = xzBlockOrIndex
			return nil
		case c == 1 || c == 2: // uncompressed chunk
			h, err := x.peek(3)
			if err != nil {
				return err
			}
			n = 3 + int64(binary.BigEndian.Uint16(h[1:3])) + 1
		case c >= 0x80: // LZMA chunk
			h, err := x.peek(5)
			if err != nil {
				return err
			}
			n = 5 + int64(binary.BigEndian.Uint16(h[3:5])) + 1
			if (c>>5)&3 >= 2 {
				n++ // new properties byte
			}
		default:
			return streamError("invalid LZMA2 chunk control byte %#x", c)
		}
		x.blockData += n
		x.left = n
		return nil
	case xzIndexCount:
		n, v, err := x.varint()
		if err != nil {
			return err
		}
		x.records, x.varints = v, 2*v
		if v > 1<<62 {
			return streamError("xz index of %d records", v)
		}
		x.left, x.indexLen, x.state = int64(n), x.indexLen+int64(n), xzIndexRecords
		return nil
	case xzIndexRecords:
		if x.varints == 0 {
			x.left = (4-x.indexLen%4)%4 + 4 // padding and CRC32
			x.state = xzFooter
			return nil
		}
		n, _, err := x.varint()
		if err != nil {
			return err
		}
		x.varints--
		x.left, x.indexLen = int64(n), x.indexLen+int64(n)
		return nil
	case xzFooter:
		f, err := x.peek(12)
		if err != nil {
			return err
		}
		if !bytes.Equal(f[10:12], []byte("YZ")) {
			return streamError("no xz stream footer magic")
		}
		x.left, x.state = 12, xzDone
		return nil
	}
	return io.EOF
}

// xzBlockUnpacked adds up the unpacked sizes of the LZMA2 chunks of the
// block whose header (hdrLen bytes) starts the unread input, if the whole
// block is already buffered.
func xzBlockUnpacked(br *bufio.Reader, hdrLen int) (uint64, bool) {
	buf, _ := br.Peek(br.Buffered())
	var u uint64
	for p := hdrLen; p < len(buf); {
		c := buf[p]
		switch {
		case c == 0:
			return u, true
		case c == 1 || c == 2:
			if p+3 > len(buf) {
				return 0, false
			}
			n := int(binary.BigEndian.Uint16(buf[p+1:])) + 1
			u += uint64(n)
			p += 3 + n
		case c >= 0x80:
			if p+5 > len(buf) {
				return 0, false
			}
			u += uint64(c&0x1f)<<16 + uint64(binary.BigEndian.Uint16(buf[p+1:])) + 1
			n := 5 + int(binary.BigEndian.Uint16(buf[p+3:])) + 1
			if (c>>5)&3 >= 2 {
				n++
			}
			p += n
		default:
			return 0, false
		}
	}
	return 0, false
}

// xzDictFor returns the smallest dictionary size an xz header can state
// (2^n or 3*2^(n-1), at least 4 KiB) that holds u bytes.
func xzDictFor(u uint64) uint64 {
	for d := byte(0); d < 40; d++ {
		if v := uint64(2|d&1) << (d/2 + 11); v >= u && v >= 4096 {
			return v
		}
	}
	return 1<<32 - 1
}

// xzDictCode is the header byte for a size xzDictFor returns.
func xzDictCode(size uint64) byte {
	for d := byte(0); d < 40; d++ {
		if uint64(2|d&1)<<(d/2+11) >= size {
			return d
		}
	}
	return 40
}

// xzDictionary reads the filter flags of a block header (without its
// CRC32) and returns the offset of the LZMA2 dictionary size byte in it and
// the size it stands for.
func xzDictionary(h []byte) (at int, dict uint64, err error) {
	if len(h) < 2 {
		return 0, 0, streamError("xz block header too short")
	}
	flags := h[1]
	if flags&0x3c != 0 {
		return 0, 0, streamError("xz block flags %#x: reserved bits set", flags)
	}
	i := 2
	readVarint := func() (uint64, error) {
		var v uint64
		for k := 0; k < 9 && i < len(h); k++ {
			c := h[i]
			i++
			v |= uint64(c&0x7f) << (7 * k)
			if c&0x80 == 0 {
				return v, nil
			}
		}
		return 0, streamError("xz block header: bad integer")
	}
	if flags&0x40 != 0 { // compressed size
		if _, err := readVarint(); err != nil {
			return 0, 0, err
		}
	}
	if flags&0x80 != 0 { // uncompressed size
		if _, err := readVarint(); err != nil {
			return 0, 0, err
		}
	}
	at = -1
	for f := 0; f <= int(flags&3); f++ {
		id, err := readVarint()
		if err != nil {
			return 0, 0, err
		}
		size, err := readVarint()
		if err != nil {
			return 0, 0, err
		}
		if size > uint64(len(h)-i) {
			return 0, 0, streamError("xz block header: filter properties beyond the header")
		}
		if id == 0x21 { // LZMA2
			if size != 1 || h[i] > 40 {
				return 0, 0, streamError("xz block header: bad LZMA2 properties")
			}
			at = i
			d := h[i]
			dict = 1<<32 - 1
			if d < 40 {
				dict = uint64(2|d&1) << (d/2 + 11)
			}
		}
		i += int(size)
	}
	for _, c := range h[i:] {
		if c != 0 {
			return 0, 0, streamError("xz block header: padding is not zero")
		}
	}
	if at < 0 {
		return 0, 0, streamError("xz block without an LZMA2 filter")
	}
	return at, dict, nil
}
