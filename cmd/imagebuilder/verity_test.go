package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

func writeVerityData(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// verityJSON is the documented JSON form of verity.Result (docs/verity.md),
// key by key, to check what the CLI prints.
type verityJSON struct {
	RootHash       string `json:"root_hash,omitempty"`
	HashAlgorithm  string `json:"hash_algorithm"`
	HashType       uint32 `json:"hash_type"`
	DataBlockSize  uint32 `json:"data_block_size"`
	HashBlockSize  uint32 `json:"hash_block_size"`
	DataBlocks     uint64 `json:"data_blocks"`
	Salt           string `json:"salt"`
	UUID           string `json:"uuid,omitempty"`
	Superblock     bool   `json:"superblock"`
	HashOffset     uint64 `json:"hash_offset"`
	HashStartBlock uint64 `json:"hash_start_block"`
	HashBlocks     uint64 `json:"hash_blocks"`
	Levels         int    `json:"levels"`
	HashDeviceSize int64  `json:"hash_device_size"`
	Table          string `json:"table,omitempty"`
	SystemdCmdline string `json:"systemd_cmdline,omitempty"`
}

func TestVerityFormatVerifyDump(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hash := filepath.Join(dir, "hash")
	writeVerityData(t, data, 300*4096)
	code, out, stderr := runCaptured(t, "verity", "format", data, hash, "--seed=test", "--root-hash-file", filepath.Join(dir, "root"))
	if code != 0 {
		t.Fatalf("format: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"VERITY header information for " + hash, "Data blocks:     \t300", "Hash blocks:     \t4", "Root hash:      \t", "Hash device size: \t20480 [bytes]"} {
		if !strings.Contains(out, want) {
			t.Errorf("format output lacks %q:\n%s", want, out)
		}
	}
	root, _ := os.ReadFile(filepath.Join(dir, "root"))
	rootHex := strings.TrimSpace(string(root))
	if !strings.Contains(out, rootHex) || len(rootHex) != 64 {
		t.Fatalf("root hash file %q", root)
	}
	first, _ := os.ReadFile(hash)
	// Reproducible: the same seed gives the same bytes.
	if code, _, stderr := runCaptured(t, "verity", "format", data, hash, "--seed=test"); code != 0 {
		t.Fatal(stderr)
	}
	if again, _ := os.ReadFile(hash); !bytes.Equal(first, again) {
		t.Fatal("two seeded runs differ")
	}
	if code, out, stderr := runCaptured(t, "verity", "verify", data, hash, rootHex); code != 0 || !strings.Contains(out, "match root hash") {
		t.Fatalf("verify: exit %d %s %s", code, out, stderr)
	}
	if code, _, stderr := runCaptured(t, "verity", "verify", data, hash, "--root-hash-file", filepath.Join(dir, "root")); code != 0 {
		t.Fatalf("verify --root-hash-file: %s", stderr)
	}
	code, out, _ = runCaptured(t, "verity", "dump", hash, "--json")
	var j verityJSON
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.DataBlocks != 300 || j.HashDeviceSize != 20480 || j.UUID == "" {
		t.Fatalf("dump --json: %d %s", code, out)
	}
	code, out, _ = runCaptured(t, "verity", "format", data, hash, "--seed=test", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.RootHash != rootHex || !strings.Contains(j.Table, " 300 1 sha256 "+rootHex) {
		t.Fatalf("format --json: %d %s", code, out)
	}

	// A flipped bit in the data is named.
	b, _ := os.ReadFile(data)
	b[77*4096+5] ^= 0x10
	os.WriteFile(data, b, 0o644)
	code, _, stderr = runCaptured(t, "verity", "verify", data, hash, rootHex)
	if code != 1 || !strings.Contains(stderr, "data block 77 is corrupt") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("verify of corrupt data: exit %d %q", code, stderr)
	}
}

func TestVerityAppended(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "disk")
	writeVerityData(t, data, 129*4096)
	code, out, stderr := runCaptured(t, "verity", "format", data, data, "--no-superblock", "--salt=-", "--json")
	if code != 0 {
		t.Fatalf("format: %s", stderr)
	}
	var j verityJSON
	json.Unmarshal([]byte(out), &j)
	st, _ := os.Stat(data)
	if j.HashOffset != 129*4096 || st.Size() != 129*4096+3*4096 || j.HashStartBlock != 129 {
		t.Fatalf("appended: offset %d start %d size %d", j.HashOffset, j.HashStartBlock, st.Size())
	}
	code, _, stderr = runCaptured(t, "verity", "verify", data, data, j.RootHash, "--no-superblock", "--salt=-", "--hash-offset", fmt.Sprint(129*4096), "--data-blocks=129")
	if code != 0 {
		t.Fatalf("verify: %s", stderr)
	}
	code, _, stderr = runCaptured(t, "verity", "verify", data, data, j.RootHash, "--no-superblock", "--salt=-", "--hash-offset", fmt.Sprint(129*4096))
	if code != 1 || !strings.Contains(stderr, "overlaps the hash area") {
		t.Fatalf("verify without --data-blocks: %d %s", code, stderr)
	}
	// With a superblock, at an explicit offset; verify takes the rest from it.
	sb := filepath.Join(dir, "sb")
	writeVerityData(t, sb, 100*4096)
	code, out, stderr = runCaptured(t, "verity", "format", sb, sb, "--hash-offset=1048576", "--data-blocks=100", "--json")
	if code != 0 {
		t.Fatalf("format with superblock: %s", stderr)
	}
	json.Unmarshal([]byte(out), &j)
	if st, _ := os.Stat(sb); st.Size() != 1048576+4096+4096 || j.HashStartBlock != 257 {
		t.Fatalf("appended with superblock: size %d start %d", st.Size(), j.HashStartBlock)
	}
	if code, _, stderr := runCaptured(t, "verity", "verify", sb, sb, j.RootHash, "--hash-offset=1048576"); code != 0 {
		t.Fatalf("verify with superblock: %s", stderr)
	}
	if code, _, stderr := runCaptured(t, "verity", "dump", sb, "--hash-offset=1048576"); code != 0 {
		t.Fatalf("dump at offset: %s", stderr)
	}

	// A failure leaves the data file as it was.
	before, _ := os.ReadFile(data)
	code, _, stderr = runCaptured(t, "verity", "format", data, data, "--hash-offset=4096", "--data-blocks=2")
	if code != 1 || !strings.Contains(stderr, "overlaps the hash area") {
		t.Fatalf("overlap: %d %s", code, stderr)
	}
	if after, _ := os.ReadFile(data); !bytes.Equal(before, after) {
		t.Fatal("failed format changed the data file")
	}
}

func TestVerityBadInput(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeVerityData(t, data, 64*4096)
	odd := filepath.Join(dir, "odd")
	writeVerityData(t, odd, 5000)
	good := filepath.Join(dir, "good")
	if code, _, stderr := runCaptured(t, "verity", "format", data, good); code != 0 {
		t.Fatal(stderr)
	}
	goodBytes, _ := os.ReadFile(good)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, goodBytes[:len(goodBytes)-100], 0o644)
	badMagic := filepath.Join(dir, "badmagic")
	os.WriteFile(badMagic, append([]byte("VERITY"), goodBytes[6:]...), 0o644)
	badVersion := filepath.Join(dir, "badversion")
	bv := append([]byte(nil), goodBytes...)
	bv[8] = 2
	os.WriteFile(badVersion, bv, 0o644)
	out := filepath.Join(dir, "out")
	root := strings.Repeat("00", 32)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"dbs not power of two", []string{"verity", "format", data, out, "--data-block-size=3000"}, 2, "data block size 3000 is not a power of two"},
		{"hbs out of range", []string{"verity", "format", data, out, "--hash-block-size=131072"}, 2, "hash block size 131072"},
		{"dbs too small", []string{"verity", "format", data, out, "--data-block-size=256"}, 2, "data block size 256"},
		{"salt not hex", []string{"verity", "format", data, out, "--salt=xyz"}, 2, `salt "xyz" is not hex`},
		{"salt too long", []string{"verity", "format", data, out, "--salt=" + strings.Repeat("ab", 257)}, 2, "salt is 257 bytes"},
		{"unknown algorithm", []string{"verity", "format", data, out, "--hash=md5"}, 2, `unknown hash algorithm "md5"`},
		{"bad uuid", []string{"verity", "format", data, out, "--uuid=nope"}, 2, `UUID "nope"`},
		{"size not multiple", []string{"verity", "format", odd, out}, 1, "data size 5000 is not a multiple of the data block size 4096"},
		{"missing data", []string{"verity", "format", filepath.Join(dir, "nothing"), out}, 1, "no such file"},
		{"hash file too small", []string{"verity", "verify", data, short, root}, 1, "hash device is too small"},
		{"wrong magic", []string{"verity", "dump", badMagic}, 1, "bad magic"},
		{"wrong version", []string{"verity", "dump", badVersion}, 1, "unsupported superblock version 2"},
		{"verify wrong magic", []string{"verity", "verify", data, badMagic, root}, 1, "bad magic"},
		{"root hash not hex", []string{"verity", "verify", data, good, "xyz"}, 2, `root hash "xyz" is not hex`},
		{"wrong root hash", []string{"verity", "verify", data, good, root}, 1, "does not match the root hash"},
		{"no root hash", []string{"verity", "verify", data, good}, 2, "give ROOTHASH"},
		{"format args", []string{"verity", "format", data}, 2, "takes 2 argument"},
		// Every bad flag value is a usage error naming its flag (exit 2).
		{"bad format", []string{"verity", "format", data, out, "--format=2"}, 2, "--format: hash format 2"},
		{"offset unaligned", []string{"verity", "format", data, out, "--hash-offset=100"}, 2, "--hash-offset: hash offset 100 is not a multiple of 512"},
		{"offset unaligned nosb", []string{"verity", "format", data, out, "--no-superblock", "--hash-offset=512"}, 2, "--hash-offset: hash offset 512 is not a multiple of the hash block size 4096"},
		{"verify bad hash", []string{"verity", "verify", data, good, root, "--hash=sha3"}, 2, `--hash: unknown hash algorithm "sha3"`},
		{"verify bad salt", []string{"verity", "verify", data, good, root, "--salt=zz"}, 2, `--salt: salt "zz" is not hex`},
		{"verify bad uuid", []string{"verity", "verify", data, good, root, "--uuid=x"}, 2, `--uuid: UUID "x"`},
		{"verify nosb without salt", []string{"verity", "verify", data, good, root, "--no-superblock"}, 2, "--no-superblock needs --salt"},
		{"dump offset unaligned", []string{"verity", "dump", good, "--hash-offset=100"}, 2, "--hash-offset: hash offset 100 is not a multiple of 512"},
		{"empty json file", []string{"verity", "dump", good, "--json="}, 2, "empty file name"},
		{"seed without effect", []string{"verity", "format", data, out, "--seed=x", "--salt=-", "--uuid=" + verity.FormatUUID([16]byte{1})}, 2, "--seed: has no effect"},
		{"hash to stdout", []string{"verity", "format", data, "-"}, 2, "HASH -: stdin and stdout are not supported"},
		{"data from stdin", []string{"verity", "verify", "-", good, root}, 2, "DATA -: stdin and stdout are not supported"},
		{"hash is a directory", []string{"verity", "format", data, dir}, 2, "HASH " + dir + ": is a directory"},
		{"root hash file is a directory", []string{"verity", "format", data, out, "--root-hash-file", dir}, 2, dir + ": is a directory"},
		{"json file is a directory", []string{"verity", "dump", good, "--json=" + dir}, 2, dir + ": is a directory"},
		// The work fails: exit 1, naming the command and the file.
		{"root hash file missing", []string{"verity", "verify", data, good, "--root-hash-file", filepath.Join(dir, "nothing")}, 1, "verity verify " + data + " " + good + ": open " + filepath.Join(dir, "nothing") + ": no such file"},
		{"dump missing", []string{"verity", "dump", filepath.Join(dir, "nothing")}, 1, "verity dump: open " + filepath.Join(dir, "nothing") + ": no such file"},
		{"root hash wrong length", []string{"verity", "verify", data, good, "00"}, 1, "root hash is 1 bytes, a sha256 digest is 32"},
		{"verify flag disagrees", []string{"verity", "verify", data, good, root, "--hash-block-size=512"}, 1, "superblock at offset 0 says hash block size 4096, expected 512"},
		{"verify format disagrees", []string{"verity", "verify", data, good, root, "--format=0"}, 1, "superblock at offset 0 says hash format 1, expected 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCaptured(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Fatalf("error is not one line: %q", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("partial output left under the final name")
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Fatalf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

// TestVerityCompletion: the shell completion offers the subcommands and the
// values of --hash.
func TestVerityCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "verity", ""}, []string{"dump\t", "format\t", "verify\t"}},
		{[]string{"__complete", "verity", "format", "--hash", ""}, []string{"sha1\n", "sha256\n", "sha512\n"}},
		{[]string{"__complete", "verity", "verify", "--format", ""}, []string{"0\tChrome OS", "1\tnormal"}},
	}
	for _, tc := range tests {
		code, out, stderr := runCaptured(t, tc.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: completions %q lack %q", tc.args, out, w)
			}
		}
	}
}

