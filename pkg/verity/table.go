package verity

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// FormatUUID writes a UUID in its canonical lowercase form.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ParseUUID reads a UUID in its canonical 36-character form.
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil {
		return u, fmt.Errorf("UUID %q is not hex", s)
	}
	copy(u[:], b)
	return u, nil
}

// SaltHex is a salt as veritysetup shows it: hex, or "-" when empty.
func SaltHex(salt []byte) string {
	if len(salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(salt)
}

// ParseSalt reads a salt given as hex or "-" (no salt), as veritysetup
// takes --salt.
func ParseSalt(s string) ([]byte, error) {
	if s == "-" || s == "" {
		return []byte{}, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("salt %q is not hex", s)
	}
	if len(b) > MaxSaltSize {
		return nil, fmt.Errorf("salt is %d bytes, at most %d allowed", len(b), MaxSaltSize)
	}
	return b, nil
}

// DataSectors is the size of the verity device in 512-byte sectors.
func (r *Result) DataSectors() uint64 {
	return r.DataBlocks * uint64(r.Params.DataBlockSize) / 512
}

// Table is the device-mapper table line of the verity device over dataDev
// and hashDev (device paths or major:minor):
//
//	0 <sectors> verity <format> <data> <hash> <dbs> <hbs> <blocks> <hash_start> <alg> <root> <salt>
func (r *Result) Table(dataDev, hashDev string) string {
	p := &r.Params
	return fmt.Sprintf("0 %d verity %d %s %s %d %d %d %d %s %s %s",
		r.DataSectors(), p.HashType, dataDev, hashDev, p.DataBlockSize, p.HashBlockSize,
		r.DataBlocks, r.HashStartBlock, p.HashAlgorithm, r.RootHashHex(), SaltHex(r.Salt))
}

// DMModCreate is the kernel parameter that makes the kernel set up a
// read-only verity device called name at boot, without an initrd
// (Documentation/admin-guide/device-mapper/dm-init.rst):
//
//	dm-mod.create="<name>,,,ro,<table>"
//
// The device is /dev/dm-0 when it is the only one, so the caller adds
// root=/dev/dm-0 (and typically dm-mod.waitfor=<data>,<hash>). dataDev and
// hashDev are as in Table.
func (r *Result) DMModCreate(name, dataDev, hashDev string) string {
	return fmt.Sprintf(`dm-mod.create="%s,,,ro,%s"`, name, r.Table(dataDev, hashDev))
}

// SystemdCmdline is the kernel parameters systemd-veritysetup-generator
// takes for the root file system: roothash=<hex>, and, when the hash
// device cannot describe itself with a superblock at offset 0,
// systemd.verity_root_options= with the parameters (veritytab options).
// The caller adds systemd.verity_root_data= and systemd.verity_root_hash=
// unless the partitions are found by their GPT UUIDs (see PartitionUUIDs).
func (r *Result) SystemdCmdline() string {
	p := &r.Params
	s := "roothash=" + r.RootHashHex()
	var opts []string
	if p.NoSuperblock {
		opts = append(opts, "superblock=false",
			fmt.Sprintf("format=%d", p.HashType),
			fmt.Sprintf("data-block-size=%d", p.DataBlockSize),
			fmt.Sprintf("hash-block-size=%d", p.HashBlockSize),
			fmt.Sprintf("data-blocks=%d", r.DataBlocks),
			"hash="+p.HashAlgorithm)
		if len(r.Salt) > 0 {
			opts = append(opts, "salt="+hex.EncodeToString(r.Salt))
		}
	}
	if p.HashOffset != 0 {
		opts = append(opts, fmt.Sprintf("hash-offset=%d", p.HashOffset))
	}
	if len(opts) > 0 {
		s += " systemd.verity_root_options=" + strings.Join(opts, ",")
	}
	return s
}

// PartitionUUIDs are the GPT partition UUIDs the Discoverable Partitions
// Specification gives the data and hash partitions of a verity root: the
// first and the last 128 bits of the root hash (for digests of at least 32
// bytes), so systemd finds them from roothash= alone. The bytes are in
// RFC 4122 order (as the UUID string reads, not GPT's mixed-endian form).
func (r *Result) PartitionUUIDs() (data, hash [16]byte) {
	copy(data[:], r.RootHash)
	copy(hash[:], r.RootHash[len(r.RootHash)-16:])
	return data, hash
}
