package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// diffBase is a valid tree that the differential test mutates.
type diffBase struct {
	name   string
	p      Params
	blocks int // data blocks
	extra  int // data bytes after the data blocks
}

// diffCase is one input given to both tools: data, hash device, root hash
// and (without a superblock) the parameters given on the command line.
type diffCase struct {
	name string
	data []byte // nil: the base's data
	hash []byte
	root []byte
	p    Params // HashOffset, and everything with NoSuperblock
}

// veritysetupVerifyArgs are the arguments of `veritysetup verify` for c.
func (c *diffCase) veritysetupArgs(dataPath, hashPath string) []string {
	args := []string{"verify", dataPath, hashPath, hex.EncodeToString(c.root)}
	p := &c.p
	if p.HashOffset != 0 {
		args = append(args, fmt.Sprintf("--hash-offset=%d", p.HashOffset))
	}
	if p.NoSuperblock {
		args = append(args, "--no-superblock", "--hash="+p.HashAlgorithm, fmt.Sprintf("--format=%d", p.HashType),
			fmt.Sprintf("--data-block-size=%d", p.DataBlockSize), fmt.Sprintf("--hash-block-size=%d", p.HashBlockSize),
			fmt.Sprintf("--data-blocks=%d", p.DataBlocks), "--salt="+SaltHex(p.Salt))
	}
	return args
}

