package verity

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
)

// useMmap says whether regular files are mapped (tests turn it off to
// check the read path on files).
var useMmap = true

// subRead is how much a worker reads at a time when it cannot map the
// data: small enough to be hashed while still in the CPU cache.
var subRead uint64 = 256 << 10

// maxWorkers caps the goroutines hashing the leaf level (beyond it, memory
// bandwidth rather than cores limits).
const maxWorkers = 32

// chunkSize is the amount of data one worker hashes at a time: 4 MiB (a
// mapping that size costs little next to hashing it), less with many
// workers so that the chunks in flight stay within 32 MiB. Memory use is
// one chunk per worker, whatever the data size.
func chunkSize(workers int) uint64 {
	c := uint64(4 << 20)
	for c > 1<<20 && c*uint64(workers) > 32<<20 {
		c /= 2
	}
	return c
}

// blockSource fills buf with the data blocks starting at block first.
type blockSource func(first uint64, buf []byte) error

func readerAtSource(r io.ReaderAt, bs uint64) blockSource {
	return func(first uint64, buf []byte) error {
		n, err := r.ReadAt(buf, int64(first*bs))
		if n == len(buf) {
			return nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading data block %d: %w", first+uint64(n)/bs, err)
	}
}

func readerSource(r io.Reader, bs uint64) blockSource {
	return func(first uint64, buf []byte) error {
		n, err := io.ReadFull(r, buf)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading data block %d: %w", first+uint64(n)/bs, err)
		}
		return nil
	}
}

