package verity

import (
	"bytes"
	"encoding/binary"
	"errors"
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

// ParseSuperblock decodes and checks a 512-byte superblock.
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("superblock is %d bytes, want %d", len(b), SuperblockSize)
	}
	var r rawSuperblock
	if err := binary.Read(bytes.NewReader(b[:SuperblockSize]), binary.LittleEndian, &r); err != nil {
		return nil, err
	}
	if string(r.Signature[:]) != Signature {
		return nil, fmt.Errorf("bad magic %q, not a verity superblock", bytes.TrimRight(r.Signature[:], "\x00"))
	}
	if r.Version != 1 {
		return nil, fmt.Errorf("unsupported superblock version %d (want 1)", r.Version)
	}
	alg, _, found := bytes.Cut(r.Algorithm[:], []byte{0})
	if !found {
		return nil, errors.New("hash algorithm name is not terminated")
	}
	if int(r.SaltSize) > MaxSaltSize {
		return nil, fmt.Errorf("salt size %d is more than %d", r.SaltSize, MaxSaltSize)
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
		return nil, err
	}
	return sb, nil
}

// ReadSuperblock reads and checks the superblock at offset in r.
func ReadSuperblock(r io.ReaderAt, offset int64) (*Superblock, error) {
	sb, err := readSuperblock(r, offset)
	if err != nil {
		return nil, fmt.Errorf("verity: %w", err)
	}
	return sb, nil
}

func readSuperblock(r io.ReaderAt, offset int64) (*Superblock, error) {
	b := make([]byte, SuperblockSize)
	n, err := r.ReadAt(b, offset)
	if n < SuperblockSize {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("only %d bytes there", n)
		}
		return nil, fmt.Errorf("reading superblock at offset %d: %w", offset, err)
	}
	sb, err := ParseSuperblock(b)
	if err != nil {
		return nil, fmt.Errorf("superblock at offset %d: %w", offset, err)
	}
	return sb, nil
}
