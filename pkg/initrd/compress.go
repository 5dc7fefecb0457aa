package initrd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compression names an initramfs compression the Linux kernel can unpack.
type Compression string

// The compressions Build writes (and Walk reads).
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// XZ is a compression Walk reads but Build does not write.
const XZ Compression = "xz"

// Compressions lists the names ParseCompression accepts.
var Compressions = []string{string(None), string(Gzip), string(Zstd)}

// ParseCompression checks a compression name.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case None, Gzip, Zstd:
		return c, nil
	}
	return "", fmt.Errorf("unknown compression %q (want none, gzip or zstd)", s)
}

// CheckLevel says whether level (0 for the default) is valid for c:
// 1..9 for gzip, 1..22 for zstd, only 0 for none.
func CheckLevel(c Compression, level int) error {
	if level == 0 {
		return nil
	}
	switch c {
	case Gzip:
		if level < 1 || level > 9 {
			return fmt.Errorf("gzip level %d out of range 1..9", level)
		}
	case Zstd:
		if level < 1 || level > 22 {
			return fmt.Errorf("zstd level %d out of range 1..22", level)
		}
	case None:
		return fmt.Errorf("level %d given without compression", level)
	default:
		return fmt.Errorf("unknown compression %q (want none, gzip or zstd)", c)
	}
	return nil
}

// DefaultLevel is the level used when 0 is given: the defaults of the gzip
// and zstd tools, 6 and 3. (klauspost's gzip level 6 is about ten times
// faster than its level 9 for about 3% more output; levels up to 9 and 22
// can be asked for.)
func DefaultLevel(c Compression) int {
	switch c {
	case Gzip:
		return 6
	case Zstd:
		return 3
	}
	return 0
}

// gzipBlockSize is the input each gzip worker compresses; it is a constant
// so that the output never depends on the number of CPUs.
const gzipBlockSize = 1 << 20

// NewCompressor returns a writer that compresses into w. The output depends
// only on the bytes written, c and level (0 = DefaultLevel), never on
// GOMAXPROCS or scheduling: gzip is cut into fixed 1 MiB blocks compressed
// in parallel (each primed with the previous 32 KiB as dictionary and ended
// with a sync flush, as pigz does) inside one gzip member; zstd is one
// frame from klauspost's encoder, whose concurrency overlaps block
// compression with output but keeps every block's history.
func NewCompressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	if err := CheckLevel(c, level); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	if level == 0 {
		level = DefaultLevel(c)
	}
	switch c {
	case None:
		return nopCloser{w}, nil
	case Gzip:
		return newParallelGzip(w, level), nil
	case Zstd:
		enc, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), 4)),
			zstd.WithWindowSize(8<<20),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true))
		if err != nil {
			return nil, fmt.Errorf("initrd: zstd: %w", err)
		}
		return enc, nil
	}
	return nil, fmt.Errorf("initrd: unknown compression %q (want none, gzip or zstd)", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// parallelGzip writes one gzip member whose deflate stream is the
// concatenation of independently compressed, byte-aligned pieces.
type parallelGzip struct {
	w       io.Writer
	level   int
	buf     []byte // input of the block being filled
	dict    []byte // last 32 KiB of the previous block
	crc     uint32
	size    uint32
	started bool
	sem     chan struct{}
	queue   chan chan result
	done    chan error
	err     error
	closed  bool
}

type result struct {
	b   []byte
	err error
}

// bufPool holds *[]byte block buffers (a pointer, so that Put does not
// allocate).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, gzipBlockSize); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) { b = b[:0]; bufPool.Put(&b) }

func newParallelGzip(w io.Writer, level int) *parallelGzip {
	z := &parallelGzip{
		w:     w,
		level: level,
		buf:   getBuf(),
		sem:   make(chan struct{}, max(runtime.GOMAXPROCS(0), 1)),
		queue: make(chan chan result, 64),
		done:  make(chan error, 1),
	}
	go z.writer()
	return z
}

// writer emits the compressed pieces in input order.
func (z *parallelGzip) writer() {
	var err error
	for ch := range z.queue {
		r := <-ch
		if err == nil {
			err = r.err
		}
		if err == nil {
			_, err = z.w.Write(r.b)
		}
	}
	z.done <- err
}

func (z *parallelGzip) header() {
	if z.started {
		return
	}
	z.started = true
	xfl := byte(0)
	switch z.level {
	case 9:
		xfl = 2
	case 1:
		xfl = 4
	}
	// ID1 ID2 CM FLG MTIME(0) XFL OS(3 = Unix): no name, no time.
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3}
	ch := make(chan result, 1)
	ch <- result{b: hdr}
	z.queue <- ch
}

func (z *parallelGzip) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errors.New("initrd: write after close")
	}
	z.header()
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
	for len(p) > 0 {
		k := min(gzipBlockSize-len(z.buf), len(p))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == gzipBlockSize {
			z.submit(false)
		}
	}
	return n, nil
}

// submit compresses the current block in the background.
func (z *parallelGzip) submit(final bool) {
	in, dict := z.buf, z.dict
	if len(in) >= 32<<10 {
		z.dict = append([]byte(nil), in[len(in)-32<<10:]...)
	} else {
		z.dict = append(append([]byte(nil), z.dict...), in...)
		if len(z.dict) > 32<<10 {
			z.dict = z.dict[len(z.dict)-32<<10:]
		}
	}
	z.buf = getBuf()
	ch := make(chan result, 1)
	z.queue <- ch
	z.sem <- struct{}{}
	go func() {
		defer func() { <-z.sem }()
		out := &sliceWriter{b: make([]byte, 0, len(in)/2+64)}
		fw, err := flate.NewWriterDict(out, z.level, dict)
		if err == nil {
			_, err = fw.Write(in)
		}
		if err == nil {
			if final {
				err = fw.Close()
			} else {
				err = fw.Flush()
			}
		}
		putBuf(in)
		ch <- result{b: out.b, err: err}
	}()
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// abort stops without compressing what is buffered: only the blocks
// already being compressed are waited for (one per CPU at most), so that a
// cancelled build stops quickly.
func (z *parallelGzip) abort() {
	if z.closed {
		return
	}
	z.closed = true
	close(z.queue)
	<-z.done
}

// Close compresses what is left, writes the trailer and waits for all
// pieces to be written.
func (z *parallelGzip) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	z.header()
	z.submit(true)
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[0:], z.crc)
	binary.LittleEndian.PutUint32(tr[4:], z.size)
	ch := make(chan result, 1)
	ch <- result{b: tr[:]}
	z.queue <- ch
	close(z.queue)
	z.err = <-z.done
	return z.err
}
