package verity

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// dataBlocksFor works out how many data blocks to hash from the size of the
// data and the parameters.
func dataBlocksFor(dataSize int64, p *Params) (uint64, error) {
	bs := uint64(p.DataBlockSize)
	if dataSize < 0 {
		return 0, fmt.Errorf("data size %d is negative", dataSize)
	}
	if p.DataBlocks == 0 {
		if uint64(dataSize)%bs != 0 {
			return 0, fmt.Errorf("data size %d is not a multiple of the data block size %d (give the number of data blocks to hash only a prefix)", dataSize, bs)
		}
		if dataSize == 0 {
			return 0, errors.New("data is empty")
		}
		return uint64(dataSize) / bs, nil
	}
	if p.DataBlocks > uint64(dataSize)/bs {
		return 0, fmt.Errorf("data is %d bytes, too small for %d blocks of %d bytes", dataSize, p.DataBlocks, bs)
	}
	return p.DataBlocks, nil
}

// Format computes the hash tree of the data (dataSize bytes readable from
// data) and writes the superblock (unless p.NoSuperblock) and the tree to
// hash from p.HashOffset on. Only the bytes of the superblock and the tree
// are written, and the zeros between the superblock and the tree.
//
// data and hash may be the same file when the hash area lies after the
// data (p.HashOffset >= the data blocks' end); FormatAppended does that
// all or nothing.
//
// The data blocks are hashed on all cores; memory use does not depend on
// the data size. Cancelling ctx stops the work within a chunk of data
// (a few MiB per core) and returns ctx.Err().
func Format(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.WriterAt, p Params) (*Result, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	n, err := dataBlocksFor(dataSize, &p)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	p.DataBlocks = n
	return format(ctx, readerAtSource(data, uint64(p.DataBlockSize)), true, newMmapper(data), hash, p)
}

// FormatStream is Format for data read once, in order, from an io.Reader.
// p.DataBlocks must be set (the tree's layout depends on it); exactly that
// many blocks are read. A Read that blocks is not interrupted by ctx; the
// work stops at the next chunk.
func FormatStream(ctx context.Context, data io.Reader, hash io.WriterAt, p Params) (*Result, error) {
	if p.DataBlocks == 0 {
		return nil, errors.New("verity: FormatStream needs the number of data blocks (Params.DataBlocks)")
	}
	return format(ctx, readerSource(data, uint64(p.DataBlockSize)), false, nil, hash, p)
}

func format(ctx context.Context, src blockSource, parallel bool, mm *mmapper, hash io.WriterAt, p Params) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	p.Salt = append([]byte(nil), p.Salt...)
	hbs := uint64(p.HashBlockSize)
	b := &treeBuilder{g: g, w: hash, hbs: hbs, h: g.hasher(&p)}
	b.levels = make([]levelBuf, g.levels)
	for i := range b.levels {
		b.levels[i].buf = make([]byte, hbs)
	}
	var root []byte
	if g.levels == 0 {
		// A single data block: its digest is the root hash; no tree.
		err = hashData(ctx, src, parallel, mm, 1, uint64(p.DataBlockSize), g, &p, func(_ uint64, d []byte) error {
			root = append([]byte(nil), d...)
			return nil
		})
	} else {
		err = hashData(ctx, src, parallel, mm, g.dataBlocks, uint64(p.DataBlockSize), g, &p, func(_ uint64, d []byte) error {
			for i := 0; i < len(d); i += g.digestSize {
				if err := b.add(0, d[i:i+g.digestSize]); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			root, err = b.finish()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	if !p.NoSuperblock {
		// The superblock, then zeros up to the tree (or, with a single
		// data block, to the end of the hash block holding the
		// superblock: veritysetup's device size).
		raw := SuperblockFromParams(&p).Marshal()
		raw = append(raw, make([]byte, g.hashStart*hbs-(p.HashOffset+SuperblockSize))...)
		if _, err := hash.WriteAt(raw, int64(p.HashOffset)); err != nil {
			return nil, fmt.Errorf("verity: writing superblock: %w", err)
		}
	}
	r := g.result(&p)
	r.RootHash = root
	return r, nil
}

func (g *geometry) result(p *Params) *Result {
	end := g.end * uint64(p.HashBlockSize)
	if end < p.HashOffset {
		end = p.HashOffset // no superblock and a single data block: no tree
	}
	return &Result{
		Salt:           p.Salt,
		DataBlocks:     g.dataBlocks,
		HashStartBlock: g.hashStart,
		HashBlocks:     g.hashBlocks(),
		Levels:         g.levels,
		HashAreaSize:   int64(end - p.HashOffset),
		Params:         *p,
	}
}

// Plan returns the layout Format writes for p (with p.DataBlocks set):
// everything of the Result but the root hash. Use it to size the hash
// device (HashDeviceSize) before formatting.
func Plan(p Params) (*Result, error) {
	if p.DataBlocks == 0 {
		return nil, errors.New("verity: Plan needs the number of data blocks")
	}
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	p.Salt = append([]byte(nil), p.Salt...)
	return g.result(&p), nil
}

type levelBuf struct {
	buf []byte
	n   int    // digests in buf
	blk uint64 // blocks of this level done
	// out holds finished blocks not yet written, from block outStart of
	// the level on, so that the tree is written in large pieces.
	out      []byte
	outStart uint64
}

// writeBatch is how much of a level is written at once.
const writeBatch = 256 << 10

// treeBuilder builds the levels of the tree as the leaf digests arrive in
// order, keeping one partial hash block per level.
type treeBuilder struct {
	g      *geometry
	w      io.WriterAt
	hbs    uint64
	h      *blockHasher
	levels []levelBuf
	root   []byte
	digest []byte
}

func (b *treeBuilder) add(level int, d []byte) error {
	l := &b.levels[level]
	copy(l.buf[l.n*b.g.stride:], d)
	l.n++
	if l.n == b.g.hashPerBlock {
		return b.flush(level)
	}
	return nil
}

func (b *treeBuilder) flush(level int) error {
	l := &b.levels[level]
	if len(l.out) == 0 {
		l.outStart = l.blk
	}
	l.out = append(l.out, l.buf...)
	if len(l.out) >= writeBatch {
		if err := b.write(level); err != nil {
			return err
		}
	}
	b.digest = b.h.sum(b.digest[:0], l.buf)
	clear(l.buf)
	l.n = 0
	l.blk++
	if level+1 < len(b.levels) {
		return b.add(level+1, b.digest)
	}
	b.root = append(b.root[:0], b.digest...)
	return nil
}

// write writes the finished blocks of a level.
func (b *treeBuilder) write(level int) error {
	l := &b.levels[level]
	if len(l.out) == 0 {
		return nil
	}
	pos := b.g.levelStart[level] + l.outStart
	if _, err := b.w.WriteAt(l.out, int64(pos*b.hbs)); err != nil {
		return fmt.Errorf("writing hash blocks %d..%d: %w", pos, pos+uint64(len(l.out))/b.hbs-1, err)
	}
	l.out = l.out[:0]
	return nil
}

func (b *treeBuilder) finish() ([]byte, error) {
	for i := range b.levels {
		if b.levels[i].n > 0 {
			if err := b.flush(i); err != nil {
				return nil, err
			}
		}
		if err := b.write(i); err != nil {
			return nil, err
		}
		if b.levels[i].blk != b.g.levelSize[i] {
			return nil, fmt.Errorf("internal error: level %d has %d blocks, want %d", i, b.levels[i].blk, b.g.levelSize[i])
		}
	}
	return b.root, nil
}