// TestVerityCLIAgainstVeritysetup runs `imagebuilder verity format` (the
// file path: mapped data, atomic output, the hash area appended to the
// data) and `veritysetup format` with the same parameters and compares the
// root hash and every byte of the output files; `veritysetup verify`
// accepts ours and our verify accepts theirs.
func TestVerityCLIAgainstVeritysetup(t *testing.T) {
	if testing.Short() {
		t.Skip("runs veritysetup; skipped with -short")
	}
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("veritysetup is not installed (run scripts/testdeps.sh)")
		}
		t.Skip("veritysetup is not installed")
	}
	const salt, uuid = "0011223344556677", "6a0c5e2f-1b3d-4e8a-9c7f-0d2e4b6a8c1e"
	tests := []struct {
		name     string
		size     int
		appended bool
		args     []string // given to both tools
	}{
		{"separate default", 1000 * 4096, false, nil},
		{"separate sha512 v0 small blocks", 777 * 1024, false, []string{"--hash=sha512", "--format=0", "--data-block-size=1024", "--hash-block-size=512"}},
		{"separate offset", 129 * 4096, false, []string{"--hash-offset=8192"}},
		{"separate no superblock", 129 * 4096, false, []string{"--no-superblock"}},
		{"prefix", 300*4096 + 100, false, []string{"--data-blocks=257"}},
		{"appended superblock", 300 * 4096, true, []string{"--hash-offset=1228800"}},
		{"appended no superblock", 300 * 4096, true, []string{"--no-superblock", "--hash-offset=1228800"}},
		{"appended after a prefix", 300 * 4096, true, []string{"--data-blocks=200", "--hash-offset=1228800"}},
	}
	rootRE := regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			b := writeVerityData(t, data, tc.size)
			ours, theirs := filepath.Join(dir, "ours"), filepath.Join(dir, "theirs")
			ourData, theirData := data, data
			if tc.appended {
				os.WriteFile(ours, b, 0o644)
				os.WriteFile(theirs, b, 0o644)
				ourData, theirData = ours, theirs
			}
			args := append([]string{"--salt=" + salt, "--uuid=" + uuid}, tc.args...)
			cmd := exec.Command(vs, append([]string{"format", theirData, theirs}, args...)...)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := rootRE.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no root hash from veritysetup:\n%s", out)
			}
			code, stdout, stderr := runCaptured(t, append([]string{"verity", "format", ourData, ours}, args...)...)
			if code != 0 {
				t.Fatalf("imagebuilder verity format: exit %d: %s", code, stderr)
			}
			if mm := rootRE.FindStringSubmatch(stdout); mm == nil || mm[1] != string(m[1]) {
				t.Fatalf("root hash: ours %q, veritysetup %s", stdout, m[1])
			}
			a, _ := os.ReadFile(ours)
			c, _ := os.ReadFile(theirs)
			if !bytes.Equal(a, c) {
				t.Fatalf("output differs from veritysetup's: %d bytes vs %d", len(a), len(c))
			}
			vargs := args
			if tc.appended && !strings.Contains(strings.Join(args, " "), "--data-blocks") {
				vargs = append(vargs, "--data-blocks=300")
			}
			if out, err := exec.Command(vs, append([]string{"verify", ourData, ours, string(m[1])}, vargs...)...).CombinedOutput(); err != nil {
				t.Fatalf("veritysetup verify of ours: %v\n%s", err, out)
			}
			if code, _, stderr := runCaptured(t, append([]string{"verity", "verify", theirData, theirs, string(m[1])}, vargs...)...); code != 0 {
				t.Fatalf("imagebuilder verity verify of theirs: %s", stderr)
			}
		})
	}
}

