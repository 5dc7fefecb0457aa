package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// VerifyOptions say where the tree is and what it must be.
type VerifyOptions struct {
	// Params locate and describe the tree; Params.HashOffset is the byte
	// offset of the hash area (superblock, then tree) in the hash device.
	//
	// With Params.NoSuperblock the tree is described by Params alone;
	// Params.DataBlocks 0 then means all of the data, whose size must be
	// a multiple of the data block size.
	//
	// Otherwise the superblock at HashOffset describes the tree, and each
	// field of Params that is set must agree with it: HashAlgorithm (when
	// not ""), DataBlockSize, HashBlockSize and DataBlocks (when not 0),
	// Salt (when not nil), UUID (when not zero), and HashType when
	// CheckHashType is set. A zero Params takes everything from the
	// superblock at offset 0.
	Params Params
	// CheckHashType makes Params.HashType part of what the superblock must
	// agree with (it has no unset value: 0 is the Chrome OS format).
	CheckHashType bool
}

// Verify checks the first data blocks of data (dataSize bytes) against the
// tree in hash and against rootHash, as `veritysetup verify` does, and
// returns the tree it checked.
//
// The tree is checked top down, so the error names the first block that is
// wrong: a *CorruptError for a hash block whose digest is not the one in
// its parent (or not the root hash), a hash block whose spare area is not
// zero (the padding after each digest and the bytes after the last digest
// of each level, which veritysetup also requires to be zero: it is how a
// superblock that declares fewer data blocks than the tree covers is
// found), or a data block. A *FormatError reports a superblock that is
// malformed or disagrees with opts, a hash device too small for the tree,
// data too small for the data blocks, or, when data and hash are the same
// *os.File, a data area that overlaps the hash area.
//
// The data blocks are hashed on all cores. Cancelling ctx stops the work
// within a chunk and returns ctx.Err().
func Verify(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.ReaderAt, rootHash []byte, opts VerifyOptions) (*Result, error) {
	r, err := verify(ctx, data, dataSize, hash, rootHash, &opts)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return r, nil
}

// Resolve returns the parameters Verify would check the tree with: those
// of opts.Params without a superblock (DataBlocks worked out from dataSize
// when 0), else those of the superblock at opts.Params.HashOffset of hash,
// after checking that they agree with opts. Errors are as Verify's.
func Resolve(hash io.ReaderAt, dataSize int64, opts VerifyOptions) (Params, error) {
	p, err := resolve(hash, dataSize, &opts)
	if err != nil {
		return Params{}, fmt.Errorf("verity: %w", err)
	}
	return p, nil
}

func resolve(hash io.ReaderAt, dataSize int64, opts *VerifyOptions) (Params, error) {
	p := opts.Params
	if p.NoSuperblock {
		if err := p.Validate(); err != nil {
			return Params{}, err
		}
		if p.DataBlocks == 0 {
			bs := int64(p.DataBlockSize)
			if dataSize <= 0 || dataSize%bs != 0 {
				return Params{}, &FormatError{Offset: -1, Msg: fmt.Sprintf("data size %d is not a positive multiple of the data block size %d (without a superblock, give the number of data blocks)", dataSize, bs)}
			}
			p.DataBlocks = uint64(dataSize / bs)
		}
		p.Salt = append([]byte{}, p.Salt...)
		return p, nil
	}
	sb, err := readSuperblock(hash, int64(p.HashOffset))
	if err != nil {
		return Params{}, err
	}
	return checkAgainst(sb, opts)
}

func verify(ctx context.Context, data io.ReaderAt, dataSize int64, hash io.ReaderAt, rootHash []byte, opts *VerifyOptions) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := resolve(hash, dataSize, opts)
	if err != nil {
		return nil, err
	}
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		return nil, err
	}
	if len(rootHash) != g.digestSize {
		return nil, fmt.Errorf("root hash is %d bytes, a %s digest is %d", len(rootHash), p.HashAlgorithm, g.digestSize)
	}
	dbs, hbs := uint64(p.DataBlockSize), uint64(p.HashBlockSize)
	dataEnd := g.dataBlocks * dbs
	if dataSize < 0 || uint64(dataSize) < dataEnd {
		return nil, &FormatError{Offset: -1, Msg: fmt.Sprintf("data is too small: %d blocks of %d bytes need %d bytes, it has %d", g.dataBlocks, dbs, dataEnd, dataSize)}
	}
	if sameFile(data, hash) && dataEnd > p.HashOffset {
		return nil, &FormatError{Offset: int64(p.HashOffset), Msg: fmt.Sprintf("data area (%d blocks of %d bytes) overlaps the hash area at offset %d of the same file", g.dataBlocks, dbs, p.HashOffset)}
	}
	if err := checkSize(hash, g.end*hbs); err != nil {
		return nil, err
	}
	if err := checkTree(ctx, data, hash, rootHash, g, &p); err != nil {
		return nil, err
	}
	r := g.result(&p)
	r.RootHash = append([]byte(nil), rootHash...)
	return r, nil
}

