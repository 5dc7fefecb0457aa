package rootfs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// The GPT is written by hand rather than with go-diskfs: the partitions'
// contents are already streamed into the image file at their final offsets,
// and we need byte-exact control of the protective MBR, the header fields,
// the entry names, the attribute bits and the mixed-endian GUID encoding
// with no random defaults. The whole format is ~100 lines; sgdisk -v is the
// oracle in the tests.

const (
	sectorSize     = 512
	gptEntries     = 128
	gptEntrySize   = 128
	gptEntrySects  = gptEntries * gptEntrySize / sectorSize // 32
	firstPartLBA   = 2048                                   // 1 MiB
	attrReadOnly   = uint64(1) << 60
	gptHeaderSize  = 92
	gptRevision1_0 = 0x00010000
)

// Discoverable Partitions Specification types for x86-64.
var (
	TypeRootX86_64       = mustGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	TypeRootVerityX86_64 = mustGUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
)

// GUID is a UUID in its canonical (big-endian, RFC 4122) byte order.
type GUID [16]byte

func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// MarshalText writes the canonical lower-case form.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// ParseGUID parses the canonical 36-character form.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	s = strings.ReplaceAll(s, "-", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return g, fmt.Errorf("bad GUID %q", s)
	}
	copy(g[:], b)
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// mixed returns the GPT on-disk (mixed-endian) encoding.
func (g GUID) mixed() [16]byte {
	var m [16]byte
	m[0], m[1], m[2], m[3] = g[3], g[2], g[1], g[0]
	m[4], m[5] = g[5], g[4]
	m[6], m[7] = g[7], g[6]
	copy(m[8:], g[8:])
	return m
}

func guidFromMixed(m []byte) GUID {
	var g GUID
	g[0], g[1], g[2], g[3] = m[3], m[2], m[1], m[0]
	g[4], g[5] = m[5], m[4]
	g[6], g[7] = m[7], m[6]
	copy(g[8:], m[8:16])
	return g
}

// Partition is one GPT entry.
type Partition struct {
	Number   int    `json:"number"`
	Name     string `json:"name"`
	Type     GUID   `json:"type"`
	UUID     GUID   `json:"uuid"`
	FirstLBA uint64 `json:"first_lba"`
	LastLBA  uint64 `json:"last_lba"`
	Offset   int64  `json:"offset"`
	Size     int64  `json:"size"`
	Attrs    uint64 `json:"attributes"`
}

// diskSizeFor returns the image size for partitions ending at byte end: the
// backup GPT (33 sectors) after it, rounded up to 4 KiB.
func diskSizeFor(end int64) int64 {
	return (end + (gptEntrySects+1)*sectorSize + 4095) &^ 4095
}

