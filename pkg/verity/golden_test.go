package verity

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// updateGolden is internal/golden's switch, read directly so that
// pkg/verity's tests import nothing of ours either.
var updateGolden = os.Getenv("IMAGEBUILDER_UPDATE_GOLDEN") != ""

const goldenPath = "../../testdata/verity/golden.txt"

// goldenCases are every seventh case of the veritysetup matrix, with the
// data of that case, plus seeded defaults.
func goldenCases() (names []string, run func(name string) (root, fileSum string, err error)) {
	byName := map[string]func() (string, string, error){}
	for i, c := range matrix() {
		if i%7 != 0 {
			continue
		}
		names = append(names, c.String())
		byName[c.String()] = func() (string, string, error) {
			data := testData(c.size, uint64(i))
			var h memFile
			if c.appended {
				h.b = append([]byte(nil), data...)
			}
			r, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, c.params())
			if err != nil {
				return "", "", err
			}
			return r.RootHashHex(), fmt.Sprintf("%x", sha256.Sum256(h.b)), nil
		}
	}
	for _, n := range []int64{1, 129, 3000} {
		name := fmt.Sprintf("seeded-default-n%d", n*4096)
		names = append(names, name)
		byName[name] = func() (string, string, error) {
			p := DefaultParams()
			p.Salt = SaltFromSeed([]byte("imagebuilder"))
			p.UUID = UUIDFromSeed([]byte("imagebuilder"))
			data := testData(n*4096, uint64(n))
			var h memFile
			r, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, p)
			if err != nil {
				return "", "", err
			}
			return r.RootHashHex(), fmt.Sprintf("%x", sha256.Sum256(h.b)), nil
		}
	}
	return names, func(name string) (string, string, error) { return byName[name]() }
}

// TestGolden pins root hashes and hash file digests of fixed inputs, so a
// change of output shows without veritysetup. The values were produced by
// Format and are equal to veritysetup 2.6.1's (TestVeritysetupMatrix).
func TestGolden(t *testing.T) {
	names, run := goldenCases()
	if updateGolden {
		var b strings.Builder
		b.WriteString("# case root-hash sha256-of-hash-file (see pkg/verity/golden_test.go)\n")
		for _, n := range names {
			root, sum, err := run(n)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %s %s\n", n, root, sum)
		}
		if err := os.WriteFile(goldenPath, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][2]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 3 && !strings.HasPrefix(fs[0], "#") {
			want[fs[0]] = [2]string{fs[1], fs[2]}
		}
	}
	if len(want) != len(names) {
		t.Fatalf("golden file has %d cases, want %d (make golden rewrites it)", len(want), len(names))
	}
	for _, n := range names {
		root, sum, err := run(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if w := want[n]; root != w[0] || sum != w[1] {
			t.Errorf("%s: root %s file %s, golden %s %s", n, root, sum, w[0], w[1])
		}
		if _, err := hex.DecodeString(root); err != nil {
			t.Fatal(err)
		}
	}
}
