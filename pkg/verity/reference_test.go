package verity

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// referenceTree is a plain, sequential transcription of cryptsetup's
// VERITY_create_hash: each level is hashed from the whole level below,
// top level first in the file. It returns the root hash and the tree
// (from the hash start block).
func referenceTree(data []byte, p Params) (root, tree []byte) {
	g, err := newGeometry(&p, uint64(len(data))/uint64(p.DataBlockSize))
	if err != nil {
		panic(err)
	}
	h := g.hasher(&p)
	hbs := int(p.HashBlockSize)
	below, bs := data, int(p.DataBlockSize)
	levels := make([][]byte, g.levels)
	for l := 0; l < g.levels; l++ {
		var out []byte
		for i := 0; i < len(below); i += bs * g.hashPerBlock {
			block := make([]byte, hbs)
			for j := 0; j < g.hashPerBlock && i+j*bs < len(below); j++ {
				copy(block[j*g.stride:], h.sum(nil, below[i+j*bs:i+(j+1)*bs]))
			}
			out = append(out, block...)
		}
		levels[l] = out
		below, bs = out, hbs
	}
	for l := g.levels - 1; l >= 0; l-- {
		tree = append(tree, levels[l]...)
	}
	return h.sum(nil, below[:bs]), tree
}

// TestFormatManyChunks compares Format, from memory and from a file (which
// is mapped), with the reference on data of many chunks and with 1 to 5
// workers.
func TestFormatManyChunks(t *testing.T) {
	sizes := []struct {
		dbs, hbs uint32
		n        int64
	}{{512, 4096, 20000}, {4096, 4096, 2500}, {1024, 512, 9000}}
	if testing.Short() {
		sizes = sizes[:1]
	}
	for _, procs := range []int{1, 2, 5} {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("procs%d-d%d-h%d-n%d", procs, sz.dbs, sz.hbs, sz.n), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				p := DefaultParams()
				p.DataBlockSize, p.HashBlockSize = sz.dbs, sz.hbs
				p.Salt = []byte("salt")
				p.NoSuperblock = true
				data := testData(sz.n*int64(sz.dbs), uint64(sz.n))
				wantRoot, wantTree := referenceTree(data, p)
				path := filepath.Join(t.TempDir(), "data")
				os.WriteFile(path, data, 0o644)
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				for name, r := range map[string]interface {
					ReadAt([]byte, int64) (int, error)
				}{"memory": bytes.NewReader(data), "file": f, "file-read": f} {
					useMmap = name != "file-read"
					var h memFile
					res, err := Format(bg, r, int64(len(data)), &h, p)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(res.RootHash, wantRoot) || !bytes.Equal(h.b, wantTree) {
						t.Fatalf("%s: differs from the reference", name)
					}
					if err := verifyAt(r, int64(len(data)), &h, wantRoot, res.Params); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
				useMmap = true
			})
		}
	}
}

// TestFormatFileShorterThanSaid gives Format a file shorter than the size
// it is told (as when a file is cut while being read): an error, not a
// crash, from the mapped and from the read path.
func TestFormatFileShorterThanSaid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	os.WriteFile(path, testData(100*4096, 1), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range []interface {
		ReadAt([]byte, int64) (int, error)
	}{f, bytes.NewReader(testData(100*4096, 1))} {
		_, err = Format(bg, r, 3000*4096, &memFile{}, DefaultParams())
		if err == nil {
			t.Fatalf("%T: no error", r)
		}
		t.Logf("%T: %v", r, err)
	}
}
