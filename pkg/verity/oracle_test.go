package verity

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// needTool finds a reference tool; it skips the test when the tool is
// missing, except under CI (make test installs it), where it fails.
func needTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (run scripts/testdeps.sh)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

// testData is n bytes of reproducible pseudo-random data in which every
// fifth 512-byte sector is zero.
func testData(n int64, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	r := rand.NewChaCha8(s)
	b := make([]byte, n)
	r.Read(b)
	for off := int64(0); off < n; off += 5 * 512 {
		clear(b[off:min(off+512, n)])
	}
	return b
}

// matrixCase is one set of veritysetup parameters and a data size.
type matrixCase struct {
	alg        string
	format     uint32
	dbs, hbs   uint32
	size       int64 // bytes of data
	salt       string
	noSB       bool
	offset     uint64
	dataBlocks uint64
	appended   bool // hash area in the data file, after the data
}

func (c matrixCase) String() string {
	s := fmt.Sprintf("%s-v%d-d%d-h%d-n%d-s%d", c.alg, c.format, c.dbs, c.hbs, c.size, len(c.salt)/2)
	if c.noSB {
		s += "-nosb"
	}
	if c.offset != 0 {
		s += fmt.Sprintf("-off%d", c.offset)
	}
	if c.dataBlocks != 0 {
		s += fmt.Sprintf("-blocks%d", c.dataBlocks)
	}
	if c.appended {
		s += "-appended"
	}
	return s
}

func (c matrixCase) params() Params {
	p := Params{HashAlgorithm: c.alg, HashType: c.format, DataBlockSize: c.dbs, HashBlockSize: c.hbs,
		DataBlocks: c.dataBlocks, NoSuperblock: c.noSB, HashOffset: c.offset}
	p.Salt, _ = ParseSalt(c.salt)
	p.UUID, _ = ParseUUID(testUUID)
	return p
}

const testUUID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0"

var salt32 = strings.Repeat("5a17", 16)
var salt256 = strings.Repeat("0123456789abcdef", 32)

// matrix is the set of cases compared with veritysetup.
func matrix() []matrixCase {
	base := matrixCase{alg: "sha256", format: 1, dbs: 4096, hbs: 4096, salt: salt32}
	var cs []matrixCase
	add := func(c matrixCase) { cs = append(cs, c) }
	// Sizes around the boundaries of 128 digests per block.
	for _, n := range []int64{1, 2, 3, 127, 128, 129, 255, 256, 257, 1000} {
		c := base
		c.size = n * 4096
		add(c)
	}
	// Three and four levels with small hash blocks (16 digests a block).
	for _, n := range []int64{16, 17, 256, 257, 4096, 4097} {
		c := base
		c.dbs, c.hbs, c.size = 512, 512, n*512
		add(c)
	}
	// A size that is not a multiple of the block size, with --data-blocks,
	// and a prefix of the data.
	for _, c := range []matrixCase{
		{size: 5000, dataBlocks: 1}, {size: 3*4096 + 100, dataBlocks: 3}, {size: 10 * 4096, dataBlocks: 2},
		{size: 200 * 4096, dataBlocks: 129},
	} {
		c2 := base
		c2.size, c2.dataBlocks = c.size, c.dataBlocks
		add(c2)
	}
	// Every algorithm, format and salt length on sizes with 1, 2 and 3
	// levels.
	for _, alg := range []string{"sha1", "sha256", "sha512"} {
		for _, f := range []uint32{0, 1} {
			for _, salt := range []string{"-", "a5", salt32, salt256} {
				for _, sz := range []struct {
					dbs, hbs uint32
					n        int64
				}{{4096, 4096, 1}, {4096, 4096, 129}, {1024, 512, 300}, {512, 1024, 2049}} {
					add(matrixCase{alg: alg, format: f, dbs: sz.dbs, hbs: sz.hbs, size: sz.n * int64(sz.dbs), salt: salt})
				}
			}
		}
	}
	// Block sizes, independent of each other.
	for _, dbs := range []uint32{512, 1024, 2048, 4096, 8192, 65536} {
		for _, hbs := range []uint32{512, 2048, 4096, 65536} {
			add(matrixCase{alg: "sha256", format: 1, dbs: dbs, hbs: hbs, size: 70 * int64(dbs), salt: salt32})
			add(matrixCase{alg: "sha1", format: 0, dbs: dbs, hbs: hbs, size: 33 * int64(dbs), salt: "a5"})
		}
	}
	// Superblock off, hash offsets, and the hash area appended to the data.
	for _, noSB := range []bool{false, true} {
		for _, off := range []uint64{0, 4096, 65536} {
			for _, hbs := range []uint32{512, 4096} {
				add(matrixCase{alg: "sha256", format: 1, dbs: 4096, hbs: hbs, size: 129 * 4096, salt: salt32, noSB: noSB, offset: off})
			}
		}
		for _, n := range []int64{1, 129, 1000} {
			add(matrixCase{alg: "sha256", format: 1, dbs: 4096, hbs: 4096, size: n * 4096, salt: salt32, noSB: noSB, offset: uint64(n * 4096), appended: true})
		}
		add(matrixCase{alg: "sha512", format: 0, dbs: 1024, hbs: 512, size: 300 * 1024, salt: "-", noSB: noSB, offset: 300 * 1024, appended: true})
	}
	for _, off := range []uint64{512, 1536, 8192 + 512} {
		add(matrixCase{alg: "sha256", format: 1, dbs: 4096, hbs: 4096, size: 129 * 4096, salt: salt32, offset: off})
	}
	return cs
}

