package verity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// zeroReader is an endless source of zeros that cancels a context after
// a number of reads and counts the bytes read after that.
type zeroReader struct {
	cancelAfter int64
	cancel      context.CancelFunc
	reads       atomic.Int64
	after       atomic.Int64 // bytes read once cancelled
}

func (z *zeroReader) read(p []byte) {
	clear(p)
	if n := z.reads.Add(1); n == z.cancelAfter {
		z.cancel()
	} else if n > z.cancelAfter {
		z.after.Add(int64(len(p)))
	}
}

func (z *zeroReader) ReadAt(p []byte, _ int64) (int, error) { z.read(p); return len(p), nil }
func (z *zeroReader) Read(p []byte) (int, error)            { z.read(p); return len(p), nil }

// finishes runs f and fails the test if it has not returned after a
// minute (a liveness guard, not a speed target: the work it stops would
// take hours).
func finishes(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("cancellation was not honoured")
	}
}

// TestCancel cancels Format, FormatStream and Verify on data of 1 TiB:
// each returns context.Canceled, no result, and reads at most a few chunks
// per worker after the cancellation.
func TestCancel(t *testing.T) {
	const size = 1 << 40
	bound := int64(3 * maxWorkers * chunkSize(maxWorkers))
	p := DefaultParams()
	run := func(name string, f func(ctx context.Context, z *zeroReader) (*Result, error)) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			z := &zeroReader{cancelAfter: 5, cancel: cancel}
			var res *Result
			var err error
			finishes(t, func() { res, err = f(ctx, z) })
			if !errors.Is(err, context.Canceled) || res != nil {
				t.Fatalf("got %v, %v; want no result and context.Canceled", res, err)
			}
			if a := z.after.Load(); a > bound {
				t.Fatalf("read %d bytes after the cancellation, more than %d", a, bound)
			}
		})
	}
	run("Format", func(ctx context.Context, z *zeroReader) (*Result, error) {
		return Format(ctx, z, size, discard{}, p)
	})
	run("FormatStream", func(ctx context.Context, z *zeroReader) (*Result, error) {
		q := p
		q.DataBlocks = size / 4096
		return FormatStream(ctx, z, discard{}, q)
	})
	run("Verify", func(ctx context.Context, z *zeroReader) (*Result, error) {
		// A hash device whose tree reads as zeros: the tree of 1 TiB of
		// zeros is not that, but Verify only finds out at the top
		// block; a superblock saying NoSuperblock... so the data phase
		// is reached with a tree computed for real on 64 MiB.
		q := DefaultParams()
		var h memFile
		r, err := Format(context.Background(), bytes.NewReader(make([]byte, 64<<20)), 64<<20, &h, q)
		if err != nil {
			t.Fatal(err)
		}
		return Verify(ctx, z, 64<<20, bytes.NewReader(h.b), r.RootHash, VerifyOptions{})
	})
	// Cancelled before the start: nothing is read or written.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var h memFile
	if _, err := Format(ctx, bytes.NewReader(make([]byte, 1<<20)), 1<<20, &h, p); !errors.Is(err, context.Canceled) || len(h.b) != 0 {
		t.Fatalf("Format with a cancelled context: %v, wrote %d bytes", err, len(h.b))
	}
}

type discardWriter struct{}

