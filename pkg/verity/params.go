// Package verity builds and checks dm-verity hash trees, byte for byte as
// `veritysetup format` (cryptsetup 2.6) writes them: hash format version 1
// (normal) and 0 (Chrome OS), sha1/sha256/sha512, data and hash block sizes
// from 512 to 65536 bytes, salts of up to 256 bytes, with or without the
// 512-byte version 1 superblock, at any 512-byte aligned hash offset
// (including right after the data, when data and hash share one file).
//
// Format streams the data once, hashing the data blocks on all cores, and
// writes the tree through an io.WriterAt; memory use does not depend on the
// data size. Verify recomputes a tree and names the first corrupt block.
// The Result carries the forms a boot needs: the device-mapper table, the
// dm-mod.create= kernel parameter and systemd's roothash= parameters.
//
// Tree layout (as cryptsetup's lib/verity/verity_hash.c): the superblock,
// if any, sits at HashOffset; the tree starts at the first hash block
// boundary after it (hash start block), with the top level first and the
// leaf level (the digests of the data blocks) last. A hash block holds
// 2^floor(log2(HashBlockSize/digest)) digests; in format 1 each digest is
// padded with zeros to a power of two and the salt is hashed before the
// block, in format 0 digests are packed and the salt is hashed after it.
// The root hash is the digest of the single top-level block (or of the only
// data block, when there is just one).
package verity

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"math/bits"
)

// Limits of the parameters, as veritysetup enforces them.
const (
	MinBlockSize = 512
	MaxBlockSize = 65536
	MaxSaltSize  = 256
	// SuperblockSize is the size of the version 1 superblock.
	SuperblockSize = 512
	// maxLevels is VERITY_MAX_LEVELS of cryptsetup.
	maxLevels = 63
)

// Params are the parameters of a hash tree, named as veritysetup names them.
type Params struct {
	// HashAlgorithm is "sha256" (the default), "sha1" or "sha512".
	HashAlgorithm string
	// HashType is the hash format version: 1 normal (default), 0 Chrome OS.
	HashType uint32
	// DataBlockSize and HashBlockSize are powers of two in 512..65536.
	DataBlockSize uint32
	HashBlockSize uint32
	// DataBlocks is the number of data blocks to hash; 0 means all of the
	// data, whose size must then be a multiple of DataBlockSize.
	DataBlocks uint64
	// Salt is 0..256 bytes; nil and empty are the same (no salt).
	Salt []byte
	// UUID goes into the superblock.
	UUID [16]byte
	// NoSuperblock leaves out the superblock (veritysetup --no-superblock).
	NoSuperblock bool
	// HashOffset is the byte offset of the hash area (superblock, then
	// tree) in the hash device; a multiple of 512.
	HashOffset uint64
}

// DefaultParams returns veritysetup's defaults: sha256, format 1, 4096-byte
// data and hash blocks, a superblock at offset 0, no salt and a zero UUID
// (set Salt and UUID, for example from SaltFromSeed and UUIDFromSeed).
func DefaultParams() Params {
	return Params{
		HashAlgorithm: "sha256",
		HashType:      1,
		DataBlockSize: 4096,
		HashBlockSize: 4096,
	}
}

// newHash returns the constructor and digest size of a hash algorithm.
func newHash(name string) (func() hash.Hash, int, error) {
	switch name {
	case "sha1":
		return sha1.New, sha1.Size, nil
	case "sha256":
		return sha256.New, sha256.Size, nil
	case "sha512":
		return sha512.New, sha512.Size, nil
	}
	return nil, 0, fmt.Errorf("unknown hash algorithm %q (want sha1, sha256 or sha512)", name)
}

func checkBlockSize(what string, n uint32) error {
	if n < MinBlockSize || n > MaxBlockSize || n&(n-1) != 0 {
		return fmt.Errorf("%s %d is not a power of two from %d to %d", what, n, MinBlockSize, MaxBlockSize)
	}
	return nil
}

