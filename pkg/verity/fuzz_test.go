package verity

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"testing"
)

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r *bytes.Reader
	n *atomic.Int64
}

func (c countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// fuzzTree is a tree made from a fuzzer's choice of parameters, mutated
// by the fuzzer's operations.
type fuzzTree struct {
	base  Params // the parameters it was made with (and, without a superblock, those given to Verify)
	data  []byte
	hash  []byte
	root  []byte
	given Params // the parameters given to Verify
}

// newFuzzTree builds a valid tree from the bits of cfg: hash algorithm,
// format, block sizes, 1 to 300 data blocks, salt length, superblock or
// not, hash offset, data after the data blocks.
func newFuzzTree(cfg uint64) *fuzzTree {
	p := Params{
		HashAlgorithm: []string{"sha1", "sha256", "sha512", "sha1"}[cfg&3],
		HashType:      uint32(cfg>>2) & 1,
		DataBlockSize: 512 << ((cfg >> 3) % 4),
		HashBlockSize: 512 << ((cfg >> 5) % 4),
		DataBlocks:    1 + (cfg>>7&511)%300,
		NoSuperblock:  (cfg>>19)&1 == 1,
	}
	p.Salt = testData(int64([]int{0, 1, 7, 32, 255}[(cfg>>16&7)%5]), cfg)
	if p.NoSuperblock {
		p.HashOffset = (cfg >> 20 & 3) % 3 * uint64(p.HashBlockSize)
	} else {
		p.HashOffset = (cfg >> 20 & 3) % 3 * 512
	}
	data := testData(int64(p.DataBlocks)*int64(p.DataBlockSize)+int64((cfg>>22&3)%3*100), cfg>>24)
	var h memFile
	r, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, p)
	if err != nil {
		panic(err) // every choice above is valid
	}
	return &fuzzTree{base: p, data: data, hash: h.b, root: r.RootHash, given: p}
}

// fuzzCfg is the cfg of newFuzzTree for the given choices.
func fuzzCfg(alg, format, dbsShift, hbsShift, blocks, salt uint64, nosb bool, offset, extra uint64) uint64 {
	c := alg | format<<2 | dbsShift<<3 | hbsShift<<5 | (blocks-1)<<7 | salt<<16 | offset<<20 | extra<<22
	if nosb {
		c |= 1 << 19
	}
	return c
}

// params are the parameters the tree now has: those of its superblock
// (if it still parses) or those given.
func (ft *fuzzTree) params() (Params, bool) {
	if ft.given.NoSuperblock {
		return ft.given, true
	}
	off := ft.given.HashOffset
	if uint64(len(ft.hash)) < off+SuperblockSize {
		return Params{}, false
	}
	sb, err := ParseSuperblock(ft.hash[off:])
	if err != nil {
		return Params{}, false
	}
	return sb.Params(off), true
}

