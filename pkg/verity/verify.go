package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// CorruptError reports the first block that does not match its hash.
type CorruptError struct {
	// Hash is true for a hash block (Block counts hash blocks from the
	// start of the hash device, as <hash_start> does), false for a data
	// block (Block counts data blocks).
	Hash  bool
	Block uint64
	// Level is the tree level of a hash block (0 = leaf); Levels the
	// number of levels.
	Level, Levels int
	// Root is true when the block was checked against the root hash.
	Root bool
}

func (e *CorruptError) Error() string {
	what := fmt.Sprintf("data block %d", e.Block)
	if e.Hash {
		what = fmt.Sprintf("hash block %d (tree level %d of %d, 0 = leaf)", e.Block, e.Level, e.Levels)
	}
	if e.Root {
		return what + " is corrupt: it does not match the root hash"
	}
	return what + " is corrupt: it does not match its hash in the tree"
}

// Verify recomputes the hash tree of data and checks it against the tree
// in hash and against rootHash, top down, so the error (a *CorruptError)
// names the first block that is wrong: a hash block whose digest is not the
// one in its parent (or not the root hash), or a data block.
//
// Unless p.NoSuperblock, the superblock at p.HashOffset is read and must
// agree with p; p.DataBlocks, p.Salt (when nil) and p.UUID (when zero) are
// then taken from it. Without a superblock p must be complete.
func Verify(data io.ReaderAt, hash io.ReaderAt, rootHash []byte, p Params) error {
	if err := verify(data, hash, rootHash, p); err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	return nil
}

func verify(data io.ReaderAt, hash io.ReaderAt, rootHash []byte, p Params) error {
	if !p.NoSuperblock {
		sb, err := readSuperblock(hash, int64(p.HashOffset))
		if err != nil {
			return err
		}
		if err := checkAgainst(sb, &p); err != nil {
			return err
		}
	}
	if p.DataBlocks == 0 {
		return errors.New("the number of data blocks is needed without a superblock")
	}
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		return err
	}
	if len(rootHash) != g.digestSize {
		return fmt.Errorf("root hash is %d bytes, a %s digest is %d", len(rootHash), p.HashAlgorithm, g.digestSize)
	}
	dbs, hbs := uint64(p.DataBlockSize), uint64(p.HashBlockSize)
	if err := checkSize(data, g.dataBlocks*dbs, "data"); err != nil {
		return err
	}
	if err := checkSize(hash, g.end*hbs, "hash device"); err != nil {
		return err
	}
	h := g.hasher(&p)
	if g.levels == 0 {
		block := make([]byte, dbs)
		if err := readerAtSource(data, dbs)(0, block); err != nil {
			return err
		}
		if !bytes.Equal(h.sum(nil, block), rootHash) {
			return &CorruptError{Block: 0, Root: true}
		}
		return nil
	}

	// The top block against the root hash.
	top := g.levels - 1
	block := make([]byte, hbs)
	readHash := readerAtSource(hash, hbs)
	if err := readHash(g.levelStart[top], block); err != nil {
		return err
	}
	if !bytes.Equal(h.sum(nil, block), rootHash) {
		return &CorruptError{Hash: true, Block: g.levelStart[top], Level: top, Levels: g.levels, Root: true}
	}
	// Each lower level against its (already verified) parent level.
	parent := newLevelReader(g, readHash, hbs)
	var d []byte
	for lvl := top - 1; lvl >= 0; lvl-- {
		for j := uint64(0); j < g.levelSize[lvl]; j++ {
			want, err := parent.digest(lvl+1, j)
			if err != nil {
				return err
			}
			if err := readHash(g.levelStart[lvl]+j, block); err != nil {
				return err
			}
			d = h.sum(d[:0], block)
			if !bytes.Equal(d, want) {
				return &CorruptError{Hash: true, Block: g.levelStart[lvl] + j, Level: lvl, Levels: g.levels}
			}
		}
	}
	// The data blocks against the leaf level, hashed on all cores.
	leaf := newLevelReader(g, readHash, hbs)
	return hashData(readerAtSource(data, dbs), true, newMmapper(data), g.dataBlocks, dbs, g, &p, func(first uint64, ds []byte) error {
		for i := 0; i < len(ds); i += g.digestSize {
			n := first + uint64(i/g.digestSize)
			want, err := leaf.digest(0, n)
			if err != nil {
				return err
			}
			if !bytes.Equal(ds[i:i+g.digestSize], want) {
				return &CorruptError{Block: n}
			}
		}
		return nil
	})
}

// levelReader reads the digest of entry n of a level, caching one block.
type levelReader struct {
	g      *geometry
	read   blockSource
	block  []byte
	cached uint64 // absolute hash block in block, or ^0
}

func newLevelReader(g *geometry, read blockSource, hbs uint64) *levelReader {
	return &levelReader{g: g, read: read, block: make([]byte, hbs), cached: ^uint64(0)}
}

func (r *levelReader) digest(level int, n uint64) ([]byte, error) {
	per := uint64(r.g.hashPerBlock)
	blk := r.g.levelStart[level] + n/per
	if blk != r.cached {
		if err := r.read(blk, r.block); err != nil {
			return nil, err
		}
		r.cached = blk
	}
	off := int(n%per) * r.g.stride
	return r.block[off : off+r.g.digestSize], nil
}

// checkSize checks that r has at least size bytes.
func checkSize(r io.ReaderAt, size uint64, what string) error {
	var b [1]byte
	if n, err := r.ReadAt(b[:], int64(size-1)); n != 1 {
		if err == nil || err == io.EOF {
			return fmt.Errorf("%s is too small: it must be at least %d bytes", what, size)
		}
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return nil
}

// checkAgainst checks that the superblock agrees with p and fills in
// what p leaves open (DataBlocks 0, Salt nil, UUID zero).
func checkAgainst(sb *Superblock, p *Params) error {
	mismatch := func(what string, sbv, pv any) error {
		return fmt.Errorf("superblock at offset %d says %s %v, expected %v", p.HashOffset, what, sbv, pv)
	}
	switch {
	case sb.HashAlgorithm != p.HashAlgorithm:
		return mismatch("hash algorithm", sb.HashAlgorithm, p.HashAlgorithm)
	case sb.HashType != p.HashType:
		return mismatch("hash format", sb.HashType, p.HashType)
	case sb.DataBlockSize != p.DataBlockSize:
		return mismatch("data block size", sb.DataBlockSize, p.DataBlockSize)
	case sb.HashBlockSize != p.HashBlockSize:
		return mismatch("hash block size", sb.HashBlockSize, p.HashBlockSize)
	case p.DataBlocks != 0 && sb.DataBlocks != p.DataBlocks:
		return mismatch("data blocks", sb.DataBlocks, p.DataBlocks)
	case p.Salt != nil && !bytes.Equal(sb.Salt, p.Salt):
		return mismatch("salt", SaltHex(sb.Salt), SaltHex(p.Salt))
	case p.UUID != [16]byte{} && sb.UUID != p.UUID:
		return mismatch("UUID", FormatUUID(sb.UUID), FormatUUID(p.UUID))
	}
	p.DataBlocks = sb.DataBlocks
	p.Salt = sb.Salt
	p.UUID = sb.UUID
	return nil
}

// ParseRootHash reads a root hash in hex.
func ParseRootHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("root hash %q is not hex", s)
	}
	return b, nil
}