// TestVerityVerifyLoweredDataBlocks is the recipe of issue 10: a hash
// device whose superblock data_blocks was lowered from 256 to 255 (bytes
// 72-73) still has a valid tree and root hash for the first 255 blocks,
// and veritysetup verify rejects it ("Spare area is not zeroed"); so must
// we.
func TestVerityVerifyLoweredDataBlocks(t *testing.T) {
	dir := t.TempDir()
	data, hash := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
	writeVerityData(t, data, 256*4096)
	root := filepath.Join(dir, "root")
	if code, _, stderr := runCaptured(t, "verity", "format", data, hash, "--root-hash-file", root); code != 0 {
		t.Fatal(stderr)
	}
	b, _ := os.ReadFile(hash)
	if b[72] != 0 || b[73] != 1 {
		t.Fatalf("data_blocks bytes %x, want 0001 (256)", b[72:74])
	}
	b[72], b[73] = 255, 0
	os.WriteFile(hash, b, 0o644)
	code, _, stderr := runCaptured(t, "verity", "verify", data, hash, "--root-hash-file", root)
	if code != 1 || !strings.Contains(stderr, "its spare area is not zero") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("verify of the lowered superblock: exit %d %q", code, stderr)
	}
	if vs, err := exec.LookPath("veritysetup"); err == nil {
		rh, _ := os.ReadFile(root)
		out, err := exec.Command(vs, "verify", data, hash, strings.TrimSpace(string(rh))).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Spare area is not zeroed") {
			t.Fatalf("veritysetup verify: %v\n%s", err, out)
		}
	}
}