// apply runs one operation of the fuzzer: op selects what, x and y where,
// v the value.
func (ft *fuzzTree) apply(op, x, y, v byte) {
	pos := func(n int) int { return (int(x)<<8 | int(y)) % max(n, 1) }
	switch op % 11 {
	case 0: // a hash device byte
		if len(ft.hash) > 0 {
			ft.hash[pos(len(ft.hash))] = v
		}
	case 1: // a data byte
		if len(ft.data) > 0 {
			ft.data[pos(len(ft.data))] = v
		}
	case 2: // a superblock field, near its value or set outright
		off := int(ft.given.HashOffset)
		if ft.given.NoSuperblock || len(ft.hash) < off+SuperblockSize {
			return
		}
		sb := ft.hash[off : off+SuperblockSize]
		delta := int64(int8(v))
		switch x % 8 {
		case 0:
			binary.LittleEndian.PutUint64(sb[72:], uint64(int64(binary.LittleEndian.Uint64(sb[72:]))+delta))
		case 1:
			binary.LittleEndian.PutUint32(sb[12:], uint32(v)%3)
		case 2:
			binary.LittleEndian.PutUint32(sb[64:], 256<<(v%10))
		case 3:
			binary.LittleEndian.PutUint32(sb[68:], 256<<(v%10))
		case 4:
			binary.LittleEndian.PutUint16(sb[80:], uint16(int64(binary.LittleEndian.Uint16(sb[80:]))+delta))
		case 5:
			clear(sb[32:64])
			copy(sb[32:], []string{"sha1", "sha256", "sha512", "md5"}[v%4])
		case 6:
			binary.LittleEndian.PutUint32(sb[8:], uint32(v%3))
		case 7:
			sb[(int(x)<<8|int(y))%SuperblockSize] = v
		}
	case 3: // recompute the digests above the leaf level, and the root
		if p, ok := ft.params(); ok {
			if g, err := newGeometry(&p, p.DataBlocks); err == nil && g.levels > 0 && uint64(len(ft.hash)) >= g.end*uint64(p.HashBlockSize) {
				ft.root = reseal(ft.hash, g, &p)
			}
		}
	case 4: // make the tree again for the parameters the tree now has
		p, ok := ft.params()
		if !ok || p.DataBlocks > 1<<16 {
			return
		}
		var h memFile
		h.b = append([]byte(nil), ft.hash...)
		if r, err := Format(bg, bytes.NewReader(ft.data), int64(len(ft.data)), &h, p); err == nil {
			ft.hash, ft.root = h.b, r.RootHash
		}
	case 5: // cut the hash device
		ft.hash = ft.hash[:len(ft.hash)-pos(len(ft.hash)+1)%(len(ft.hash)+1)]
	case 6: // lengthen the hash device
		ft.hash = append(ft.hash, bytes.Repeat([]byte{v}, int(x)*int(y)%70000)...)
	case 7: // cut or lengthen the data
		if v&1 == 0 {
			ft.data = ft.data[:len(ft.data)-pos(len(ft.data)+1)%(len(ft.data)+1)]
		} else {
			ft.data = append(ft.data, bytes.Repeat([]byte{v}, int(x)*int(y)%70000)...)
		}
	case 8: // a root hash byte, or its length
		switch {
		case v == 0 && len(ft.root) > 0:
			ft.root = ft.root[:len(ft.root)-1]
		case v == 1:
			ft.root = append(ft.root, 0)
		case len(ft.root) > 0:
			ft.root[pos(len(ft.root))] ^= v
		}
	case 9: // without a superblock: the data blocks given
		if ft.given.NoSuperblock {
			ft.given.DataBlocks = uint64(max(int64(ft.given.DataBlocks)+int64(int8(v)), 0))
		}
	case 10: // without a superblock: the other parameters given
		if ft.given.NoSuperblock {
			switch x % 4 {
			case 0:
				ft.given.HashType = uint32(v % 3)
			case 1:
				ft.given.HashBlockSize = 256 << (v % 10)
			case 2:
				ft.given.DataBlockSize = 256 << (v % 10)
			case 3:
				ft.given.Salt = ft.given.Salt[:int(v)%(len(ft.given.Salt)+1)]
			}
		}
	}
}

// oracle says whether the tree is right: the parameters resolve as
// VerifyOptions documents, the devices are large enough, and the tree
// region of the hash device is byte for byte the tree that a plain
// sequential transcription of veritysetup's algorithm (referenceTree)
// makes of the data, with its root hash.
func (ft *fuzzTree) oracle() bool {
	p, ok := ft.params()
	if !ok {
		return false
	}
	if p.NoSuperblock {
		if p.Validate() != nil {
			return false
		}
		if p.DataBlocks == 0 {
			if len(ft.data) == 0 || len(ft.data)%int(p.DataBlockSize) != 0 {
				return false
			}
			p.DataBlocks = uint64(len(ft.data)) / uint64(p.DataBlockSize)
		}
	}
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		return false
	}
	dataEnd := p.DataBlocks * uint64(p.DataBlockSize)
	hbs := uint64(p.HashBlockSize)
	if uint64(len(ft.data)) < dataEnd || uint64(len(ft.hash)) < g.end*hbs {
		return false
	}
	root, tree := referenceTree(ft.data[:dataEnd], p)
	return bytes.Equal(root, ft.root) && bytes.Equal(tree, ft.hash[g.hashStart*hbs:g.end*hbs])
}

