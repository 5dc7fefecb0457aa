package verity

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Result describes a hash tree: what Format wrote, what Verify checked, or
// (without RootHash) what Dump and Plan describe.
//
// Its JSON form (MarshalJSON) is the one `imagebuilder verity --json`
// prints: snake_case keys, the root hash and salt in hex (the salt "-" when
// empty, as veritysetup shows it), the UUID only with a superblock, and
// the derived hash_device_size, table (when DataDevice and HashDevice are
// set) and systemd_cmdline (when there is a root hash).
type Result struct {
	// RootHash is the digest of the top hash block; nil in the results
	// of Plan and Dump.
	RootHash []byte
	// Salt is the salt used (a copy of Params.Salt).
	Salt []byte
	// DataBlocks is the number of data blocks covered.
	DataBlocks uint64
	// HashStartBlock is the first tree block in the hash device, in hash
	// blocks: the <hash_start> of the device-mapper table.
	HashStartBlock uint64
	// HashBlocks is the number of tree blocks (without the superblock).
	HashBlocks uint64
	// Levels is the number of tree levels (0 for a single data block).
	Levels int
	// HashAreaSize is the number of bytes of the hash device from
	// HashOffset to the end of the tree (superblock and tree); the hash
	// device must be at least HashOffset+HashAreaSize bytes.
	HashAreaSize int64
	// Params are the parameters used, with DataBlocks filled in.
	Params Params
	// DataDevice and HashDevice name the devices in the JSON form's
	// device-mapper table (the library never sets them; the CLI sets the
	// file names it was given). The table is left out while either is
	// empty.
	DataDevice, HashDevice string
}

// RootHashHex is the root hash in lowercase hex.
func (r *Result) RootHashHex() string { return hex.EncodeToString(r.RootHash) }

// HashDeviceSize is the size veritysetup gives a hash device it formats:
// HashOffset+HashAreaSize.
func (r *Result) HashDeviceSize() int64 { return int64(r.Params.HashOffset) + r.HashAreaSize }

// resultJSON is the JSON form of a Result.
type resultJSON struct {
	RootHash       string `json:"root_hash,omitempty"`
	HashAlgorithm  string `json:"hash_algorithm"`
	HashType       uint32 `json:"hash_type"`
	DataBlockSize  uint32 `json:"data_block_size"`
	HashBlockSize  uint32 `json:"hash_block_size"`
	DataBlocks     uint64 `json:"data_blocks"`
	Salt           string `json:"salt"`
	UUID           string `json:"uuid,omitempty"`
	Superblock     bool   `json:"superblock"`
	HashOffset     uint64 `json:"hash_offset"`
	HashStartBlock uint64 `json:"hash_start_block"`
	HashBlocks     uint64 `json:"hash_blocks"`
	Levels         int    `json:"levels"`
	HashAreaSize   int64  `json:"hash_area_size"`
	HashDeviceSize int64  `json:"hash_device_size"`
	DataDevice     string `json:"data_device,omitempty"`
	HashDevice     string `json:"hash_device,omitempty"`
	Table          string `json:"table,omitempty"`
	SystemdCmdline string `json:"systemd_cmdline,omitempty"`
}

// MarshalJSON writes the JSON form described at Result.
func (r *Result) MarshalJSON() ([]byte, error) {
	p := &r.Params
	j := resultJSON{
		HashAlgorithm: p.HashAlgorithm, HashType: p.HashType,
		DataBlockSize: p.DataBlockSize, HashBlockSize: p.HashBlockSize, DataBlocks: r.DataBlocks,
		Salt: SaltHex(r.Salt), Superblock: !p.NoSuperblock, HashOffset: p.HashOffset,
		HashStartBlock: r.HashStartBlock, HashBlocks: r.HashBlocks, Levels: r.Levels,
		HashAreaSize: r.HashAreaSize, HashDeviceSize: r.HashDeviceSize(),
		DataDevice: r.DataDevice, HashDevice: r.HashDevice,
	}
	if !p.NoSuperblock {
		j.UUID = FormatUUID(p.UUID)
	}
	if len(r.RootHash) > 0 {
		j.RootHash = r.RootHashHex()
		j.SystemdCmdline = r.SystemdCmdline()
		if r.DataDevice != "" && r.HashDevice != "" {
			j.Table = r.Table(r.DataDevice, r.HashDevice)
		}
	}
	// No HTML escaping: device names may hold '&' or '<'.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the JSON form back; the derived fields
// (hash_device_size, table, systemd_cmdline) are ignored.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	res := Result{
		DataBlocks: j.DataBlocks, HashStartBlock: j.HashStartBlock, HashBlocks: j.HashBlocks,
		Levels: j.Levels, HashAreaSize: j.HashAreaSize, DataDevice: j.DataDevice, HashDevice: j.HashDevice,
		Params: Params{
			HashAlgorithm: j.HashAlgorithm, HashType: j.HashType,
			DataBlockSize: j.DataBlockSize, HashBlockSize: j.HashBlockSize, DataBlocks: j.DataBlocks,
			NoSuperblock: !j.Superblock, HashOffset: j.HashOffset,
		},
	}
	if j.RootHash != "" {
		if res.RootHash, err = ParseRootHash(j.RootHash); err != nil {
			return fmt.Errorf("verity: result: %w", err)
		}
	}
	if res.Salt, err = ParseSalt(j.Salt); err != nil {
		return fmt.Errorf("verity: result: %w", err)
	}
	res.Params.Salt = res.Salt
	if j.UUID != "" {
		if res.Params.UUID, err = ParseUUID(j.UUID); err != nil {
			return fmt.Errorf("verity: result: %w", err)
		}
	}
	*r = res
	return nil
}

// LeafLevel is the byte range [start, end) of the tree's leaf level in
// the hash device: the level that holds the digest of each data block,
// stored last (the top level comes first). A tree of one data block has
// no levels: start and end are then both the end of the tree.
func (r *Result) LeafLevel() (start, end int64) {
	hbs := int64(r.Params.HashBlockSize)
	end = int64(r.HashStartBlock+r.HashBlocks) * hbs
	g, err := newGeometry(&r.Params, r.DataBlocks)
	if err != nil || g.levels == 0 {
		return end, end
	}
	return int64(g.levelStart[0]) * hbs, end
}

// DataBlockAt says which data block's digest the byte at offset off of
// the hash device belongs to; ok is false outside the leaf level's
// digests (the superblock, upper levels, the zeros after a block's last
// digest).
func (r *Result) DataBlockAt(off int64) (n uint64, ok bool) {
	g, err := newGeometry(&r.Params, r.DataBlocks)
	if err != nil || g.levels == 0 {
		return 0, false
	}
	hbs := int64(r.Params.HashBlockSize)
	rel := off - int64(g.levelStart[0])*hbs
	if rel < 0 || rel >= int64(g.levelSize[0])*hbs {
		return 0, false
	}
	in := rel % hbs
	if in >= int64(g.hashPerBlock*g.stride) {
		return 0, false
	}
	n = uint64(rel/hbs)*uint64(g.hashPerBlock) + uint64(in)/uint64(g.stride)
	if n >= g.dataBlocks {
		return 0, false
	}
	return n, true
}
