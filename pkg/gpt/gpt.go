// Package gpt reads and writes GUID partition tables (UEFI 2.10, chapter
// 5): the protective MBR, the primary and the backup header and entry
// array. pkg/rootfs writes the root disk's table with Write; `rootfs
// inspect` and the guest init read it with Read.
//
// The writer's bytes are a function of its inputs alone (disk GUID,
// partition GUIDs, names, LBAs, attributes, disk size): no clock, no
// random GUIDs. The reader reads the primary table only (a disk whose
// primary table is damaged is refused, not silently read from its
// backup), checks both CRCs and the geometry, and allocates in proportion
// to the disk, never to a count the header declares beyond the limits
// below. It is written by hand rather than taken from go-diskfs: see
// diskfs_test.go for the differences that decided it.
package gpt

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"unicode/utf16"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
)

// Format constants.
const (
	DefaultSectorSize = 512
	HeaderSize        = 92  // bytes of the header covered by its CRC (revision 1.0)
	EntrySize         = 128 // bytes of one partition entry as Write writes it
	Entries           = 128 // entries in the array Write writes
	NameLen           = 36  // UTF-16 code units of a partition name
	Revision1_0       = 0x00010000
	signature         = "EFI PART"

	// MaxEntries and MaxEntrySize bound what Read accepts (together at most
	// 4 MiB of entry array); real tables have 128 entries of 128 bytes.
	MaxEntries   = 1024
	MaxEntrySize = 4096
)

// Partition attribute bits.
const (
	AttrRequired   = 1 << 0
	AttrNoBlockIO  = 1 << 1
	AttrLegacyBoot = 1 << 2
	// The Discoverable Partitions Specification's bits.
	AttrGrowFS   = 1 << 59
	AttrReadOnly = 1 << 60
	AttrNoAuto   = 1 << 63
)

// GUID is a UUID in its canonical (big-endian, RFC 4122) byte order, the
// order of its string form. On disk, GPT stores the first three fields
// little-endian (see Mixed).
type GUID [16]byte

// Discoverable Partitions Specification types for x86-64.
var (
	TypeRootX86_64       = MustParseGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	TypeRootVerityX86_64 = MustParseGUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
)

func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// MarshalText writes the canonical lower-case form.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText reads the canonical form (any case).
func (g *GUID) UnmarshalText(b []byte) error {
	v, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// ParseGUID parses the canonical 36-character form (any case).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gpt: bad GUID %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return g, fmt.Errorf("gpt: bad GUID %q: %v", s, err)
	}
	copy(g[:], b)
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a bad GUID.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// Mixed returns the on-disk (mixed-endian) encoding.
func (g GUID) Mixed() [16]byte {
	var m [16]byte
	m[0], m[1], m[2], m[3] = g[3], g[2], g[1], g[0]
	m[4], m[5] = g[5], g[4]
	m[6], m[7] = g[7], g[6]
	copy(m[8:], g[8:])
	return m
}

// FromMixed decodes 16 bytes of on-disk (mixed-endian) encoding.
func FromMixed(m []byte) GUID {
	var g GUID
	g[0], g[1], g[2], g[3] = m[3], m[2], m[1], m[0]
	g[4], g[5] = m[5], m[4]
	g[6], g[7] = m[7], m[6]
	copy(g[8:], m[8:16])
	return g
}

// Partition is one used entry of the table.
type Partition struct {
	Number   int           `json:"number"` // 1-based index in the entry array
	Name     string        `json:"name"`
	Type     GUID          `json:"type"`
	UUID     GUID          `json:"uuid"`
	FirstLBA uint64        `json:"first_lba"`
	LastLBA  uint64        `json:"last_lba"` // inclusive
	Offset   int64         `json:"offset"`   // FirstLBA in bytes (Read fills it in)
	Size     int64         `json:"size"`     // bytes (Read fills it in)
	Attrs    hexnum.Uint64 `json:"attributes"`
}