// sparseData makes a file of size bytes of zeros (a hole: it costs no
// disk, and hashing it takes long enough to interrupt).
func sparseData(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestVerityFormatInterrupted kills, terminates or interrupts a real
// `imagebuilder verity format` process while it hashes 1 GiB: nothing is
// left in the directory but DATA, unchanged in size, whether HASH is a
// file of its own (an unnamed file until complete) or DATA itself (the
// hash area is computed before DATA is touched); SIGINT and SIGTERM stop
// the command through its context (it names itself when it stops, which
// the one-second fallback in run does not), with exit status 130 and 143.
func TestVerityFormatInterrupted(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc to see when the child has started")
	}
	const size = 1 << 30
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT} {
		for _, appended := range []bool{false, true} {
			name := sig.String()
			if appended {
				name += " appended"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				data := filepath.Join(dir, "data")
				sparseData(t, data, size)
				hash := filepath.Join(dir, "hash")
				if appended {
					hash = data
				}
				cmd := cliCommand("verity", "format", data, hash, "--root-hash-file", filepath.Join(dir, "root"), "--json="+filepath.Join(dir, "json"))
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if !waitOpen(cmd.Process.Pid, 10*time.Second, func(p string) bool { return p == data }) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("the child never opened %s: %s", data, stderr.String())
				}
				time.Sleep(100 * time.Millisecond)
				cmd.Process.Signal(sig)
				err := cmd.Wait()
				st := cmd.ProcessState
				switch {
				case sig == syscall.SIGKILL:
					if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
						t.Fatalf("not killed: %v %s", err, stderr.String())
					}
				case st.ExitCode() != 128+int(sig):
					t.Fatalf("exit %d (%v), want %d: %s", st.ExitCode(), err, 128+int(sig), stderr.String())
				case !strings.Contains(stderr.String(), "imagebuilder: verity format: interrupted by"):
					t.Fatalf("the command did not stop through its context: %q", stderr.String())
				}
				if names := dirNames(t, dir); len(names) != 1 || names[0] != "data" {
					t.Fatalf("left behind: %v", names)
				}
				if fi, _ := os.Stat(data); fi.Size() != size {
					t.Fatalf("DATA is %d bytes, was %d", fi.Size(), size)
				}
			})
		}
	}
}