// FuzzVerifyTree is the structure-aware fuzz target of the verity reader:
// a valid tree (parameters chosen by cfg) mutated by the operations in ops
// (4 bytes each: superblock fields, hash and data bytes, sizes, the root
// hash, the parameters given), where some operations repair what the
// checks in front would stop (recompute the digests above a changed
// block, or the whole tree for changed parameters), so the mutations
// reach the spare-area, size and data checks behind them. Verify must
// accept exactly what the oracle accepts, and read no more than the
// devices hold (work proportional to the input, whatever the superblock
// declares) and allocate a bounded amount.
func FuzzVerifyTree(f *testing.F) {
	// The recipe of issue 10: sha256, format 1, 4096-byte blocks, 256
	// data blocks, a superblock; data_blocks lowered by one.
	recipe := fuzzCfg(1, 1, 3, 3, 256, 3, false, 0, 0)
	f.Add(recipe, []byte{})
	f.Add(recipe, []byte{2, 0, 0, 0xff})
	f.Add(recipe, []byte{2, 0, 0, 0xff, 3, 0, 0, 0})
	f.Add(fuzzCfg(2, 1, 1, 0, 129, 0, true, 0, 1), []byte{9, 0, 0, 0xff})           // sha512 without a superblock, one block fewer given
	f.Add(fuzzCfg(0, 0, 0, 0, 300, 1, false, 2, 0), []byte{2, 2, 0, 1, 4, 0, 0, 0}) // sha1 format 0, the block size changed and the tree made again
	f.Add(fuzzCfg(0, 1, 3, 3, 200, 4, false, 0, 2), []byte{0, 3, 7, 1, 3, 0, 0, 0}) // sha1 format 1: a padding byte, resealed
	f.Add(fuzzCfg(1, 1, 0, 1, 17, 2, false, 1, 0), []byte{5, 0, 9, 0, 6, 1, 1, 0})  // sizes
	f.Add(fuzzCfg(1, 0, 2, 2, 70, 0, true, 2, 2), []byte{10, 3, 0, 4, 7, 0, 1, 0})  // given parameters, data size
	f.Fuzz(func(t *testing.T, cfg uint64, ops []byte) {
		if len(ops) > 64*4 {
			ops = ops[:64*4]
		}
		ft := newFuzzTree(cfg)
		for i := 0; i+3 < len(ops); i += 4 {
			ft.apply(ops[i], ops[i+1], ops[i+2], ops[i+3])
		}
		want := ft.oracle()

		var read atomic.Int64
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		opts := VerifyOptions{Params: Params{HashOffset: ft.given.HashOffset}}
		if ft.given.NoSuperblock {
			opts.Params = ft.given
		}
		_, err := Verify(bg, countingReaderAt{bytes.NewReader(ft.data), &read}, int64(len(ft.data)),
			countingReaderAt{bytes.NewReader(ft.hash), &read}, ft.root, opts)
		runtime.ReadMemStats(&m1)
		if got := err == nil; got != want {
			t.Fatalf("Verify: %v; the oracle says accept=%v", err, want)
		}
		in := int64(len(ft.data) + len(ft.hash))
		if n := read.Load(); n > int64(len(ft.data))+3*int64(len(ft.hash))+SuperblockSize {
			t.Fatalf("read %d bytes from %d bytes of data and %d of hash device", n, len(ft.data), len(ft.hash))
		}
		if a := int64(m1.TotalAlloc - m0.TotalAlloc); a > 8<<20+4*in {
			t.Fatalf("allocated %d bytes for %d bytes of input", a, in)
		}
	})
}