// TestVeritysetupDifferential runs `veritysetup verify` and Verify over
// some 400 mutants of four small trees (superblock fields, tree bytes,
// spare areas resealed so that every digest above them matches, device
// sizes, data bytes, the root hash, and without a superblock the
// parameters given) and requires that Verify never accepts what
// veritysetup rejects. Where Verify is stricter on purpose (see
// docs/verity.md: sha1/sha256/sha512 only, block sizes up to 64 KiB, a
// superblock must declare its data blocks) the counts show it.
func TestVeritysetupDifferential(t *testing.T) {
	vs := needTool(t, "veritysetup")
	bases := []diffBase{
		{"sha256-v1-4096", Params{HashAlgorithm: "sha256", HashType: 1, DataBlockSize: 4096, HashBlockSize: 4096, Salt: SaltFromSeed([]byte("d"))}, 256, 4096},
		{"sha1-v0-512-offset", Params{HashAlgorithm: "sha1", HashType: 0, DataBlockSize: 512, HashBlockSize: 512, Salt: []byte{0xa5}, HashOffset: 1024}, 300, 0},
		{"sha1-v1-4096-nosalt", Params{HashAlgorithm: "sha1", HashType: 1, DataBlockSize: 4096, HashBlockSize: 4096, Salt: []byte{}}, 200, 0},
		{"sha512-v1-1024-nosb", Params{HashAlgorithm: "sha512", HashType: 1, DataBlockSize: 1024, HashBlockSize: 1024, Salt: []byte{1, 2, 3, 4}, NoSuperblock: true}, 129, 1024},
	}
	dir := t.TempDir()
	var agreeAccept, agreeReject, stricter, weaker int
	for bi, b := range bases {
		data := testData(int64(b.blocks)*int64(b.p.DataBlockSize)+int64(b.extra), uint64(100+bi))
		dataPath := filepath.Join(dir, b.name+".data")
		if err := os.WriteFile(dataPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cases := mutants(t, b, data)
		if testing.Short() {
			// Every fourth, the deterministic ones first among them.
			var some []diffCase
			for i := 0; i < len(cases); i += 4 {
				some = append(some, cases[i])
			}
			cases = some
		}
		for _, c := range cases {
			dp := dataPath
			d := data
			if c.data != nil {
				dp = filepath.Join(dir, "mutant.data")
				d = c.data
				if err := os.WriteFile(dp, d, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			hp := filepath.Join(dir, "mutant.hash")
			if err := os.WriteFile(hp, c.hash, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(vs, c.veritysetupArgs(dp, hp)...)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			out, verr := cmd.CombinedOutput()
			theirs := verr == nil
			opts := VerifyOptions{Params: Params{HashOffset: c.p.HashOffset}}
			if c.p.NoSuperblock {
				opts.Params = c.p
			}
			_, err := Verify(bg, bytes.NewReader(d), int64(len(d)), bytes.NewReader(c.hash), c.root, opts)
			ours := err == nil
			switch {
			case ours && theirs:
				agreeAccept++
			case !ours && !theirs:
				agreeReject++
			case !ours:
				stricter++
				t.Logf("%s/%s: we reject what veritysetup accepts: %v", b.name, c.name, err)
			default:
				weaker++
				t.Errorf("%s/%s: we accept what veritysetup rejects: %s", b.name, c.name, strings.TrimSpace(string(out)))
			}
		}
	}
	t.Logf("%d mutants: %d accepted by both, %d rejected by both, %d rejected by us only, %d accepted by us only",
		agreeAccept+agreeReject+stricter+weaker, agreeAccept, agreeReject, stricter, weaker)
	if agreeAccept == 0 || agreeReject == 0 {
		t.Fatal("the mutants do not exercise both outcomes")
	}
}

// mutants returns the mutants of a base: the unchanged tree first, then
// targeted mutations, then random ones.
func mutants(t *testing.T, b diffBase, data []byte) []diffCase {
	t.Helper()
	p := b.p
	p.DataBlocks = uint64(b.blocks)
	format := func(p Params) ([]byte, []byte, bool) {
		var h memFile
		r, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, p)
		if err != nil {
			return nil, nil, false
		}
		return h.b, r.RootHash, true
	}
	hash, root, _ := format(p)
	g, err := newGeometry(&p, p.DataBlocks)
	if err != nil {
		t.Fatal(err)
	}
	hbs := int(p.HashBlockSize)
	rng := rand.New(rand.NewPCG(uint64(b.blocks), uint64(len(b.name))))
	clone := func(b []byte) []byte { return append([]byte(nil), b...) }
	var cs []diffCase
	add := func(name string, d, h, r []byte, q Params) {
		cs = append(cs, diffCase{name: name, data: d, hash: h, root: r, p: q})
	}
	add("unchanged", nil, hash, root, p)
	sb := int(p.HashOffset)
	treeStart := int(g.hashStart) * hbs

	if !p.NoSuperblock {
		// Superblock fields set to values around the right one, as the
		// tree stands (only the spare areas can catch a lower count).
		field := func(name string, off, width int, v uint64) {
			h := clone(hash)
			switch width {
			case 2:
				binary.LittleEndian.PutUint16(h[sb+off:], uint16(v))
			case 4:
				binary.LittleEndian.PutUint32(h[sb+off:], uint32(v))
			case 8:
				binary.LittleEndian.PutUint64(h[sb+off:], v)
			}
			add(fmt.Sprintf("%s=%d", name, v), nil, h, root, p)
		}
		n := uint64(b.blocks)
		per := uint64(g.hashPerBlock)
		for _, v := range []uint64{n - 1, n - 2, n + 1, n - per, n - per + 1, n - per - 1, 1, 2, 0, 2 * n, 1 << 32, 1 << 62, n - n%per} {
			field("data_blocks", 72, 8, v)
		}
		for _, v := range []uint64{0, 1, 2, 1 << 31} {
			field("hash_type", 12, 4, v)
		}
		for _, v := range []uint64{0, 256, 512, 1024, 2048, 3000, 4096, 8192, 65536, 131072} {
			field("data_block_size", 64, 4, v)
			field("hash_block_size", 68, 4, v)
		}
		for _, v := range []uint64{0, uint64(len(p.Salt)) + 1, uint64(max(len(p.Salt), 1)) - 1, 256, 257, 65535} {
			field("salt_size", 80, 2, v)
		}
		for _, v := range []uint64{0, 2, 1 << 31} {
			field("version", 8, 4, v)
		}
		for _, alg := range []string{"sha1", "sha256", "sha512", "SHA256", "sha224", "md5", "", "sha256 "} {
			h := clone(hash)
			clear(h[sb+32 : sb+64])
			copy(h[sb+32:], alg)
			add("algorithm="+alg, nil, h, root, p)
		}
		h := clone(hash)
		copy(h[sb+32:sb+64], bytes.Repeat([]byte("s"), 32))
		add("algorithm unterminated", nil, h, root, p)
		for _, off := range []int{0, 7, 16, 31, 82, 87, 88, 343, 344, 511} {
			h := clone(hash)
			h[sb+off] ^= 0x40
			add(fmt.Sprintf("superblock byte %d", off), nil, h, root, p)
		}
		// Fields changed and the tree made again for them: a valid
		// tree of other parameters, with its root hash.
		for _, q := range []func(*Params){
			func(q *Params) { q.DataBlocks-- },
			func(q *Params) { q.DataBlocks = 1 },
			func(q *Params) { q.Salt = []byte{7, 7} },
			func(q *Params) { q.HashType ^= 1 },
			func(q *Params) { q.HashBlockSize *= 2 },
			func(q *Params) { q.DataBlockSize = 512; q.DataBlocks = uint64(len(data)) / 512 },
		} {
			r := p
			q(&r)
			if h, rt, ok := format(r); ok {
				add(fmt.Sprintf("reformatted %s/%d/%d/%d/%x", r.HashAlgorithm, r.HashType, r.DataBlockSize, r.DataBlocks, r.Salt), nil, h, rt, p)
			}
		}
	} else {
		// Without a superblock the parameters given are the mutants.
		for _, q := range []func(*Params){
			func(q *Params) { q.DataBlocks-- },
			func(q *Params) { q.DataBlocks -= 2 },
			func(q *Params) { q.DataBlocks++ },
			func(q *Params) { q.DataBlocks -= uint64(g.hashPerBlock) },
			func(q *Params) { q.DataBlocks = 1 },
			func(q *Params) { q.HashType ^= 1 },
			func(q *Params) { q.Salt = []byte{1, 2, 3} },
			func(q *Params) { q.Salt = []byte{} },
			func(q *Params) { q.HashBlockSize = 2048 },
			func(q *Params) { q.DataBlockSize = 512; q.DataBlocks *= 2 },
			func(q *Params) { q.HashAlgorithm = "sha256" },
			func(q *Params) { q.HashOffset = uint64(hbs) },
		} {
			r := p
			q(&r)
			add(fmt.Sprintf("given %s/%d/%d/%d/%d/%x/off%d", r.HashAlgorithm, r.HashType, r.DataBlockSize, r.HashBlockSize, r.DataBlocks, r.Salt, r.HashOffset), nil, hash, root, r)
		}
	}

	// Spare areas: one byte set in the padding of a digest (format 1
	// with sha1) or after the last digest of each level's last block,
	// with the digests above recomputed (reseal) so that only the spare
	// check can see it.
	for lvl := 0; lvl < g.levels; lvl++ {
		last := int(g.levelStart[lvl]+g.levelSize[lvl]-1) * hbs
		entries := g.dataBlocks
		if lvl > 0 {
			entries = g.levelSize[lvl-1]
		}
		used := int((entries-1)%uint64(g.hashPerBlock)) + 1
		if tail := last + used*g.stride; tail < last+hbs {
			h := clone(hash)
			h[tail+rng.IntN(last+hbs-tail)] = 1
			add(fmt.Sprintf("level %d tail, resealed", lvl), nil, h, reseal(h, g, &p), p)
		}
		if g.stride > g.digestSize {
			h := clone(hash)
			first := int(g.levelStart[lvl]) * hbs
			h[first+g.digestSize+rng.IntN(g.stride-g.digestSize)] = 0x80
			add(fmt.Sprintf("level %d padding, resealed", lvl), nil, h, reseal(h, g, &p), p)
		}
	}

	// Sizes.
	for _, k := range []int{1, hbs / 2, hbs, len(hash) - treeStart} {
		if k <= len(hash) {
			add(fmt.Sprintf("hash device %d bytes short", k), nil, hash[:len(hash)-k], root, p)
		}
	}
	add("hash device one byte longer", nil, append(clone(hash), 0), root, p)
	add("hash device one garbage block longer", nil, append(clone(hash), bytes.Repeat([]byte{0xff}, hbs)...), root, p)
	end := b.blocks * int(p.DataBlockSize)
	add("data one byte short", data[:end-1], hash, root, p)
	add("data one block short", data[:end-int(p.DataBlockSize)], hash, root, p)
	add("data one block longer", append(clone(data), make([]byte, p.DataBlockSize)...), hash, root, p)
	if b.extra > 0 {
		d := clone(data)
		d[end] ^= 1
		add("byte after the data blocks", d, hash, root, p)
	}

	// The root hash.
	r := clone(root)
	r[len(r)-1] ^= 1
	add("root hash bit", nil, hash, r, p)
	add("root hash short", nil, hash, root[:len(root)-1], p)
	add("root hash long", nil, hash, append(clone(root), 0), p)

	// Random: a data byte, a tree byte (plain or resealed), a
	// superblock byte, until the base has about 100 mutants.
	for len(cs) < 100 {
		switch k := rng.IntN(4); k {
		case 0:
			d := clone(data)
			i := rng.IntN(end)
			d[i] ^= byte(1 + rng.IntN(255))
			add(fmt.Sprintf("data byte %d", i), d, hash, root, p)
		case 1, 2:
			h := clone(hash)
			i := treeStart + rng.IntN(len(hash)-treeStart)
			h[i] ^= byte(1 + rng.IntN(255))
			rt := root
			name := fmt.Sprintf("tree byte %d", i)
			if k == 2 {
				rt = reseal(h, g, &p)
				name += ", resealed"
			}
			add(name, nil, h, rt, p)
		case 3:
			if p.NoSuperblock {
				continue
			}
			h := clone(hash)
			i := sb + rng.IntN(SuperblockSize)
			h[i] = byte(rng.IntN(256))
			add(fmt.Sprintf("superblock byte %d = %d", i-sb, h[i]), nil, h, root, p)
		}
	}
	return cs
}
