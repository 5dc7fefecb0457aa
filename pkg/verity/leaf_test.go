package verity

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"testing"
)

// TestDataBlockAt: in trees Format wrote, DataBlockAt maps exactly the
// bytes of each data block's digest (and the spare bytes of its slot) in
// the leaf level to that block, nothing else, and LeafLevel spans them.
func TestDataBlockAt(t *testing.T) {
	hashes := map[string]func() hash.Hash{"sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New}
	for _, tc := range []struct {
		alg      string
		format   uint32
		hbs      uint32
		blocks   int
		noSuper  bool
		hashOffs uint64
	}{
		{"sha256", 1, 4096, 1, false, 0},
		{"sha256", 1, 4096, 2, false, 0},
		{"sha256", 1, 4096, 300, false, 0},
		{"sha256", 1, 512, 300, true, 0},
		{"sha256", 1, 4096, 300, false, 8192},
		{"sha1", 1, 512, 70, false, 0}, // 20-byte digests in 32-byte slots
		{"sha1", 0, 512, 70, false, 0}, // packed
		{"sha512", 1, 1024, 40, false, 0},
	} {
		t.Run(fmt.Sprintf("%s-v%d-%d-%d-nosb%v-off%d", tc.alg, tc.format, tc.hbs, tc.blocks, tc.noSuper, tc.hashOffs), func(t *testing.T) {
			p := DefaultParams()
			p.HashAlgorithm, p.HashType, p.HashBlockSize, p.DataBlockSize = tc.alg, tc.format, tc.hbs, 512
			p.NoSuperblock, p.HashOffset, p.Salt = tc.noSuper, tc.hashOffs, []byte{1, 2, 3}
			data := make([]byte, tc.blocks*512)
			for i := range data {
				data[i] = byte(i*7 + i/512)
			}
			dev := &memFile{}
			res, err := Format(context.Background(), bytes.NewReader(data), int64(len(data)), dev, p)
			if err != nil {
				t.Fatal(err)
			}
			start, end := res.LeafLevel()
			if want := int64(res.HashStartBlock+res.HashBlocks) * int64(tc.hbs); end != want || start > end {
				t.Fatalf("LeafLevel = %d, %d; tree ends at %d", start, end, want)
			}
			if tc.blocks == 1 {
				if start != end {
					t.Errorf("one data block: leaf level %d-%d, want empty", start, end)
				}
				for off := range int64(len(dev.b)) {
					if n, ok := res.DataBlockAt(off); ok {
						t.Fatalf("one data block: offset %d maps to block %d", off, n)
					}
				}
				return
			}
			slots := map[uint64][]int64{}
			for off := range int64(len(dev.b)) + 1024 {
				if n, ok := res.DataBlockAt(off); ok {
					if off < start || off >= end {
						t.Fatalf("offset %d (block %d) outside the leaf level %d-%d", off, n, start, end)
					}
					slots[n] = append(slots[n], off)
				}
			}
			if len(slots) != tc.blocks {
				t.Fatalf("%d data blocks mapped, want %d", len(slots), tc.blocks)
			}
			for n, offs := range slots {
				h := hashes[tc.alg]()
				if tc.format == 1 {
					h.Write(p.Salt)
				}
				h.Write(data[n*512 : (n+1)*512])
				if tc.format == 0 {
					h.Write(p.Salt)
				}
				digest := h.Sum(nil)
				first := offs[0]
				if int64(len(offs)) != offs[len(offs)-1]-first+1 || len(offs) < len(digest) {
					t.Fatalf("block %d: %d offsets from %d, not one slot", n, len(offs), first)
				}
				if got := dev.b[first : first+int64(len(digest))]; !bytes.Equal(got, digest) {
					t.Fatalf("block %d: bytes at %d are %x, its digest %x", n, first, got, digest)
				}
			}
		})
	}
}