// TestVerityFormatOutputsTogether: HASH, --root-hash-file and --json=FILE
// appear together or not at all. An output that cannot be created
// (--root-hash-file nodir/rh) fails before any work; an output whose
// directory disappears while the tree is computed fails at the end; in
// both cases no HASH is left, and an appended DATA keeps its size.
func TestVerityFormatOutputsTogether(t *testing.T) {
	for _, appended := range []bool{false, true} {
		name := "separate"
		if appended {
			name = "appended"
		}
		t.Run(name+" nodir", func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			writeVerityData(t, data, 64*4096)
			hash := filepath.Join(dir, "hash")
			if appended {
				hash = data
			}
			rh := filepath.Join(dir, "nodir", "rh")
			code, _, stderr := runCaptured(t, "verity", "format", data, hash, "--root-hash-file", rh)
			if code != 1 || !strings.Contains(stderr, "output "+rh) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d %q", code, stderr)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Fatalf("left behind: %v", names)
			}
			if st, _ := os.Stat(data); st.Size() != 64*4096 {
				t.Fatalf("DATA is %d bytes", st.Size())
			}
		})
		t.Run(name+" directory removed", func(t *testing.T) {
			if _, err := os.Stat("/proc/self/fd"); err != nil {
				t.Skip("needs /proc to see when the child has started")
			}
			t.Parallel()
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			const size = 128 << 20
			sparseData(t, data, size)
			hash := filepath.Join(dir, "hash")
			if appended {
				hash = data
			}
			sub := filepath.Join(dir, "sub")
			os.Mkdir(sub, 0o755)
			cmd := cliCommand("verity", "format", data, hash, "--root-hash-file", filepath.Join(sub, "rh"))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if !waitOpen(cmd.Process.Pid, 10*time.Second, func(p string) bool { return p == data }) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the child never opened %s: %s", data, stderr.String())
			}
			// The root hash file is created (unnamed) before the work;
			// an older imagebuilder wrote it after HASH was in place.
			waitOpen(cmd.Process.Pid, 200*time.Millisecond, inDir(sub))
			if err := os.RemoveAll(sub); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), filepath.Join(sub, "rh")) {
				t.Fatalf("exit %v: %s", err, stderr.String())
			}
			if names := dirNames(t, dir); len(names) != 1 || names[0] != "data" {
				t.Fatalf("left behind: %v", names)
			}
			if fi, _ := os.Stat(data); fi.Size() != size {
				t.Fatalf("DATA is %d bytes, was %d", fi.Size(), size)
			}
		})
	}
}