var rootHashRE = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

func veritysetupArgs(c matrixCase) []string {
	args := []string{
		"--hash=" + c.alg, fmt.Sprintf("--format=%d", c.format),
		fmt.Sprintf("--data-block-size=%d", c.dbs), fmt.Sprintf("--hash-block-size=%d", c.hbs),
		"--salt=" + c.salt, "--uuid=" + testUUID,
	}
	if c.noSB {
		args = append(args, "--no-superblock")
	}
	if c.offset != 0 {
		args = append(args, fmt.Sprintf("--hash-offset=%d", c.offset))
	}
	if c.dataBlocks != 0 {
		args = append(args, fmt.Sprintf("--data-blocks=%d", c.dataBlocks))
	}
	return args
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestVeritysetupMatrix formats every case with veritysetup and with
// Format and compares the root hash and the whole hash file; then
// `veritysetup verify` checks our tree and Verify checks theirs.
func TestVeritysetupMatrix(t *testing.T) {
	vs := needTool(t, "veritysetup")
	cases := matrix()
	for i, c := range cases {
		if testing.Short() && i%6 != 0 {
			continue
		}
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			data := testData(c.size, uint64(i))
			dataPath := filepath.Join(dir, "data")
			theirs, ours := filepath.Join(dir, "theirs"), filepath.Join(dir, "ours")
			if err := os.WriteFile(dataPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			theirData := dataPath
			if c.appended {
				theirData = theirs
				if err := os.WriteFile(theirs, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := runTool(t, vs, append([]string{"format", theirData, theirs}, veritysetupArgs(c)...)...)
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := rootHashRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no root hash in veritysetup output:\n%s", out)
			}
			wantRoot := m[1]

			f, err := os.Create(ours)
			if err != nil {
				t.Fatal(err)
			}
			ourData := dataPath
			if c.appended {
				ourData = ours
				if _, err := f.Write(data); err != nil {
					t.Fatal(err)
				}
			}
			res, err := Format(bg, bytes.NewReader(data), int64(len(data)), f, c.params())
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if got := res.RootHashHex(); got != wantRoot {
				t.Fatalf("root hash %s, veritysetup %s", got, wantRoot)
			}
			a, _ := os.ReadFile(ours)
			b, _ := os.ReadFile(theirs)
			if !bytes.Equal(a, b) {
				t.Fatalf("hash file differs from veritysetup's: %d bytes vs %d, first difference at %d", len(a), len(b), firstDiff(a, b))
			}
			if want := int64(len(b)); res.HashDeviceSize() != want && !(c.noSB && res.Levels == 0) {
				t.Errorf("HashDeviceSize %d, file %d", res.HashDeviceSize(), want)
			}

			// veritysetup verify accepts ours.
			vargs := []string{"verify", ourData, ours, wantRoot}
			if c.noSB {
				vargs = append(vargs, veritysetupArgs(c)...)
				if c.appended && c.dataBlocks == 0 {
					vargs = append(vargs, fmt.Sprintf("--data-blocks=%d", c.size/int64(c.dbs)))
				}
			} else if c.offset != 0 {
				vargs = append(vargs, fmt.Sprintf("--hash-offset=%d", c.offset))
			}
			if out, err := runTool(t, vs, vargs...); err != nil {
				t.Fatalf("veritysetup verify of our tree: %v\n%s", err, out)
			}
			// Verify accepts theirs.
			hf, err := os.Open(theirs)
			if err != nil {
				t.Fatal(err)
			}
			defer hf.Close()
			root, _ := hex.DecodeString(wantRoot)
			p := c.params()
			if c.dataBlocks == 0 {
				p.DataBlocks = uint64(c.size) / uint64(c.dbs)
			}
			if err := verifyAt(bytes.NewReader(data), int64(len(data)), hf, root, p); err != nil {
				t.Fatalf("Verify of veritysetup's tree: %v", err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