func (discardWriter) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// TestErrorsAs: malformed input is a *FormatError, a bad block a
// *CorruptError, and a result is never returned beside an error.
func TestErrorsAs(t *testing.T) {
	data := testData(300*4096, 5)
	p := DefaultParams()
	var h memFile
	res, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, p)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), h.b...)) }
	tests := []struct {
		name    string
		data    []byte
		hash    []byte
		opts    VerifyOptions
		format  bool  // a *FormatError is expected, else a *CorruptError
		offset  int64 // FormatError.Offset
		message string
	}{
		{"bad magic", data, mut(func(b []byte) []byte { b[0] = 'V'; return b }), VerifyOptions{}, true, 0, "superblock at offset 0: bad magic"},
		{"superblock elsewhere", data, mut(func(b []byte) []byte { return b }), VerifyOptions{Params: Params{HashOffset: 4096}}, true, 4096, "superblock at offset 4096: bad magic"},
		{"hash device short", data, h.b[:len(h.b)-4096], VerifyOptions{}, true, int64(len(h.b)), "hash device is too small: it must be at least 20480 bytes"},
		{"data short", data[:299*4096], h.b, VerifyOptions{}, true, -1, "data is too small: 300 blocks of 4096 bytes need 1228800 bytes, it has 1224704"},
		{"salt disagrees", data, h.b, VerifyOptions{Params: Params{Salt: []byte{1}}}, true, 0, "superblock at offset 0 says salt -, expected 01"},
		{"no superblock, size", data[:5000], h.b, VerifyOptions{Params: Params{HashAlgorithm: "sha256", HashType: 1, DataBlockSize: 4096, HashBlockSize: 4096, NoSuperblock: true}}, true, -1, "data size 5000 is not a positive multiple"},
		{"data block", append(append([]byte(nil), data[:4096*7]...), append([]byte{1}, data[4096*7+1:]...)...), h.b, VerifyOptions{}, false, 0, "data block 7 is corrupt"},
		{"hash block", data, mut(func(b []byte) []byte { b[4096*3] ^= 1; return b }), VerifyOptions{}, false, 0, "hash block 3 (tree level 0 of 2, 0 = leaf) is corrupt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Verify(bg, bytes.NewReader(tc.data), int64(len(tc.data)), bytes.NewReader(tc.hash), res.RootHash, tc.opts)
			if r != nil || err == nil || !strings.Contains(err.Error(), tc.message) || !strings.HasPrefix(err.Error(), "verity: ") {
				t.Fatalf("got %v, %v; want %q", r, err, tc.message)
			}
			var fe *FormatError
			var ce *CorruptError
			if tc.format {
				if !errors.As(err, &fe) || fe.Offset != tc.offset {
					t.Fatalf("%v: not a *FormatError at offset %d (%+v)", err, tc.offset, fe)
				}
			} else if !errors.As(err, &ce) {
				t.Fatalf("%v: not a *CorruptError", err)
			}
		})
	}
	var fe *FormatError
	if _, err := ReadSuperblock(bytes.NewReader(h.b[:100]), 0); !errors.As(err, &fe) {
		t.Fatalf("short superblock: %v is not a *FormatError", err)
	}
	if _, err := ParseSuperblock(make([]byte, 512)); !errors.As(err, &fe) {
		t.Fatalf("zero superblock: %v is not a *FormatError", err)
	}
	if _, err := Dump(bytes.NewReader(make([]byte, 4096)), 0); !errors.As(err, &fe) {
		t.Fatalf("Dump of zeros: %v is not a *FormatError", err)
	}
}

// TestVerifyResult: Verify returns the tree it checked, with the
// parameters of the superblock, equal to what Format returned.
func TestVerifyResult(t *testing.T) {
	data := testData(129*4096, 6)
	p := DefaultParams()
	p.Salt = []byte{1, 2, 3}
	p.UUID = UUIDFromSeed([]byte("r"))
	var h memFile
	want, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(bg, bytes.NewReader(data), int64(len(data)), bytes.NewReader(h.b), want.RootHash, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("Verify result\n%s\ndiffers from Format's\n%s", b, a)
	}
	d, err := Dump(bytes.NewReader(h.b), 0)
	if err != nil {
		t.Fatal(err)
	}
	d.RootHash = want.RootHash
	if c, _ := json.Marshal(d); !bytes.Equal(a, c) {
		t.Fatalf("Dump result\n%s\ndiffers from Format's\n%s", c, a)
	}
}

// TestResultJSON pins the JSON form of a Result and reads it back.
func TestResultJSON(t *testing.T) {
	p := DefaultParams()
	p.Salt = []byte{0xab}
	p.UUID, _ = ParseUUID(testUUID)
	var h memFile
	r, err := Format(bg, bytes.NewReader(make([]byte, 2*4096)), 2*4096, &h, p)
	if err != nil {
		t.Fatal(err)
	}
	r.DataDevice, r.HashDevice = "a&b.img", "h.img"
	// As the CLI prints it: json.Marshal would escape the '&'.
	indent := func(v any) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(b.String(), "\n")
	}
	b := []byte(indent(r))
	want := `{
  "root_hash": "` + r.RootHashHex() + `",
  "hash_algorithm": "sha256",
  "hash_type": 1,
  "data_block_size": 4096,
  "hash_block_size": 4096,
  "data_blocks": 2,
  "salt": "ab",
  "uuid": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0",
  "superblock": true,
  "hash_offset": 0,
  "hash_start_block": 1,
  "hash_blocks": 1,
  "levels": 1,
  "hash_area_size": 8192,
  "hash_device_size": 8192,
  "data_device": "a&b.img",
  "hash_device": "h.img",
  "table": "0 16 verity 1 a&b.img h.img 4096 4096 2 1 sha256 ` + r.RootHashHex() + ` ab",
  "systemd_cmdline": "roothash=` + r.RootHashHex() + `"
}`
	if string(b) != want {
		t.Fatalf("JSON:\n%s\nwant\n%s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if again := indent(&back); again != want {
		t.Fatalf("round trip:\n%s", again)
	}
	// No superblock, no salt, no root hash: no uuid, salt "-", no table.
	q, _ := Plan(Params{HashAlgorithm: "sha1", HashType: 0, DataBlockSize: 512, HashBlockSize: 512, DataBlocks: 1, NoSuperblock: true, Salt: []byte{}})
	b, _ = json.Marshal(q)
	if s := string(b); strings.Contains(s, "uuid") || !strings.Contains(s, `"salt":"-"`) || strings.Contains(s, "table") || strings.Contains(s, "root_hash") {
		t.Fatalf("plan JSON: %s", s)
	}
	if err := json.Unmarshal([]byte(`{"salt":"zz"}`), &back); err == nil {
		t.Fatal("bad salt accepted")
	}
}

