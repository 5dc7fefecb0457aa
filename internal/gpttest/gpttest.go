// Package gpttest repairs a damaged GUID partition table's CRCs, so that
// tests and fuzz targets that change a table's fields reach the checks
// behind the CRCs. It imports nothing of ours, so pkg/gpt's own tests use
// it too.
package gpttest

import (
	"encoding/binary"
	"hash/crc32"
)

// FixCRCs recomputes the primary header's entry-array CRC and header CRC
// of the disk image b with sectors of sec bytes, as far as the header's
// fields allow (an array outside b, or a header size below 92 bytes or
// over a sector, is left as it is).
func FixCRCs(b []byte, sec int) {
	if sec <= 0 || len(b) < 2*sec {
		return
	}
	le := binary.LittleEndian
	h := b[sec : 2*sec]
	lba, n, es := le.Uint64(h[72:]), uint64(le.Uint32(h[80:])), uint64(le.Uint32(h[84:]))
	if lba < uint64(len(b))/uint64(sec) && n*es <= uint64(len(b))-lba*uint64(sec) {
		off := lba * uint64(sec)
		le.PutUint32(h[88:], crc32.ChecksumIEEE(b[off:off+n*es]))
	}
	if hs := int(le.Uint32(h[12:])); hs >= 92 && hs <= sec {
		le.PutUint32(h[16:], 0)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
	}
}