// TestVerityDocs runs every console example of docs/verity.md against
// this CLI (the test binary run as imagebuilder) and veritysetup.
func TestVerityDocs(t *testing.T) {
	if _, err := exec.LookPath("veritysetup"); err != nil {
		fixtures.Missing(t, "veritysetup is not installed (the examples compare with it; run scripts/testdeps.sh)")
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/verity.md", doctest.Options{Path: []string{bin}})
}

// TestVerityDocsFlags: every flag of the verity commands is in
// docs/verity.md.
func TestVerityDocsFlags(t *testing.T) {
	doc, err := os.ReadFile("../../docs/verity.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range newVerityCmd().Commands() {
		sub.Flags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(string(doc), "`--"+f.Name) {
				t.Errorf("verity %s --%s is not in docs/verity.md", sub.Name(), f.Name)
			}
		})
	}
}

// TestVerityJSONFile: --json=FILE writes the JSON that --json prints, and
// the text stays on stdout; the JSON reads back into a verity.Result.
func TestVerityJSONFile(t *testing.T) {
	dir := t.TempDir()
	data, hash, js := filepath.Join(dir, "data"), filepath.Join(dir, "hash"), filepath.Join(dir, "out.json")
	writeVerityData(t, data, 40*4096)
	for _, args := range [][]string{
		{"verity", "format", data, hash, "--seed=j"},
		{"verity", "dump", hash},
	} {
		code, text, stderr := runCaptured(t, append(args, "--json="+js)...)
		if code != 0 || !strings.HasPrefix(text, "VERITY header information for "+hash+"\n") {
			t.Fatalf("%v: exit %d %q %s", args, code, text, stderr)
		}
		_, stdout, _ := runCaptured(t, append(args, "--json")...)
		file, _ := os.ReadFile(js)
		if string(file) != stdout || !strings.HasSuffix(stdout, "}\n") {
			t.Fatalf("%v: --json=FILE wrote\n%s\n--json printed\n%s", args, file, stdout)
		}
		var r verity.Result
		if err := json.Unmarshal(file, &r); err != nil || r.DataBlocks != 40 || r.HashDeviceSize() != 2*4096 {
			t.Fatalf("%v: %v %+v", args, err, r)
		}
	}
	var r verity.Result
	b, _ := os.ReadFile(js)
	json.Unmarshal(b, &r)
	_, stdout, _ := runCaptured(t, "verity", "format", data, hash, "--seed=j", "--json")
	var f verity.Result
	json.Unmarshal([]byte(stdout), &f)
	code, text, stderr := runCaptured(t, "verity", "verify", data, hash, f.RootHashHex(), "--json="+js)
	if code != 0 || !strings.Contains(text, "match root hash "+f.RootHashHex()) {
		t.Fatalf("verify --json=FILE: %d %s %s", code, text, stderr)
	}
	b, _ = os.ReadFile(js)
	var v verity.Result
	if err := json.Unmarshal(b, &v); err != nil || !bytes.Equal(v.RootHash, f.RootHash) || v.DataDevice != data || v.HashDevice != hash {
		t.Fatalf("verify JSON: %v %s", err, b)
	}
}

