package verity

import (
	"fmt"
	"io"
	"runtime"
	"sync"
)

// chunkBytes is the amount of data one worker hashes at a time. Memory use
// is a few chunks per worker, whatever the data size.
const chunkBytes = 1 << 20

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
func hashData(src blockSource, parallelRead bool, nblocks, bs uint64, g *geometry, p *Params,
	emit func(first uint64, digests []byte) error) error {
	per := uint64(chunkBytes) / bs
	if per == 0 {
		per = 1
	}
	nchunks := (nblocks + per - 1) / per
	workers := runtime.GOMAXPROCS(0)
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

	// At most `window` chunks are between being handed out and being
	// emitted, which bounds the reorder buffer.
	window := 2 * workers
	tokens := make(chan struct{}, window)
	results := make(chan result, window)
	digestPool := sync.Pool{New: func() any { return make([]byte, 0, int(per)*g.digestSize) }}
	chunkRange := func(idx uint64) (uint64, uint64) {
		first := idx * per
		n := per
		if first+n > nblocks {
			n = nblocks - first
		}
		return first, n
	}
	hashChunk := func(h *blockHasher, idx uint64, buf []byte) []byte {
		first, n := chunkRange(idx)
		_ = first
		d := digestPool.Get().([]byte)[:0]
		for i := uint64(0); i < n; i++ {
			d = h.sum(d, buf[i*bs:(i+1)*bs])
		}
		return d
	}
	send := func(r result) bool {
		select {
		case results <- r:
			return true
		case <-done:
			return false
		}
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
				buf := make([]byte, per*bs)
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
					if idx >= nchunks {
						return
					}
					first, n := chunkRange(idx)
					b := buf[:n*bs]
					if err := src(first, b); err != nil {
						send(result{idx: idx, err: err})
						return
					}
					if !send(result{idx: idx, digests: hashChunk(h, idx, b)}) {
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
					d := hashChunk(h, j.idx, j.buf)
					free <- j.buf[:cap(j.buf)]
					if !send(result{idx: j.idx, digests: d}) {
						return
					}
				}
			}()
		}
	}

	// Collect in order.
	pending := make(map[uint64][]byte, window)
	var err error
	for want := uint64(0); want < nchunks && err == nil; {
		r := <-results
		if r.err != nil {
			err = r.err
			break
		}
		pending[r.idx] = r.digests
		for {
			d, ok := pending[want]
			if !ok {
				break
			}
			delete(pending, want)
			first, _ := chunkRange(want)
			if e := emit(first, d); e != nil {
				err = e
				break
			}
			digestPool.Put(d[:0])
			<-tokens
			want++
		}
	}
	stop()
	wg.Wait()
	return err
}
