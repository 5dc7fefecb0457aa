package verity

import "fmt"

// FormatError reports a hash device or data device that does not fit the
// verity format or the parameters: a malformed superblock (bad magic,
// version, block size, salt size, algorithm, a data block count that
// overflows), a superblock that disagrees with what the caller expects, a
// device too small for the tree or the data blocks it declares, a data
// area that overlaps the hash area of the same file.
type FormatError struct {
	// Offset is the byte offset in the hash device of what is wrong (the
	// superblock, or the end the tree needs), or -1 when the error
	// concerns the data device.
	Offset int64
	// Msg says what is wrong, where.
	Msg string
}

func (e *FormatError) Error() string { return e.Msg }

func superblockError(offset int64, format string, args ...any) *FormatError {
	return &FormatError{Offset: offset, Msg: fmt.Sprintf("superblock at offset %d: ", offset) + fmt.Sprintf(format, args...)}
}

// CorruptError reports the first block that does not match its hash, or a
// hash block whose spare area (the padding after each digest and the bytes
// after the last digest of a level) is not zero.
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
	// Spare is true when the block's spare area is not zero; Offset is
	// then the byte offset in the hash device of the first byte that is
	// not.
	Spare  bool
	Offset uint64
}

func (e *CorruptError) Error() string {
	what := fmt.Sprintf("data block %d", e.Block)
	if e.Hash {
		what = fmt.Sprintf("hash block %d (tree level %d of %d, 0 = leaf)", e.Block, e.Level, e.Levels)
	}
	switch {
	case e.Spare:
		return fmt.Sprintf("%s is corrupt: its spare area is not zero at byte %d of the hash device", what, e.Offset)
	case e.Root:
		return what + " is corrupt: it does not match the root hash"
	}
	return what + " is corrupt: it does not match its hash in the tree"
}
