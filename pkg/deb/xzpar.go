package deb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"

	"github.com/therootcompany/xz"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
)

// xz streams made by multi-threaded xz (as dpkg-deb writes data.tar.xz)
// are split into independent blocks, listed in the index at the end of
// the stream. A single Go xz decoder runs at about half the speed of
// liblzma, so blocks are decoded on several goroutines and read back in
// order. Each block is decoded as a stream of its own (the original header,
// the block, a one-record index, a footer), so the decoder still checks
// the block's integrity check and its sizes against the index.

const (
	xzHeaderSize = 12
	// maxParallelBlock bounds the uncompressed size of a block decoded
	// into memory; a stream with bigger blocks is decoded sequentially.
	maxParallelBlock = 64 << 20
	maxXZBlocks      = 1 << 16
)

type xzBlock struct {
	off, unpadded, size int64 // compressed offset and size, uncompressed size
}

// xzBlocks reads the index of the single xz stream occupying r[0:size]. It
// returns nil when the stream does not suit parallel decoding (one block,
// several streams or padding, big blocks); the sequential decoder then
// reads it and reports whatever is wrong with it.
func xzBlocks(r io.ReaderAt, size int64) (hdr []byte, blocks []xzBlock) {
	if size < 2*xzHeaderSize {
		return nil, nil
	}
	hdr = make([]byte, xzHeaderSize)
	foot := make([]byte, xzHeaderSize)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, nil
	}
	if _, err := r.ReadAt(foot, size-xzHeaderSize); err != nil {
		return nil, nil
	}
	if string(foot[10:]) != "YZ" || !bytes.Equal(foot[8:10], hdr[6:8]) ||
		crc32.ChecksumIEEE(foot[4:10]) != binary.LittleEndian.Uint32(foot[0:4]) {
		return nil, nil
	}
	isize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	istart := size - xzHeaderSize - isize
	if isize > 16<<20 || istart < xzHeaderSize {
		return nil, nil
	}
	index := make([]byte, isize)
	if _, err := r.ReadAt(index, istart); err != nil {
		return nil, nil
	}
	if index[0] != 0 || crc32.ChecksumIEEE(index[:isize-4]) != binary.LittleEndian.Uint32(index[isize-4:]) {
		return nil, nil
	}
	rd := bytes.NewReader(index[1 : isize-4])
	n, err := binary.ReadUvarint(rd)
	if err != nil || n < 2 || n > maxXZBlocks {
		return nil, nil
	}
	off := int64(xzHeaderSize)
	for i := uint64(0); i < n; i++ {
		unpadded, err1 := binary.ReadUvarint(rd)
		usize, err2 := binary.ReadUvarint(rd)
		if err1 != nil || err2 != nil || unpadded == 0 || unpadded > uint64(size) || usize > maxParallelBlock {
			return nil, nil
		}
		blocks = append(blocks, xzBlock{off: off, unpadded: int64(unpadded), size: int64(usize)})
		off += (int64(unpadded) + 3) &^ 3
	}
	if off != istart {
		return nil, nil
	}
	return hdr, blocks
}

// blockStream wraps one block as a complete single-block xz stream.
func blockStream(r io.ReaderAt, hdr []byte, b xzBlock) io.Reader {
	var idx []byte
	idx = append(idx, 0)
	idx = binary.AppendUvarint(idx, 1)
	idx = binary.AppendUvarint(idx, uint64(b.unpadded))
	idx = binary.AppendUvarint(idx, uint64(b.size))
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = binary.LittleEndian.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	foot := make([]byte, 0, xzHeaderSize)
	foot = binary.LittleEndian.AppendUint32(foot, 0) // CRC32, below
	foot = binary.LittleEndian.AppendUint32(foot, uint32(len(idx)/4-1))
	foot = append(foot, hdr[6:8]...)
	foot = append(foot, 'Y', 'Z')
	binary.LittleEndian.PutUint32(foot[0:4], crc32.ChecksumIEEE(foot[4:10]))
	padded := (b.unpadded + 3) &^ 3
	return io.MultiReader(bytes.NewReader(hdr), io.NewSectionReader(r, b.off, padded), bytes.NewReader(idx), bytes.NewReader(foot))
}

// capWriter appends to a buffer and refuses more than max bytes.
type capWriter struct {
	buf []byte
	max int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	if int64(len(w.buf)+len(p)) > w.max {
		return 0, errors.New("block larger than its index says")
	}
	if need := len(w.buf) + len(p); need > cap(w.buf) {
		// Grow by doubling, but never past the block's size.
		c := min(max(2*cap(w.buf), need, 1<<20), int(w.max))
		nb := make([]byte, len(w.buf), c)
		copy(nb, w.buf)
		w.buf = nb
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

type blockResult struct {
	data []byte
	err  error
}

// parallelXZ decodes up to workers blocks at once and returns them in
// order. At most workers block buffers exist: the one being read and
// those being decoded or waiting; a buffer is reused once read.
type parallelXZ struct {
	results chan chan blockResult
	free    chan []byte
	cur     []byte // unread part of the current block
	whole   []byte // the current block's buffer, returned to free when read
	err     error
	cancel  context.CancelFunc
}

func newParallelXZ(r io.ReaderAt, hdr []byte, blocks []xzBlock, workers int) *parallelXZ {
	ctx, cancel := context.WithCancel(context.Background())
	p := &parallelXZ{results: make(chan chan blockResult, workers), free: make(chan []byte, workers), cancel: cancel}
	for i := 0; i < workers; i++ {
		p.free <- nil
	}
	// Decoders are reused (Reset keeps the dictionary): one per worker.
	decoders := make(chan *xz.Reader, workers)
	for i := 0; i < workers; i++ {
		decoders <- nil
	}
	go func() {
		defer close(p.results)
		for i, b := range blocks {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-ctx.Done():
				return
			}
			ch := make(chan blockResult, 1)
			select {
			case p.results <- ch:
			case <-ctx.Done():
				return
			}
			var zr *xz.Reader
			select {
			case zr = <-decoders:
			case <-ctx.Done():
				return
			}
			go func(i int, b xzBlock) {
				w := &capWriter{buf: buf[:0], max: b.size}
				var err error
				if zr == nil {
					zr, err = xz.NewReader(blockStream(r, hdr, b), MaxXZDict)
				} else {
					err = zr.Reset(blockStream(r, hdr, b))
				}
				if err == nil {
					_, err = io.Copy(w, ctxio.Reader(ctx, zr))
				}
				decoders <- zr
				if err == nil && int64(len(w.buf)) != b.size {
					err = fmt.Errorf("%d bytes, index says %d", len(w.buf), b.size)
				}
				if err != nil {
					err = fmt.Errorf("xz block %d at offset %d: %w", i, b.off, err)
				}
				ch <- blockResult{data: w.buf, err: err}
			}(i, b)
		}
	}()
	return p
}

func (p *parallelXZ) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		if p.whole != nil {
			p.free <- p.whole
			p.whole = nil
		}
		ch, ok := <-p.results
		if !ok {
			p.err = io.EOF
			return 0, io.EOF
		}
		res := <-ch
		if res.err != nil {
			p.err = res.err
			return 0, res.err
		}
		p.cur, p.whole = res.data, res.data
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

func (p *parallelXZ) close() { p.cancel() }

// xzWorkers is how many blocks are decoded at once.
func xzWorkers() int { return min(runtime.GOMAXPROCS(0), 4) }