// appendedFile is a file holding data of n blocks of 4096 bytes, and
// extra bytes after them.
func appendedFile(t *testing.T, n, extra int) (*os.File, []byte) {
	t.Helper()
	data := testData(int64(n*4096+extra), uint64(n))
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data
}

// TestFormatAppended: the hash area appended to the data file is what
// Format writes to a separate device, with the hash area held in memory
// and in an unnamed temporary file; the file does not change before
// Commit, and Revert or a failed Commit cut it back.
func TestFormatAppended(t *testing.T) {
	for _, mem := range []int64{16 << 20, 0} {
		for _, nosb := range []bool{false, true} {
			old := maxMemoryScratch
			maxMemoryScratch = mem
			f, data := appendedFile(t, 300, 0)
			p := DefaultParams()
			p.NoSuperblock = nosb
			p.Salt = []byte{9}
			res, err := FormatAppended(bg, f, p)
			maxMemoryScratch = old
			if err != nil {
				t.Fatal(err)
			}
			q := p
			q.HashOffset = uint64(len(data))
			var h memFile
			h.b = append([]byte(nil), data...)
			want, err := Format(bg, bytes.NewReader(data), int64(len(data)), &h, q)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(f.Name())
			if !bytes.Equal(got, h.b) || !bytes.Equal(res.RootHash, want.RootHash) || res.HashDeviceSize() != int64(len(got)) {
				t.Fatalf("memory %d nosb %v: appended file differs from Format's output", mem, nosb)
			}
			if _, err := Verify(bg, f, int64(len(got)), f, res.RootHash, VerifyOptions{Params: res.Params}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f, data := appendedFile(t, 100, 0)
	a, err := PrepareAppended(ctx, f, DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
		t.Fatal("PrepareAppended changed the file")
	}
	if a.Result().Params.HashOffset != 100*4096 {
		t.Fatalf("hash offset %d", a.Result().Params.HashOffset)
	}
	cancel()
	if err := a.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled context: %v", err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
		t.Fatal("a cancelled Commit left the file changed")
	}
	if err := a.Commit(bg); err == nil {
		t.Fatal("a second Commit was accepted")
	}
	a.Close()
	a, err = PrepareAppended(bg, f, DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Commit(bg); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != a.Result().HashDeviceSize() {
		t.Fatalf("size %d after Commit", st.Size())
	}
	if err := a.Revert(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
		t.Fatal("Revert did not restore the file")
	}
}

func TestFormatAppendedBadInput(t *testing.T) {
	tests := []struct {
		name   string
		blocks int
		extra  int
		p      func(p *Params)
		want   string
	}{
		{"size not multiple", 10, 100, func(*Params) {}, "not a positive multiple of the data block size 4096"},
		{"overlap", 10, 0, func(p *Params) { p.HashOffset = 4096; p.DataBlocks = 2 }, "data area (2 blocks of 4096 bytes) overlaps the hash area at offset 4096"},
		{"offset inside a block", 10, 0, func(p *Params) { p.HashOffset = 4096 + 512 }, "the number of data blocks is needed"},
		{"too few blocks", 10, 0, func(p *Params) { p.DataBlocks = 11 }, "too small for 11 blocks"},
		{"nosb offset", 10, 0, func(p *Params) { p.NoSuperblock = true; p.DataBlockSize = 512; p.DataBlocks = 9 }, "not a multiple of the hash block size"},
		{"bad params", 10, 0, func(p *Params) { p.HashAlgorithm = "md4" }, `unknown hash algorithm "md4"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, data := appendedFile(t, tc.blocks, tc.extra)
			p := DefaultParams()
			tc.p(&p)
			res, err := FormatAppended(bg, f, p)
			if res != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want %q", res, err, tc.want)
			}
			if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, data) {
				t.Fatal("the file changed")
			}
		})
	}
}

var _ io.WriterAt = discardWriter{}