// hashData hashes nblocks data blocks of size bs from src on all cores and
// calls emit, in block order, with the digests (digestSize bytes each,
// packed) of consecutive runs of blocks. parallelRead says whether src may
// be called from several goroutines at once (io.ReaderAt) or must be
// called in order from one (io.Reader).
//
// With mm set (parallelRead only), chunks are mapped from the file instead
// of read into buffers, falling back to src when mapping fails.
//
// Cancelling ctx stops the reader and the workers at their next chunk (or
// next piece of a chunk being read); hashData then returns ctx.Err().
func hashData(ctx context.Context, src blockSource, parallelRead bool, mm *mmapper, nblocks, bs uint64, g *geometry, p *Params,
	emit func(first uint64, digests []byte) error) error {
	workers := min(runtime.GOMAXPROCS(0), maxWorkers)
	per := max(chunkSize(workers)/bs, 1)
	nchunks := (nblocks + per - 1) / per
	if uint64(workers) > nchunks {
		workers = int(nchunks)
	}
	type result struct {
		idx     uint64
		digests []byte
		err     error
	}
	type job struct {
		idx uint64
		buf []byte
	}
	done := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(done) }) }
	defer stop()
	// Cancellation closes done, which every goroutine here watches.
	defer context.AfterFunc(ctx, stop)()
	stopped := func() bool {
		select {
		case <-done:
			return true
		default:
			return ctx.Err() != nil
		}
	}

	// At most `window` chunks are between being handed out and being
	// emitted, which bounds the reorder buffer.
	window := 2 * workers
	tokens := make(chan struct{}, window)
	// Digest buffers are reused through a free list (a sync.Pool of
	// slices would allocate on every Put).
	freeDigests := make(chan []byte, window+workers)
	getDigests := func() []byte {
		select {
		case d := <-freeDigests:
			return d[:0]
		default:
			return make([]byte, 0, int(per)*g.digestSize)
		}
	}
	putDigests := func(d []byte) {
		select {
		case freeDigests <- d:
		default:
		}
	}
	chunkRange := func(idx uint64) (uint64, uint64) {
		first := idx * per
		n := per
		if first+n > nblocks {
			n = nblocks - first
		}
		return first, n
	}
	hashChunk := func(h *blockHasher, buf []byte) []byte {
		d := getDigests()
		for off := uint64(0); off < uint64(len(buf)); off += bs {
			d = h.sum(d, buf[off:off+bs])
		}
		return d
	}
	// Results are put in order by whichever worker completes the chunk
	// that is next: it emits every chunk that is then ready, under emitMu
	// (there is no collector goroutine to wake). Errors too are taken in
	// order, so the first bad block is named.
	var emitMu sync.Mutex
	pending := make(map[uint64]result, window)
	var want uint64
	var firstErr error
	send := func(r result) bool {
		emitMu.Lock()
		defer emitMu.Unlock()
		if firstErr != nil {
			return false
		}
		pending[r.idx] = r
		for {
			r, ok := pending[want]
			if !ok {
				return true
			}
			delete(pending, want)
			if r.err == nil {
				first, _ := chunkRange(want)
				r.err = emit(first, r.digests)
			}
			if r.err != nil {
				firstErr = r.err
				stop()
				return false
			}
			putDigests(r.digests)
			<-tokens
			want++
		}
	}

	if mm != nil && parallelRead {
		mm.mapAll(nblocks * bs)
		defer mm.release()
	}

	var wg sync.WaitGroup
	if parallelRead {
		var mu sync.Mutex
		next := uint64(0)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := g.hasher(p)
				var buf []byte
				if mm != nil {
					// A mapped file cut short under us faults; make that
					// an error instead of a crash.
					debug.SetPanicOnFault(true)
				}
				for {
					select {
					case tokens <- struct{}{}:
					case <-done:
						return
					}
					mu.Lock()
					idx := next
					next++
					mu.Unlock()
					if idx >= nchunks || stopped() {
						return
					}
					first, n := chunkRange(idx)
					var d []byte
					var err error
					if mm != nil {
						// nil when the chunk cannot be mapped or faults
						// (the file is shorter than said): read it then,
						// for the error to say where.
						d = hashMapped(mm, first, n, bs, func(b []byte) []byte { return hashChunk(h, b) })
					}
					if d == nil {
						// Read in pieces that stay in the CPU cache
						// between the copy and the hashing.
						if buf == nil {
							buf = make([]byte, max(subRead/bs, 1)*bs)
						}
						d = getDigests()
						for i := uint64(0); i < n && err == nil; {
							if stopped() {
								return
							}
							k := min(uint64(len(buf))/bs, n-i)
							b := buf[:k*bs]
							if err = src(first+i, b); err == nil {
								for j := uint64(0); j < k; j++ {
									d = h.sum(d, b[j*bs:(j+1)*bs])
								}
							}
							i += k
						}
					}
					if err != nil {
						send(result{idx: idx, err: err})
						return
					}
					if !send(result{idx: idx, digests: d}) {
						return
					}
				}
			}()
		}
	} else {
		jobs := make(chan job)
		free := make(chan []byte, workers+1)
		for i := 0; i < workers+1; i++ {
			free <- make([]byte, per*bs)
		}
		wg.Add(1)
		go func() { // the one reader
			defer wg.Done()
			defer close(jobs)
			for idx := uint64(0); idx < nchunks; idx++ {
				var buf []byte
				select {
				case tokens <- struct{}{}:
				case <-done:
					return
				}
				select {
				case buf = <-free:
				case <-done:
					return
				}
				if stopped() {
					return
				}
				first, n := chunkRange(idx)
				b := buf[:n*bs]
				if err := src(first, b); err != nil {
					send(result{idx: idx, err: err})
					return
				}
				select {
				case jobs <- job{idx, b}:
				case <-done:
					return
				}
			}
		}()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := g.hasher(p)
				for j := range jobs {
					if stopped() {
						return
					}
					d := hashChunk(h, j.buf)
					free <- j.buf[:cap(j.buf)]
					if !send(result{idx: j.idx, digests: d}) {
						return
					}
				}
			}()
		}
	}

	wg.Wait()
	stop()
	if firstErr == nil && want != nchunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("internal error: %d of %d chunks hashed", want, nchunks)
	}
	return firstErr
}

// hashMapped maps n blocks from block first and hashes them with hash. It
// returns nil when the chunk cannot be mapped or reading it faults.
func hashMapped(mm *mmapper, first, n, bs uint64, hash func([]byte) []byte) (d []byte) {
	m, done, err := mm.chunk(int64(first*bs), int(n*bs))
	if err != nil {
		return nil
	}
	defer done()
	defer func() {
		if recover() != nil {
			d = nil
		}
	}()
	return hash(m)
}