// Table is a partition table as read (Read) or to be written (Write).
type Table struct {
	DiskGUID GUID
	// Partitions are the used entries in entry order.
	Partitions []Partition
	// Header fields, as Read found them; Write computes its own.
	SectorSize     int
	FirstUsableLBA uint64
	LastUsableLBA  uint64
	BackupLBA      uint64
	EntriesLBA     uint64
	NumEntries     uint32
	EntrySize      uint32
	EntriesCRC     uint32
}

// FormatError is a malformed table: what is wrong and the byte offset on
// the disk where it was found. Err, when set, is ErrChecksum.
type FormatError struct {
	Offset int64
	Msg    string
	Err    error
}

func (e *FormatError) Error() string { return fmt.Sprintf("gpt: at offset %#x: %s", e.Offset, e.Msg) }

// Unwrap returns ErrChecksum for a CRC mismatch.
func (e *FormatError) Unwrap() error { return e.Err }

// ErrChecksum is wrapped by the FormatError of a header or entry-array CRC
// that does not match.
var ErrChecksum = errors.New("CRC mismatch")

func formatErr(off int64, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Write writes the protective MBR, the primary table (LBA 1, entries from
// LBA 2) and the backup table (entries before the last LBA, header in the
// last LBA) of a disk of diskSize bytes with 512-byte sectors. Each
// partition goes into entry Number-1 of a 128-entry array; only LBAs,
// GUIDs, names and attributes are used (Offset and Size are ignored).
// The partitions must lie in the usable area (LBA 34 to the last LBA - 33)
// and must not overlap. Nothing else is written: the rest of the disk is
// the caller's.
func Write(w io.WriterAt, diskSize int64, disk GUID, parts []Partition) error {
	const sector = DefaultSectorSize
	entSects := uint64(Entries * EntrySize / sector) // 32
	if diskSize%sector != 0 || diskSize < int64(2*(1+entSects)+1)*sector {
		return fmt.Errorf("gpt: a disk of %d bytes cannot hold a GPT with 512-byte sectors", diskSize)
	}
	sectors := uint64(diskSize / sector)
	last := sectors - 1
	firstUsable, lastUsable := 2+entSects, last-1-entSects
	mbr := make([]byte, sector)
	pe := mbr[446:]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	pe[4] = 0xee
	pe[5], pe[6], pe[7] = 0xff, 0xff, 0xff // CHS beyond 8 GiB
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(sectors-1, 0xffffffff)))
	mbr[510], mbr[511] = 0x55, 0xaa

	ents := make([]byte, Entries*EntrySize)
	used := make([]Partition, 0, len(parts))
	for _, p := range parts {
		if p.Number < 1 || p.Number > Entries {
			return fmt.Errorf("gpt: partition number %d: want 1 to %d", p.Number, Entries)
		}
		if p.Type == (GUID{}) {
			return fmt.Errorf("gpt: partition %d: the zero type GUID marks an unused entry", p.Number)
		}
		if p.FirstLBA < firstUsable || p.LastLBA < p.FirstLBA || p.LastLBA > lastUsable {
			return fmt.Errorf("gpt: partition %d: LBAs %d-%d outside the usable area %d-%d", p.Number, p.FirstLBA, p.LastLBA, firstUsable, lastUsable)
		}
		name := utf16.Encode([]rune(p.Name))
		if len(name) > NameLen {
			return fmt.Errorf("gpt: partition %d: name %q is longer than %d UTF-16 code units", p.Number, p.Name, NameLen)
		}
		e := ents[(p.Number-1)*EntrySize:]
		if FromMixed(e[0:16]) != (GUID{}) {
			return fmt.Errorf("gpt: partition number %d given twice", p.Number)
		}
		t, u := p.Type.Mixed(), p.UUID.Mixed()
		copy(e[0:], t[:])
		copy(e[16:], u[:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		binary.LittleEndian.PutUint64(e[48:], uint64(p.Attrs))
		for j, c := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
		used = append(used, p)
	}
	if err := checkOverlap(used, func(p Partition) error {
		return fmt.Errorf("gpt: partition %d overlaps another", p.Number)
	}); err != nil {
		return err
	}
	entCRC := crc32.ChecksumIEEE(ents)
	header := func(cur, backup, entLBA uint64) []byte {
		h := make([]byte, sector)
		copy(h, signature)
		le := binary.LittleEndian
		le.PutUint32(h[8:], Revision1_0)
		le.PutUint32(h[12:], HeaderSize)
		le.PutUint64(h[24:], cur)
		le.PutUint64(h[32:], backup)
		le.PutUint64(h[40:], firstUsable)
		le.PutUint64(h[48:], lastUsable)
		d := disk.Mixed()
		copy(h[56:], d[:])
		le.PutUint64(h[72:], entLBA)
		le.PutUint32(h[80:], Entries)
		le.PutUint32(h[84:], EntrySize)
		le.PutUint32(h[88:], entCRC)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:HeaderSize]))
		return h
	}
	for _, x := range []struct {
		b   []byte
		lba uint64
	}{
		{mbr, 0},
		{header(1, last, 2), 1},
		{ents, 2},
		{ents, last - entSects},
		{header(last, 1, last-entSects), last},
	} {
		if _, err := w.WriteAt(x.b, int64(x.lba)*sector); err != nil {
			return fmt.Errorf("gpt: %w", err)
		}
	}
	return nil
}