// Validate checks the parameters on their own (not against any data).
func (p *Params) Validate() error {
	if _, _, err := newHash(p.HashAlgorithm); err != nil {
		return err
	}
	if p.HashType > 1 {
		return fmt.Errorf("hash format %d is not 0 (Chrome OS) or 1 (normal)", p.HashType)
	}
	if err := checkBlockSize("data block size", p.DataBlockSize); err != nil {
		return err
	}
	if err := checkBlockSize("hash block size", p.HashBlockSize); err != nil {
		return err
	}
	if len(p.Salt) > MaxSaltSize {
		return fmt.Errorf("salt is %d bytes, at most %d allowed", len(p.Salt), MaxSaltSize)
	}
	if p.HashOffset%512 != 0 {
		return fmt.Errorf("hash offset %d is not a multiple of 512", p.HashOffset)
	}
	if p.NoSuperblock && p.HashOffset%uint64(p.HashBlockSize) != 0 {
		return fmt.Errorf("hash offset %d is not a multiple of the hash block size %d (required without a superblock)", p.HashOffset, p.HashBlockSize)
	}
	return nil
}

// geometry is the layout of a tree, computed as cryptsetup's hash_levels.
type geometry struct {
	newHash      func() hash.Hash
	digestSize   int
	stride       int // bytes per digest in a hash block
	hashPerBlock int
	dataBlocks   uint64
	hashStart    uint64   // first tree block, in hash blocks
	levels       int      // 0 when there is only one data block
	levelStart   []uint64 // per level (0 = leaf), in hash blocks
	levelSize    []uint64 // per level, in hash blocks
	end          uint64   // hash block after the tree
}

var errNoBlocks = errors.New("no data blocks to hash")

func newGeometry(p *Params, dataBlocks uint64) (*geometry, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if dataBlocks == 0 {
		return nil, errNoBlocks
	}
	if dataBlocks > (1<<63-1)/uint64(p.DataBlockSize) {
		return nil, fmt.Errorf("%d data blocks of %d bytes overflow a 64-bit size", dataBlocks, p.DataBlockSize)
	}
	nh, ds, _ := newHash(p.HashAlgorithm)
	g := &geometry{newHash: nh, digestSize: ds, dataBlocks: dataBlocks}
	g.stride = ds
	if p.HashType == 1 {
		g.stride = 1 << bits.Len(uint(ds-1))
	}
	hbs := uint64(p.HashBlockSize)
	perBits := bits.Len64(hbs/uint64(ds)) - 1
	if perBits < 1 {
		return nil, fmt.Errorf("hash block size %d is too small for %s", hbs, p.HashAlgorithm)
	}
	g.hashPerBlock = 1 << perBits
	// VERITY_hash_offset_block
	off := p.HashOffset
	if !p.NoSuperblock {
		off += SuperblockSize + hbs - 1
	}
	g.hashStart = off / hbs
	for perBits*g.levels < 64 && (dataBlocks-1)>>(perBits*g.levels) != 0 {
		g.levels++
	}
	if g.levels > maxLevels {
		return nil, errors.New("hash tree has too many levels")
	}
	g.levelStart = make([]uint64, g.levels)
	g.levelSize = make([]uint64, g.levels)
	pos := g.hashStart
	for i := g.levels - 1; i >= 0; i-- {
		g.levelStart[i] = pos
		shift := (i + 1) * perBits
		var s uint64
		if shift > 63 {
			s = 1
		} else {
			s = (dataBlocks + (1 << shift) - 1) >> shift
		}
		g.levelSize[i] = s
		if pos+s < pos {
			return nil, errors.New("hash area overflow")
		}
		pos += s
	}
	g.end = pos
	if g.end > (1<<63)/hbs {
		return nil, errors.New("hash area overflow")
	}
	return g, nil
}

// hashBlocks is the number of tree blocks.
func (g *geometry) hashBlocks() uint64 { return g.end - g.hashStart }

// blockHasher hashes blocks with the salt as the hash format wants it.
type blockHasher struct {
	h      hash.Hash
	salt   []byte
	format uint32
}

func (g *geometry) hasher(p *Params) *blockHasher {
	return &blockHasher{h: g.newHash(), salt: p.Salt, format: p.HashType}
}

// sum appends the digest of block to dst.
func (b *blockHasher) sum(dst, block []byte) []byte {
	b.h.Reset()
	if b.format == 1 {
		b.h.Write(b.salt)
	}
	b.h.Write(block)
	if b.format == 0 {
		b.h.Write(b.salt)
	}
	return b.h.Sum(dst)
}