// writeGPT writes the protective MBR, the primary and the backup GPT of a
// disk of diskSize bytes.
func writeGPT(w io.WriterAt, diskSize int64, disk GUID, parts []Partition) error {
	sectors := uint64(diskSize / sectorSize)
	last := sectors - 1
	mbr := make([]byte, sectorSize)
	pe := mbr[446:]
	pe[1], pe[2], pe[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	pe[4] = 0xee
	pe[5], pe[6], pe[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(pe[8:], 1)
	binary.LittleEndian.PutUint32(pe[12:], uint32(min(sectors-1, 0xffffffff)))
	mbr[510], mbr[511] = 0x55, 0xaa

	ents := make([]byte, gptEntries*gptEntrySize)
	for i, p := range parts {
		e := ents[i*gptEntrySize:]
		t, u := p.Type.mixed(), p.UUID.mixed()
		copy(e[0:], t[:])
		copy(e[16:], u[:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		binary.LittleEndian.PutUint64(e[48:], p.Attrs)
		for j, c := range utf16.Encode([]rune(p.Name)) {
			if j >= 36 {
				break
			}
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	entCRC := crc32.ChecksumIEEE(ents)
	header := func(cur, backup, entLBA uint64) []byte {
		h := make([]byte, sectorSize)
		copy(h, "EFI PART")
		le := binary.LittleEndian
		le.PutUint32(h[8:], gptRevision1_0)
		le.PutUint32(h[12:], gptHeaderSize)
		le.PutUint64(h[24:], cur)
		le.PutUint64(h[32:], backup)
		le.PutUint64(h[40:], 2+gptEntrySects)
		le.PutUint64(h[48:], last-1-gptEntrySects)
		d := disk.mixed()
		copy(h[56:], d[:])
		le.PutUint64(h[72:], entLBA)
		le.PutUint32(h[80:], gptEntries)
		le.PutUint32(h[84:], gptEntrySize)
		le.PutUint32(h[88:], entCRC)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	writes := []struct {
		b   []byte
		lba uint64
	}{
		{mbr, 0},
		{header(1, last, 2), 1},
		{ents, 2},
		{ents, last - gptEntrySects},
		{header(last, 1, last-gptEntrySects), last},
	}
	for _, x := range writes {
		if _, err := w.WriteAt(x.b, int64(x.lba)*sectorSize); err != nil {
			return fmt.Errorf("gpt: %w", err)
		}
	}
	return nil
}

// readGPT reads and checks the primary GPT of a disk image of the given size.
func readGPT(r io.ReaderAt, size int64) (GUID, []Partition, error) {
	var disk GUID
	if size < (2+gptEntrySects)*sectorSize {
		return disk, nil, fmt.Errorf("gpt: %d bytes is too small for a GPT disk image", size)
	}
	h := make([]byte, sectorSize)
	if _, err := r.ReadAt(h, sectorSize); err != nil {
		return disk, nil, fmt.Errorf("gpt: reading header: %w", err)
	}
	if !bytes.Equal(h[:8], []byte("EFI PART")) {
		return disk, nil, errors.New("gpt: no GPT header at LBA 1")
	}
	le := binary.LittleEndian
	hs := le.Uint32(h[12:])
	if hs < gptHeaderSize || hs > sectorSize {
		return disk, nil, fmt.Errorf("gpt: bad header size %d", hs)
	}
	crc := le.Uint32(h[16:])
	c := append([]byte(nil), h[:hs]...)
	le.PutUint32(c[16:], 0)
	if crc32.ChecksumIEEE(c) != crc {
		return disk, nil, errors.New("gpt: header CRC mismatch")
	}
	disk = guidFromMixed(h[56:72])
	entLBA, n, es := le.Uint64(h[72:]), le.Uint32(h[80:]), le.Uint32(h[84:])
	if es < gptEntrySize || es > 4096 || n > 1024 || int64(entLBA)*sectorSize+int64(n)*int64(es) > size {
		return disk, nil, errors.New("gpt: bad partition entry array")
	}
	ents := make([]byte, int(n)*int(es))
	if _, err := r.ReadAt(ents, int64(entLBA)*sectorSize); err != nil {
		return disk, nil, fmt.Errorf("gpt: reading entries: %w", err)
	}
	if crc32.ChecksumIEEE(ents) != le.Uint32(h[88:]) {
		return disk, nil, errors.New("gpt: partition entry CRC mismatch")
	}
	var parts []Partition
	for i := 0; i < int(n); i++ {
		e := ents[i*int(es):]
		t := guidFromMixed(e[0:16])
		if t == (GUID{}) {
			continue
		}
		p := Partition{Number: i + 1, Type: t, UUID: guidFromMixed(e[16:32]),
			FirstLBA: le.Uint64(e[32:]), LastLBA: le.Uint64(e[40:]), Attrs: le.Uint64(e[48:])}
		if p.LastLBA < p.FirstLBA || int64(p.LastLBA+1)*sectorSize > size {
			return disk, nil, fmt.Errorf("gpt: partition %d lies outside the disk", p.Number)
		}
		var name []uint16
		for j := 0; j < 36; j++ {
			c := le.Uint16(e[56+2*j:])
			if c == 0 {
				break
			}
			name = append(name, c)
		}
		p.Name = string(utf16.Decode(name))
		p.Offset = int64(p.FirstLBA) * sectorSize
		p.Size = int64(p.LastLBA-p.FirstLBA+1) * sectorSize
		parts = append(parts, p)
	}
	return disk, parts, nil
}
