package verity

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Signature is the magic at the start of a verity superblock.
const Signature = "verity\x00\x00"

// rawSuperblock is the on-disk version 1 superblock (struct verity_sb of
// cryptsetup), little-endian, 512 bytes.
type rawSuperblock struct {
	Signature     [8]byte
	Version       uint32
	HashType      uint32
	UUID          [16]byte
	Algorithm     [32]byte
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	SaltSize      uint16
	Pad1          [6]byte
	Salt          [256]byte
	Pad2          [168]byte
}

// Superblock is a decoded verity superblock.
type Superblock struct {
	Version       uint32
	HashType      uint32
	UUID          [16]byte
	HashAlgorithm string
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
}

// SuperblockFromParams is the superblock veritysetup writes for p.
func SuperblockFromParams(p *Params) *Superblock {
	return &Superblock{
		Version:       1,
		HashType:      p.HashType,
		UUID:          p.UUID,
		HashAlgorithm: p.HashAlgorithm,
		DataBlockSize: p.DataBlockSize,
		HashBlockSize: p.HashBlockSize,
		DataBlocks:    p.DataBlocks,
		Salt:          append([]byte(nil), p.Salt...),
	}
}

// Marshal encodes the superblock in its 512-byte on-disk form.
func (sb *Superblock) Marshal() []byte {
	var r rawSuperblock
	copy(r.Signature[:], Signature)
	r.Version = sb.Version
	r.HashType = sb.HashType
	r.UUID = sb.UUID
	copy(r.Algorithm[:len(r.Algorithm)-1], sb.HashAlgorithm)
	r.DataBlockSize = sb.DataBlockSize
	r.HashBlockSize = sb.HashBlockSize
	r.DataBlocks = sb.DataBlocks
	r.SaltSize = uint16(len(sb.Salt))
	copy(r.Salt[:], sb.Salt)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, &r)
	return b.Bytes()
}

// Params returns the tree parameters the superblock describes, for a hash
// area at hashOffset.
func (sb *Superblock) Params(hashOffset uint64) Params {
	return Params{
		HashAlgorithm: sb.HashAlgorithm,
		HashType:      sb.HashType,
		DataBlockSize: sb.DataBlockSize,
		HashBlockSize: sb.HashBlockSize,
		DataBlocks:    sb.DataBlocks,
		Salt:          append([]byte(nil), sb.Salt...),
		UUID:          sb.UUID,
		HashOffset:    hashOffset,
	}
}

// ParseSuperblock decodes and checks a 512-byte superblock: the magic, the
// version, and that its parameters describe a tree (a known hash
// algorithm, block sizes, salt size, a data block count that fits 64 bits).
// Errors are *FormatError.
func ParseSuperblock(b []byte) (*Superblock, error) {
	sb, err := parseSuperblock(b, 0)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return sb, nil
}

// parseSuperblock is ParseSuperblock for a superblock read at offset of
// the hash device (for the errors).
func parseSuperblock(b []byte, offset int64) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, superblockError(offset, "only %d bytes there, want %d", len(b), SuperblockSize)
	}
	var r rawSuperblock
	if err := binary.Read(bytes.NewReader(b[:SuperblockSize]), binary.LittleEndian, &r); err != nil {
		return nil, superblockError(offset, "%v", err)
	}
	if string(r.Signature[:]) != Signature {
		return nil, superblockError(offset, "bad magic %q, not a verity superblock", bytes.TrimRight(r.Signature[:], "\x00"))
	}
	if r.Version != 1 {
		return nil, superblockError(offset, "unsupported superblock version %d (want 1)", r.Version)
	}
	alg, _, found := bytes.Cut(r.Algorithm[:], []byte{0})
	if !found {
		return nil, superblockError(offset, "hash algorithm name is not terminated")
	}
	if int(r.SaltSize) > MaxSaltSize {
		return nil, superblockError(offset, "salt size %d is more than %d", r.SaltSize, MaxSaltSize)
	}
	sb := &Superblock{
		Version:       r.Version,
		HashType:      r.HashType,
		UUID:          r.UUID,
		HashAlgorithm: string(alg),
		DataBlockSize: r.DataBlockSize,
		HashBlockSize: r.HashBlockSize,
		DataBlocks:    r.DataBlocks,
		Salt:          append([]byte{}, r.Salt[:r.SaltSize]...),
	}
	p := sb.Params(0)
	if _, err := newGeometry(&p, sb.DataBlocks); err != nil {
		return nil, superblockError(offset, "%v", err)
	}
	return sb, nil
}

// ReadSuperblock reads and checks the superblock at offset in r. Errors
// are *FormatError, or the read error.
func ReadSuperblock(r io.ReaderAt, offset int64) (*Superblock, error) {
	sb, err := readSuperblock(r, offset)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return sb, nil
}

func readSuperblock(r io.ReaderAt, offset int64) (*Superblock, error) {
	if offset < 0 {
		return nil, fmt.Errorf("superblock offset %d is negative", offset)
	}
	b := make([]byte, SuperblockSize)
	n, err := r.ReadAt(b, offset)
	if n < SuperblockSize {
		if err == nil || err == io.EOF {
			return nil, superblockError(offset, "only %d bytes there, want %d", n, SuperblockSize)
		}
		return nil, fmt.Errorf("reading superblock at offset %d: %w", offset, err)
	}
	return parseSuperblock(b, offset)
}