// checkTree checks the tree top down, then the data blocks.
func checkTree(ctx context.Context, data io.ReaderAt, hash io.ReaderAt, rootHash []byte, g *geometry, p *Params) error {
	dbs, hbs := uint64(p.DataBlockSize), uint64(p.HashBlockSize)
	h := g.hasher(p)
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
	if err := g.checkSpare(top, 0, block, hbs); err != nil {
		return err
	}
	// Each lower level against its (already verified) parent level.
	parent := newLevelReader(g, readHash, hbs)
	var d []byte
	for lvl := top - 1; lvl >= 0; lvl-- {
		for j := uint64(0); j < g.levelSize[lvl]; j++ {
			if j%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
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
			if err := g.checkSpare(lvl, j, block, hbs); err != nil {
				return err
			}
		}
	}
	// The data blocks against the leaf level, hashed on all cores.
	leaf := newLevelReader(g, readHash, hbs)
	return hashData(ctx, readerAtSource(data, dbs), true, newMmapper(data), g.dataBlocks, dbs, g, p, func(first uint64, ds []byte) error {
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

// checkSpare checks that block j of level lvl is zero outside its digests:
// the padding of each digest to the stride (format 1) and everything after
// the last digest the level holds in it.
func (g *geometry) checkSpare(lvl int, j uint64, block []byte, hbs uint64) error {
	entries := g.dataBlocks
	if lvl > 0 {
		entries = g.levelSize[lvl-1]
	}
	per := uint64(g.hashPerBlock)
	used := min(entries-j*per, per)
	bad := -1
	if g.stride > g.digestSize {
		for i := uint64(0); i < used && bad < 0; i++ {
			off := int(i)*g.stride + g.digestSize
			if k := firstNonZero(block[off : int(i+1)*g.stride]); k >= 0 {
				bad = off + k
			}
		}
	}
	if bad < 0 {
		off := int(used) * g.stride
		if k := firstNonZero(block[off:]); k >= 0 {
			bad = off + k
		}
	}
	if bad < 0 {
		return nil
	}
	abs := g.levelStart[lvl] + j
	return &CorruptError{Hash: true, Block: abs, Level: lvl, Levels: g.levels, Spare: true, Offset: abs*hbs + uint64(bad)}
}

func firstNonZero(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return i
		}
	}
	return -1
}

// sameFile says whether data and hash are one file (then the data area
// must end before the hash area).
func sameFile(data, hash io.ReaderAt) bool {
	a, ok1 := data.(*os.File)
	b, ok2 := hash.(*os.File)
	if !ok1 || !ok2 {
		return false
	}
	if a == b {
		return true
	}
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
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

// checkSize checks that the hash device has at least size bytes.
func checkSize(r io.ReaderAt, size uint64) error {
	var b [1]byte
	if n, err := r.ReadAt(b[:], int64(size-1)); n != 1 {
		if err == nil || err == io.EOF {
			return &FormatError{Offset: int64(size), Msg: fmt.Sprintf("hash device is too small: it must be at least %d bytes", size)}
		}
		return fmt.Errorf("reading hash device: %w", err)
	}
	return nil
}

// checkAgainst checks that the superblock agrees with what opts set and
// returns the superblock's parameters.
func checkAgainst(sb *Superblock, opts *VerifyOptions) (Params, error) {
	p := &opts.Params
	mismatch := func(what string, sbv, pv any) error {
		return &FormatError{Offset: int64(p.HashOffset), Msg: fmt.Sprintf("superblock at offset %d says %s %v, expected %v", p.HashOffset, what, sbv, pv)}
	}
	switch {
	case p.HashAlgorithm != "" && sb.HashAlgorithm != p.HashAlgorithm:
		return Params{}, mismatch("hash algorithm", sb.HashAlgorithm, p.HashAlgorithm)
	case opts.CheckHashType && sb.HashType != p.HashType:
		return Params{}, mismatch("hash format", sb.HashType, p.HashType)
	case p.DataBlockSize != 0 && sb.DataBlockSize != p.DataBlockSize:
		return Params{}, mismatch("data block size", sb.DataBlockSize, p.DataBlockSize)
	case p.HashBlockSize != 0 && sb.HashBlockSize != p.HashBlockSize:
		return Params{}, mismatch("hash block size", sb.HashBlockSize, p.HashBlockSize)
	case p.DataBlocks != 0 && sb.DataBlocks != p.DataBlocks:
		return Params{}, mismatch("data blocks", sb.DataBlocks, p.DataBlocks)
	case p.Salt != nil && !bytes.Equal(sb.Salt, p.Salt):
		return Params{}, mismatch("salt", SaltHex(sb.Salt), SaltHex(p.Salt))
	case p.UUID != [16]byte{} && sb.UUID != p.UUID:
		return Params{}, mismatch("UUID", FormatUUID(sb.UUID), FormatUUID(p.UUID))
	}
	return sb.Params(p.HashOffset), nil
}

// ParseRootHash reads a root hash in hex.
func ParseRootHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("root hash %q is not hex", s)
	}
	return b, nil
}

// Dump reads the superblock at hashOffset of hash and returns the layout of
// the tree it describes, as `veritysetup dump` shows it: everything of the
// Result but the root hash. The tree itself is not read.
func Dump(hash io.ReaderAt, hashOffset uint64) (*Result, error) {
	sb, err := readSuperblock(hash, int64(hashOffset))
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return Plan(sb.Params(hashOffset))
}