// checkOverlap calls bad with the first partition that overlaps one before
// it in LBA order.
func checkOverlap(parts []Partition, bad func(Partition) error) error {
	s := append([]Partition(nil), parts...)
	sort.Slice(s, func(i, j int) bool { return s[i].FirstLBA < s[j].FirstLBA })
	for i := 1; i < len(s); i++ {
		if s[i].FirstLBA <= s[i-1].LastLBA {
			return bad(s[i])
		}
	}
	return nil
}

// Read reads and checks the primary table of a disk of size bytes with
// the given logical sector size (0 means 512): the header's signature,
// size, own LBA and CRC, the entry array's place, size and CRC, and that
// every used partition lies in the usable area, inside the disk, and
// overlaps no other. Problems are *FormatError; I/O errors are returned
// wrapped.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize == 0 {
		sectorSize = DefaultSectorSize
	}
	if sectorSize < 512 || sectorSize > 65536 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("gpt: bad sector size %d", sectorSize)
	}
	sec := int64(sectorSize)
	if size < 3*sec {
		return nil, formatErr(0, "%d bytes are too small for a GPT disk with %d-byte sectors", size, sectorSize)
	}
	sectors := uint64(size / sec)
	h := make([]byte, sectorSize)
	if _, err := r.ReadAt(h, sec); err != nil {
		return nil, fmt.Errorf("gpt: reading the header at offset %#x: %w", sec, err)
	}
	if string(h[:8]) != signature {
		return nil, formatErr(sec, "no GPT header (signature %q, want %q)", h[:8], signature)
	}
	le := binary.LittleEndian
	hs := le.Uint32(h[12:])
	if hs < HeaderSize || int64(hs) > sec {
		return nil, formatErr(sec+12, "header size %d: want %d to %d", hs, HeaderSize, sectorSize)
	}
	crc := le.Uint32(h[16:])
	c := append([]byte(nil), h[:hs]...)
	le.PutUint32(c[16:], 0)
	if got := crc32.ChecksumIEEE(c); got != crc {
		return nil, &FormatError{Offset: sec + 16, Msg: fmt.Sprintf("header CRC %#08x, the header's bytes give %#08x", crc, got), Err: ErrChecksum}
	}
	t := &Table{
		DiskGUID:       FromMixed(h[56:72]),
		SectorSize:     sectorSize,
		FirstUsableLBA: le.Uint64(h[40:]),
		LastUsableLBA:  le.Uint64(h[48:]),
		BackupLBA:      le.Uint64(h[32:]),
		EntriesLBA:     le.Uint64(h[72:]),
		NumEntries:     le.Uint32(h[80:]),
		EntrySize:      le.Uint32(h[84:]),
		EntriesCRC:     le.Uint32(h[88:]),
	}
	if my := le.Uint64(h[24:]); my != 1 {
		return nil, formatErr(sec+24, "the primary header says it is at LBA %d", my)
	}
	n, es := t.NumEntries, t.EntrySize
	if n == 0 || n > MaxEntries || es < EntrySize || es > MaxEntrySize || es&(es-1) != 0 {
		return nil, formatErr(sec+80, "%d partition entries of %d bytes: want 1 to %d entries of 128 bytes times a power of two up to %d",
			n, es, MaxEntries, MaxEntrySize)
	}
	arrayBytes := uint64(n) * uint64(es)
	arraySects := (arrayBytes + uint64(sec) - 1) / uint64(sec)
	if t.EntriesLBA < 2 || t.EntriesLBA >= sectors || sectors-t.EntriesLBA < arraySects {
		return nil, formatErr(sec+72, "the entry array (LBA %d, %d bytes) is not inside the disk (%d sectors)", t.EntriesLBA, arrayBytes, sectors)
	}
	if t.FirstUsableLBA > t.LastUsableLBA || t.LastUsableLBA >= sectors || t.FirstUsableLBA < 2 {
		return nil, formatErr(sec+40, "usable LBAs %d-%d are not inside the disk (%d sectors)", t.FirstUsableLBA, t.LastUsableLBA, sectors)
	}
	if t.EntriesLBA+arraySects > t.FirstUsableLBA && t.EntriesLBA <= t.LastUsableLBA {
		return nil, formatErr(sec+72, "the entry array (LBA %d-%d) overlaps the usable LBAs %d-%d",
			t.EntriesLBA, t.EntriesLBA+arraySects-1, t.FirstUsableLBA, t.LastUsableLBA)
	}
	entOff := int64(t.EntriesLBA) * sec
	ents := make([]byte, arrayBytes)
	if _, err := r.ReadAt(ents, entOff); err != nil {
		return nil, fmt.Errorf("gpt: reading the entry array at offset %#x: %w", entOff, err)
	}
	if got := crc32.ChecksumIEEE(ents); got != le.Uint32(h[88:]) {
		return nil, &FormatError{Offset: sec + 88, Msg: fmt.Sprintf("entry array CRC %#08x, the array's bytes give %#08x", le.Uint32(h[88:]), got), Err: ErrChecksum}
	}
	for i := 0; i < int(n); i++ {
		e := ents[i*int(es):]
		off := entOff + int64(i)*int64(es)
		ty := FromMixed(e[0:16])
		if ty == (GUID{}) {
			continue
		}
		p := Partition{Number: i + 1, Type: ty, UUID: FromMixed(e[16:32]),
			FirstLBA: le.Uint64(e[32:]), LastLBA: le.Uint64(e[40:]), Attrs: hexnum.Uint64(le.Uint64(e[48:]))}
		if p.LastLBA < p.FirstLBA || p.FirstLBA < t.FirstUsableLBA || p.LastLBA > t.LastUsableLBA {
			return nil, formatErr(off+32, "partition %d (LBAs %d-%d) is not inside the usable LBAs %d-%d",
				p.Number, p.FirstLBA, p.LastLBA, t.FirstUsableLBA, t.LastUsableLBA)
		}
		name := make([]uint16, 0, NameLen)
		for j := 0; j < NameLen; j++ {
			c := le.Uint16(e[56+2*j:])
			if c == 0 {
				break
			}
			name = append(name, c)
		}
		p.Name = string(utf16.Decode(name)) // lone surrogates become U+FFFD
		p.Offset = int64(p.FirstLBA) * sec
		p.Size = int64(p.LastLBA-p.FirstLBA+1) * sec
		t.Partitions = append(t.Partitions, p)
	}
	if err := checkOverlap(t.Partitions, func(p Partition) error {
		return formatErr(entOff+int64(p.Number-1)*int64(es)+32, "partition %d overlaps another", p.Number)
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// CheckBackup checks the backup table of a disk of size bytes against a
// table Read returned: the backup header in the disk's last LBA (where the
// primary says it is), its CRC, and that it describes the same disk and
// entry array as the primary, with the array between the usable area and
// the header. Read does not do this, so that a guest whose disk grew still
// boots; `rootfs inspect` does, as sgdisk -v.
func (t *Table) CheckBackup(r io.ReaderAt, size int64) error {
	sec := int64(t.SectorSize)
	last := uint64(size/sec) - 1
	if t.BackupLBA != last {
		return formatErr(sec+32, "the backup header is said to be at LBA %d, the disk's last LBA is %d", t.BackupLBA, last)
	}
	off := int64(last) * sec
	h := make([]byte, sec)
	if _, err := r.ReadAt(h, off); err != nil {
		return fmt.Errorf("gpt: reading the backup header at offset %#x: %w", off, err)
	}
	if string(h[:8]) != signature {
		return formatErr(off, "no backup GPT header (signature %q)", h[:8])
	}
	le := binary.LittleEndian
	hs := le.Uint32(h[12:])
	if hs < HeaderSize || int64(hs) > sec {
		return formatErr(off+12, "backup header size %d: want %d to %d", hs, HeaderSize, sec)
	}
	crc := le.Uint32(h[16:])
	c := append([]byte(nil), h[:hs]...)
	le.PutUint32(c[16:], 0)
	if got := crc32.ChecksumIEEE(c); got != crc {
		return &FormatError{Offset: off + 16, Msg: fmt.Sprintf("backup header CRC %#08x, the header's bytes give %#08x", crc, got), Err: ErrChecksum}
	}
	switch {
	case le.Uint64(h[24:]) != last || le.Uint64(h[32:]) != 1:
		return formatErr(off+24, "the backup header says it is at LBA %d with its alternate at %d, want %d and 1", le.Uint64(h[24:]), le.Uint64(h[32:]), last)
	case FromMixed(h[56:72]) != t.DiskGUID:
		return formatErr(off+56, "the backup header's disk GUID %s is not the primary's %s", FromMixed(h[56:72]), t.DiskGUID)
	case le.Uint64(h[40:]) != t.FirstUsableLBA || le.Uint64(h[48:]) != t.LastUsableLBA:
		return formatErr(off+40, "the backup header's usable LBAs %d-%d are not the primary's %d-%d", le.Uint64(h[40:]), le.Uint64(h[48:]), t.FirstUsableLBA, t.LastUsableLBA)
	case le.Uint32(h[80:]) != t.NumEntries || le.Uint32(h[84:]) != t.EntrySize || le.Uint32(h[88:]) != t.EntriesCRC:
		return formatErr(off+80, "the backup entry array (%d entries of %d bytes, CRC %#08x) is not the primary's", le.Uint32(h[80:]), le.Uint32(h[84:]), le.Uint32(h[88:]))
	}
	arrayBytes := int64(t.NumEntries) * int64(t.EntrySize)
	entLBA := le.Uint64(h[72:])
	arraySects := uint64((arrayBytes + sec - 1) / sec)
	if entLBA <= t.LastUsableLBA || entLBA >= last || last-entLBA < arraySects {
		return formatErr(off+72, "the backup entry array at LBA %d is not between the usable LBAs and the backup header", entLBA)
	}
	ents := make([]byte, arrayBytes)
	if _, err := r.ReadAt(ents, int64(entLBA)*sec); err != nil {
		return fmt.Errorf("gpt: reading the backup entry array: %w", err)
	}
	if got := crc32.ChecksumIEEE(ents); got != t.EntriesCRC {
		return &FormatError{Offset: int64(entLBA) * sec, Msg: fmt.Sprintf("backup entry array CRC: its bytes give %#08x, want %#08x", got, t.EntriesCRC), Err: ErrChecksum}
	}
	return nil
}

// Find returns the first partition of the given type, or nil.
func (t *Table) Find(typ GUID) *Partition {
	for i := range t.Partitions {
		if t.Partitions[i].Type == typ {
			return &t.Partitions[i]
		}
	}
	return nil
}
