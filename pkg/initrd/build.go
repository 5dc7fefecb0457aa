package initrd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// BuildOptions describe the whole initramfs file.
type BuildOptions struct {
	Compression Compression
	// Level is the compression level, 0 for DefaultLevel.
	Level int
	WriteOptions
	// Early, when set, is an uncompressed newc archive (CPU microcode,
	// ACPI tables) placed before the compressed main archive, as the
	// kernel's early loaders expect.
	Early []byte
}

// CheckEarly verifies that b is a complete uncompressed newc archive (with
// its trailer, optionally followed by zero padding), as the kernel's early
// microcode loader needs.
func CheckEarly(b []byte) error {
	r := NewReader(bytes.NewReader(b))
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("initrd: early cpio: %w", err)
		}
	}
	for _, c := range b[r.Offset():] {
		if c != 0 {
			return fmt.Errorf("initrd: early cpio: data after the trailer at offset %d", r.Offset())
		}
	}
	return nil
}

// Build writes the initramfs: the early archive if any, then the main
// archive compressed as asked.
func Build(w io.Writer, a *Archive, opts BuildOptions) error {
	if _, err := ParseCompression(string(opts.Compression)); err != nil {
		return err
	}
	if opts.Early != nil {
		if err := CheckEarly(opts.Early); err != nil {
			return err
		}
		if _, err := w.Write(opts.Early); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		// The next archive must start 4-byte aligned.
		if _, err := w.Write(zeros[:pad4(int64(len(opts.Early)))]); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
	}
	cw, err := NewCompressor(w, opts.Compression, opts.Level)
	if err != nil {
		return err
	}
	if _, err := a.WriteCPIO(cw, opts.WriteOptions); err != nil {
		cw.Close()
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initrd: %s: %w", opts.Compression, err)
	}
	return nil
}

// Walk reads an initramfs as the kernel does: a sequence of uncompressed
// newc archives and gzip, zstd or xz compressed ones (each holding newc
// archives), separated by zero padding. fn is called for every entry with
// a reader of its content and the compression of the segment it is in.
func Walk(r io.Reader, fn func(h *Header, comp string, content io.Reader) error) error {
	return walk(bufio.NewReaderSize(r, 1<<16), "none", fn)
}

func walk(br *bufio.Reader, comp string, fn func(*Header, string, io.Reader) error) error {
	segments := 0
	for {
		// Skip zero padding between archives.
		for {
			c, err := br.ReadByte()
			if err == io.EOF {
				if segments == 0 {
					return errors.New("initrd: empty archive")
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("initrd: %w", err)
			}
			if c != 0 {
				br.UnreadByte()
				break
			}
		}
		segments++
		magic, _ := br.Peek(6)
		switch {
		case bytes.HasPrefix(magic, []byte("07070")):
			cr := NewReader(br)
			for {
				h, err := cr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("initrd: %s segment: %w", comp, err)
				}
				if err := fn(h, comp, cr); err != nil {
					return err
				}
			}
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			zr, err := gzip.NewReader(br)
			if err != nil {
				return fmt.Errorf("initrd: gzip: %w", err)
			}
			zr.Multistream(false)
			if err := walk(bufio.NewReaderSize(zr, 1<<16), "gzip", fn); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				return fmt.Errorf("initrd: gzip: %w", err)
			}
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			// The decoder reads ahead: give it only this run of adjacent
			// zstd frames, so that segments after it stay readable.
			zr, err := zstd.NewReader(&zstdFrames{br: br}, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return fmt.Errorf("initrd: zstd: %w", err)
			}
			err = walk(bufio.NewReaderSize(zr, 1<<16), "zstd", fn)
			if err == nil {
				if _, err = io.Copy(io.Discard, zr); err != nil {
					err = fmt.Errorf("initrd: zstd: %w", err)
				}
			}
			zr.Close()
			if err != nil {
				return err
			}
		case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
			xr, err := xz.NewReader(br)
			if err != nil {
				return fmt.Errorf("initrd: xz: %w", err)
			}
			return walk(bufio.NewReaderSize(xr, 1<<16), "xz", fn)
		default:
			return fmt.Errorf("initrd: unknown data (% x) in %s segment: not newc, gzip, zstd or xz", magic, comp)
		}
	}
}

// FormatEntry formats h as one line of `cpio -tv`, with numeric owners and
// the date in UTC.
func FormatEntry(h *Header) string {
	size := fmt.Sprintf("%8d", h.Size)
	if t := h.Mode & TypeMask; t == TypeChar || t == TypeBlock {
		size = fmt.Sprintf("%3d, %3d", h.RDevMajor, h.RDevMinor)
	}
	s := fmt.Sprintf("%s %3d %-8d %-8d %s %s %s", ModeString(h.Mode), h.NLink, h.UID, h.GID, size,
		time.Unix(h.MTime, 0).UTC().Format("Jan _2  2006"), h.Name)
	if h.Linkname != "" {
		s += " -> " + h.Linkname
	}
	return s
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

// AddInitSkeleton adds what an init needs before it can mount devtmpfs:
// /dev/console (the kernel opens it for init's stdio), and the mount
// points /dev, /proc and /sys.
func AddInitSkeleton(a *Archive) error {
	for _, e := range []Entry{
		{Path: "dev", Mode: TypeDir | 0o755},
		{Path: "dev/console", Mode: TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1},
		{Path: "proc", Mode: TypeDir | 0o755},
		{Path: "sys", Mode: TypeDir | 0o755},
	} {
		if err := a.Add(e); err != nil {
			return err
		}
	}
	return nil
}

// zstdFrames passes through exactly one run of adjacent zstd frames (and
// skippable frames) from br and then reports EOF, by reading the frame and
// block headers (RFC 8878): the decoder, which reads ahead, cannot consume
// the segment after it.
type zstdFrames struct {
	br       *bufio.Reader
	left     int64 // bytes of the current piece still to pass through
	state    int   // what follows the current piece
	checksum bool
	frames   int
	err      error
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
			return fmt.Errorf("truncated zstd block header: %w", io.ErrUnexpectedEOF)
		}
		v := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		size := int64(v >> 3)
		switch (v >> 1) & 3 {
		case 1: // RLE: one byte repeated
			size = 1
		case 3:
			return errors.New("reserved zstd block type")
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
		return errors.New("no zstd frame magic")
	}
	h, err := z.br.Peek(5)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	fhd := h[4]
	single := fhd>>5&1 == 1
	n := int64(5)
	if !single {
		n++ // window descriptor
	}
	n += []int64{0, 1, 2, 4}[fhd&3]
	fcs := []int64{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	z.left = n + fcs
	z.checksum = fhd>>2&1 == 1
	z.state = zfBlock
	return nil
}

func isZstdMagic(m []byte) bool { return bytes.Equal(m, []byte{0x28, 0xb5, 0x2f, 0xfd}) }

func isSkippable(m []byte) bool {
	return m[0]&0xf0 == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18
}

func (z *zstdFrames) Read(p []byte) (int, error) {
	for z.left == 0 {
		if z.err != nil {
			return 0, z.err
		}
		if err := z.next(); err != nil {
			z.err = err
			return 0, err
		}
	}
	if int64(len(p)) > z.left {
		p = p[:z.left]
	}
	n, err := z.br.Read(p)
	z.left -= int64(n)
	if err == io.EOF && z.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}