// TestVerityRootHashFileDash: --root-hash-file - is refused (stdout
// already carries the root hash), never a file named "-"; before, it
// wrote one in the working directory.
func TestVerityRootHashFileDash(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("data", make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCaptured(t, "verity", "format", "data", "hash", "--root-hash-file", "-")
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "verity format: --root-hash-file -: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

// verity verify --root-hash-file - reads the root hash from stdin; a root
// hash file is read up to a bound, not whole.
func TestVerityVerifyRootHashFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("data", make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCaptured(t, "verity", "format", "data", "hash", "--root-hash-file", "rh"); code != exitOK {
		t.Fatal(stderr)
	}
	stdin, err := os.Open("rh")
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	saved := os.Stdin
	os.Stdin = stdin
	code, _, stderr := runCaptured(t, "verity", "verify", "data", "hash", "--root-hash-file", "-")
	os.Stdin = saved
	if code != exitOK {
		t.Errorf("--root-hash-file - (stdin): exit %d, %s", code, stderr)
	}
	big := append(make([]byte, 0, 1<<20), strings.Repeat(" ", 1<<20)...)
	if err := os.WriteFile("big", big, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCaptured(t, "verity", "verify", "data", "hash", "--root-hash-file", "big")
	if code != exitFailure || !strings.Contains(stderr, "big: more than 4096 bytes") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("1 MiB root hash file: exit %d, %q", code, stderr)
	}
}
