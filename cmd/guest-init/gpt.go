package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// gptPart is one used GPT partition entry.
type gptPart struct {
	Number   int      // 1-based
	UUID     [16]byte // unique partition GUID in string byte order
	First    uint64
	Last     uint64
	TypeUUID [16]byte
}

// guidToString converts a GUID as stored on disk (first three fields
// little-endian) into string byte order.
func guidToString(b []byte) [16]byte {
	var u [16]byte
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	copy(u[8:], b[8:16])
	return u
}

// readGPT reads the primary GPT of a disk with the given logical sector size
// and returns its used entries. It checks the signature and both CRCs.
func readGPT(r io.ReaderAt, sector int) ([]gptPart, error) {
	if sector < 512 || sector > 65536 || sector&(sector-1) != 0 {
		return nil, fmt.Errorf("bad sector size %d", sector)
	}
	hdr := make([]byte, sector)
	if _, err := r.ReadAt(hdr, int64(sector)); err != nil {
		return nil, err
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errors.New("no GPT signature")
	}
	hsize := binary.LittleEndian.Uint32(hdr[12:])
	if hsize < 92 || int(hsize) > sector {
		return nil, fmt.Errorf("bad GPT header size %d", hsize)
	}
	want := binary.LittleEndian.Uint32(hdr[16:])
	h := append([]byte(nil), hdr[:hsize]...)
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, errors.New("GPT header CRC mismatch")
	}
	lba := binary.LittleEndian.Uint64(hdr[72:])
	n := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	ecrc := binary.LittleEndian.Uint32(hdr[88:])
	if n == 0 || n > 1024 || esize < 128 || esize > 4096 || esize%8 != 0 || lba < 2 || lba > 1<<40 {
		return nil, fmt.Errorf("bad GPT entry array (%d entries of %d bytes at LBA %d)", n, esize, lba)
	}
	ents := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(ents, int64(lba)*int64(sector)); err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(ents) != ecrc {
		return nil, errors.New("GPT entry array CRC mismatch")
	}
	var out []gptPart
	zero := make([]byte, 16)
	for i := 0; i < int(n); i++ {
		e := ents[i*int(esize):]
		if bytes.Equal(e[:16], zero) {
			continue
		}
		out = append(out, gptPart{
			Number:   i + 1,
			TypeUUID: guidToString(e[0:16]),
			UUID:     guidToString(e[16:32]),
			First:    binary.LittleEndian.Uint64(e[32:]),
			Last:     binary.LittleEndian.Uint64(e[40:]),
		})
	}
	return out, nil
}
