package measure

import (
	"crypto/sha512"
	"fmt"
	"hash"
	"runtime"
	"sync/atomic"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// The contents hashes of a file's pages are independent of each other;
// only the PAGE_INFO chain over them is sequential (and cheap: two SHA-384
// blocks a page against 33 for the contents). With more than one CPU,
// hashPool reads and hashes the pages of the measured PAGE_DATA directives
// ahead of the chain on a few workers and hands the hashes back in
// directive order, so the digest is the same as the sequential one. The
// pipeline is bounded: at most 2 x workers batches of batchPages pages are
// queued, and each worker (and the chain) reads into its own 256 KiB
// buffer, so memory stays flat.
// On a busy machine a worker may wait a whole scheduler time slice for a
// CPU; rather than wait for it, the chain hashes a batch that no worker
// has started itself, so the pool is never much slower than the
// sequential path.

const (
	// batchPages is the number of pages a worker reads and hashes at once
	// (256 KiB, one read when their file data is contiguous).
	batchPages = 64
	// maxHashWorkers bounds the workers.
	maxHashWorkers = 4
)

// poolMin is the smallest number of hashed pages for which the pool pays
// for its goroutines (a variable for tests).
var poolMin uint64 = 256

// hashWorkers is the number of workers to use; 1 or less measures
// sequentially (tests set it to compare both ways).
var hashWorkers = func() int { return min(runtime.GOMAXPROCS(0), maxHashWorkers) }

// hashedData reports whether a PAGE_DATA directive's pages are measured as
// NORMAL pages over its file data (pageData's default case).
func hashedData(x *igvm.PageData) bool {
	switch x.DataType {
	case igvm.DataSecrets, igvm.DataCPUID, igvm.DataCPUIDXF:
		return false
	}
	return x.Flags&igvm.PageFlagUnmeasured == 0 && igvm.HasData(x)
}

// hashBatch is up to batchPages pages: their file offsets and GPAs, and
// once done is closed, their contents hashes (or err, for the pages from
// errIdx on).
type hashBatch struct {
	offs   []int64
	gpas   []uint64
	sums   []Digest
	err    error
	errIdx int
	// claimed is set by whoever hashes the batch (a worker or the chain);
	// done is closed when it is hashed.
	claimed atomic.Bool
	done    chan struct{}
}

type hashPool struct {
	f     *igvm.File
	order chan *hashBatch // batches in directive order, to the chain
	quit  chan struct{}
	cur   *hashBatch
	i     int // next page of cur
	buf   []byte
	h     hash.Hash
}

// newHashPool starts the pool over the hashed pages of items (shared pages
// skipped when skipShared), or returns nil when the file is too small or
// there is one CPU.
func newHashPool(f *igvm.File, items []item, skipShared bool) *hashPool {
	workers := hashWorkers()
	if workers < 2 {
		return nil
	}
	var pages []*igvm.PageData
	total := uint64(0)
	for _, it := range items {
		if x, ok := it.hdr.(*igvm.PageData); ok && hashedData(x) && !(skipShared && x.Flags&igvm.PageFlagShared != 0) {
			pages = append(pages, x)
			total += x.PageSize() / snp.PageSize
		}
	}
	if total < poolMin {
		return nil
	}
	p := &hashPool{f: f, order: make(chan *hashBatch, 2*workers), quit: make(chan struct{})}
	work := make(chan *hashBatch, 2*workers)
	for range workers {
		go p.worker(work)
	}
	go p.produce(pages, work)
	return p
}

// produce cuts the pages into batches and queues each, in order, for the
// chain and, if a worker has room, for the workers.
func (p *hashPool) produce(pages []*igvm.PageData, work chan<- *hashBatch) {
	defer close(p.order)
	defer close(work)
	b := &hashBatch{}
	send := func() bool {
		b.sums = make([]Digest, len(b.offs))
		b.done = make(chan struct{})
		// Offer the batch to the workers; if they are all behind (their
		// queue is full), the chain hashes it itself.
		select {
		case work <- b:
		default:
		}
		select {
		case p.order <- b:
		case <-p.quit:
			return false
		}
		b = &hashBatch{}
		return true
	}
	for _, x := range pages {
		for i := uint64(0); i < x.PageSize()/snp.PageSize; i++ {
			b.offs = append(b.offs, int64(x.FileOffset)+int64(i*snp.PageSize))
			b.gpas = append(b.gpas, x.GPA+i*snp.PageSize)
			if len(b.offs) == batchPages && !send() {
				return
			}
		}
	}
	if len(b.offs) > 0 {
		send()
	}
}

// worker hashes the batches the chain has not claimed yet.
func (p *hashPool) worker(work <-chan *hashBatch) {
	buf := make([]byte, batchPages*snp.PageSize)
	h := sha512.New384()
	for b := range work {
		if b.claimed.CompareAndSwap(false, true) {
			p.hash(b, buf, h)
		}
	}
}

// hash reads and hashes the pages of b, one read per contiguous run of
// file data, then closes b.done.
func (p *hashPool) hash(b *hashBatch, buf []byte, h hash.Hash) {
	for i := 0; i < len(b.offs); {
		j := i + 1
		for j < len(b.offs) && b.offs[j] == b.offs[j-1]+snp.PageSize {
			j++
		}
		run := buf[:(j-i)*snp.PageSize]
		if _, err := p.f.ReadAt(run, b.offs[i]); err != nil {
			b.err, b.errIdx = err, i
			break
		}
		for k := i; k < j; k++ {
			h.Reset()
			h.Write(run[(k-i)*snp.PageSize : (k-i+1)*snp.PageSize])
			h.Sum(b.sums[k][:0])
		}
		i = j
	}
	close(b.done)
}

// next returns the contents hash of the next hashed page, which must be at
// gpa (the chain and the pool walk the same directives in the same order).
func (p *hashPool) next(gpa uint64) (Digest, error) {
	if p.cur == nil || p.i == len(p.cur.offs) {
		b, ok := <-p.order
		if !ok {
			return Digest{}, fmt.Errorf("measure: internal error: no hashed page left for %#x", gpa)
		}
		if b.claimed.CompareAndSwap(false, true) {
			if p.buf == nil {
				p.buf, p.h = make([]byte, batchPages*snp.PageSize), sha512.New384()
			}
			p.hash(b, p.buf, p.h)
		}
		<-b.done
		p.cur, p.i = b, 0
	}
	b, i := p.cur, p.i
	p.i++
	if b.gpas[i] != gpa {
		return Digest{}, fmt.Errorf("measure: internal error: hashed page at %#x, the chain is at %#x", b.gpas[i], gpa)
	}
	if b.err != nil && i >= b.errIdx {
		return Digest{}, fmt.Errorf("measure: read page data at %#x: %w", gpa, b.err)
	}
	return b.sums[i], nil
}

// stop ends the producer and the workers (they finish the batch in hand).
func (p *hashPool) stop() {
	if p != nil {
		close(p.quit)
	}
}
