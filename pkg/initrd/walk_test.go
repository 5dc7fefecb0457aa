package initrd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// xzBytes compresses b into one xz stream (ulikunitz/xz, CRC32 check, as
// the kernel wants).
func xzBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// setXZDictionary rewrites the LZMA2 dictionary byte of the first block
// header of an xz stream and repairs the header's CRC32.
func setXZDictionary(t testing.TB, s []byte, d byte) []byte {
	t.Helper()
	s = append([]byte(nil), s...)
	size := (int(s[12]) + 1) * 4
	h := s[12 : 12+size]
	at, _, err := xzDictionary(h[:size-4])
	if err != nil {
		t.Fatal(err)
	}
	h[at] = d
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return s
}

// zstdWithWindow encodes b as one zstd frame with a window descriptor
// and then sets that descriptor to wd (zstd frame headers carry no
// checksum).
func zstdWithWindow(t testing.TB, b []byte, wd byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithSingleSegment(false), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	out := enc.EncodeAll(b, nil)
	if out[4]&0x20 != 0 {
		t.Fatal("encoder wrote a single-segment frame")
	}
	out[5] = wd
	return out
}

// zstdSingleSegment encodes b as one single-segment zstd frame whose
// 4-byte content size then says fcs.
func zstdSingleSegment(t testing.TB, b []byte, fcs uint32) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithSingleSegment(true), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	out := enc.EncodeAll(b, nil)
	fhd := out[4]
	if fhd&0x20 == 0 {
		t.Fatal("encoder wrote no single-segment frame")
	}
	// Widen the content size field to 4 bytes: FCS flag 2.
	var h []byte
	h = append(h, out[:4]...)
	h = append(h, fhd&^0xc0|0x80)
	old := []int{1, 2, 4, 8}[fhd>>6]
	h = binary.LittleEndian.AppendUint32(h, fcs)
	return append(h, out[5+old:]...)
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// names lists the entries Walk reads, with their segment's compression.
func walkNames(t testing.TB, img []byte) (string, error) {
	t.Helper()
	var got []string
	err := walkAll(img, func(h *Header, seg Segment) {
		got = append(got, string(seg.Compression)+":"+h.Name)
	})
	return strings.Join(got, " "), err
}

// TestWalkXZ reads xz segments: one stream from ulikunitz/xz, one
// multi-block stream from xz -T2, each followed by more segments, which
// the reader used to swallow (it took everything after an xz magic as the
// stream).
func TestWalkXZ(t *testing.T) {
	a := New()
	mustAdd(t, a, Entry{Path: "x", Mode: TypeReg | 0o644, Data: pattern(300000, 9)})
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	var img bytes.Buffer
	img.Write(xzBytes(t, raw))
	img.Write(make([]byte, 4)) // stream padding
	img.Write(raw)
	if _, err := exec.LookPath("xz"); err == nil {
		cmd := exec.Command("xz", "-T2", "--block-size=65536", "--check=crc32", "-c")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		img.Write(out)
	} else {
		img.Write(xzBytes(t, raw))
	}
	img.Write(buildBytes(t, a, WriteOptions{Compression: Gzip}))
	got, err := walkNames(t, img.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if want := "xz:x none:x xz:x gzip:x"; got != want {
		t.Errorf("segments read: %q, want %q", got, want)
	}
}

// heapGrowth runs f and returns how much the Go heap's total allocation
// grew meanwhile.
func heapGrowth(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestWalkDeclaredWindow: a stream whose header declares a huge window
// or dictionary but holds a few bytes reads as it is, and costs memory
// for MaxWindow at most, not for what the header says. Before, ulikunitz
// allocated the declared 4 GiB dictionary and klauspost the declared
// window (up to 512 MiB, or the content size of a single-segment frame).
func TestWalkDeclaredWindow(t *testing.T) {
	a := New()
	mustAdd(t, a, Entry{Path: "init", Mode: TypeReg | 0o755, Data: []byte("#!/bin/sh\n")})
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	for _, c := range []struct {
		name string
		img  []byte
		ok   bool
	}{
		{"xz 4 GiB dictionary", setXZDictionary(t, xzBytes(t, raw), 40), true},
		{"xz 1.5 GiB dictionary", setXZDictionary(t, xzBytes(t, raw), 37), true},
		{"zstd 256 MiB window", zstdWithWindow(t, raw, (28-10)<<3), true},
		{"zstd 2 TiB window", zstdWithWindow(t, raw, 0xff), true},
		// The content size is checked at the end of the frame: an error,
		// but after reading within MaxWindow.
		{"zstd single segment of 3 GiB", zstdSingleSegment(t, raw, 3<<30), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got string
			var err error
			grew := heapGrowth(func() { got, err = walkNames(t, c.img) })
			if c.ok && (err != nil || !strings.HasSuffix(got, ":init")) {
				t.Errorf("read %q, %v; want the entry", got, err)
			}
			var fe *FormatError
			if !c.ok && !errors.As(err, &fe) {
				t.Errorf("error %v, want a FormatError", err)
			}
			if grew > 3*MaxWindow {
				t.Errorf("allocated %d MiB", grew>>20)
			}
			t.Logf("allocated %d KiB; %v", grew>>10, err)
		})
	}
}

// TestWalkFarMatch: data that needs more than MaxWindow of history is an
// error saying the window was lowered, not wrong bytes (zstd --long and
// xz with a 16 MiB dictionary make such streams from two copies of 8 MiB
// of noise).
func TestWalkFarMatch(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 17 MB twice")
	}
	chunk := pattern(MaxWindow+4096, 5)
	a := New()
	mustAdd(t, a, Entry{Path: "a", Mode: TypeReg | 0o644, Data: chunk}, Entry{Path: "b", Mode: TypeReg | 0o644, Data: chunk})
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	for _, tool := range [][]string{{"zstd", "-q", "-1", "--long=27", "-c"}, {"xz", "--lzma2=preset=0,dict=16MiB", "-T1", "-c"}} {
		needTool(t, tool[0])
		cmd := exec.Command(tool[0], tool[1:]...)
		cmd.Stdin = bytes.NewReader(raw)
		img, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		err = walkAll(img, func(*Header, Segment) {})
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "lowered from the") {
			t.Errorf("%s: error %v", tool[0], err)
		}
	}
}

// TestWalkManySegments: many small compressed segments cost time and
// memory in proportion to their number, not a window each.
func TestWalkManySegments(t *testing.T) {
	a := New()
	mustAdd(t, a, Entry{Path: "f", Mode: TypeReg | 0o644, Data: []byte("x")})
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	z := zstdWithWindow(t, raw, (23-10)<<3) // declares MaxWindow
	x := xzBytes(t, raw)
	var img bytes.Buffer
	for i := 0; i < 200; i++ {
		img.Write(z)
		img.Write(make([]byte, 4))
		img.Write(x)
		img.Write(make([]byte, 4))
	}
	n := 0
	var err error
	grew := heapGrowth(func() {
		err = walkAll(img.Bytes(), func(*Header, Segment) { n++ })
	})
	if err != nil || n != 400 {
		t.Fatalf("%d entries, %v", n, err)
	}
	// One zstd window for the walk, and 200 xz dictionaries of 4 KiB
	// (ulikunitz's smallest, all the data needs), not 200 of 8 MiB.
	if grew > 3*MaxWindow {
		t.Errorf("%d segments allocated %d MiB", 400, grew>>20)
	}
	t.Logf("%d bytes, allocated %d MiB", img.Len(), grew>>20)
}

// TestWalkFormatErrors: malformed data is a *FormatError naming the
// segment and offset.
func TestWalkFormatErrors(t *testing.T) {
	a := goldenArchive(t)
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	gz := buildBytes(t, a, WriteOptions{Compression: Gzip})
	badHex := append([]byte(nil), raw...)
	badHex[20] = 'z'
	for _, c := range []struct {
		name string
		img  []byte
		want string
	}{
		{"empty", nil, "no archive (empty or all zero input)"},
		{"zeros", make([]byte, 64), "no archive"},
		{"truncated header", raw[:50], "segment 1 (none, at file offset 0): cpio: truncated header at offset 0"},
		{"truncated content", raw[:len(raw)/2], `cpio: truncated entry data at offset`},
		{"bad hex", badHex, "cpio: bad hex field 2 in header at offset 0"},
		{"no trailer", raw[:len(raw)-124], "truncated header"},
		{"garbage after", append(append([]byte(nil), raw...), "garbage"...), "segment 2 (none, at file offset " + strconv.Itoa(len(raw)) + "): unknown data (67 61 72 62 61 67)"},
		{"bzip2", []byte("BZh91AY&SY"), "bzip2 compression, which this reader does not support"},
		{"corrupt gzip", func() []byte { b := append([]byte(nil), gz...); b[len(b)-6] ^= 0x55; return b }(), "segment 1 (gzip, at file offset 0): corrupt gzip stream: gzip: invalid checksum"},
		{"truncated gzip", gz[:len(gz)/2], "truncated gzip stream"},
		{"gzip in gzip", gzipBytes(t, gz), "cpio: data that is not a newc archive (1f 8b 08 00 00) in a compressed stream at offset 0"},
		{"zstd in xz", xzBytes(t, buildBytes(t, a, WriteOptions{Compression: Zstd})), "not a newc archive (28 b5 2f fd"},
		{"xz header CRC", func() []byte { b := xzBytes(t, raw); b[8] ^= 1; return b }(), "xz stream header CRC32 mismatch"},
		// Found by FuzzWalkStructured: the decoder took the cut frame for
		// an empty stream and the walk met the same bytes forever.
		{"zstd magic only", []byte("\x00\x00\x00\x28\xb5\x2f\xfd"), "segment 1 (zstd, at file offset 3): truncated zstd stream"},
		{"zstd stream cut in a block", func() []byte { b := zstdWithWindow(t, raw, 0x50); return b[:len(b)-20] }(), "truncated zstd stream"},
		{"zstd reserved bit", func() []byte { b := zstdWithWindow(t, raw, 0x50); b[4] |= 8; return b }(), "reserved bit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := walkAll(c.img, func(*Header, Segment) {})
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line with %q", err, c.want)
			}
		})
	}
}

// TestWalkErrorsPassThrough: the WalkFunc's error and the input's are
// returned as they are, not as format errors.
func TestWalkErrorsPassThrough(t *testing.T) {
	img := buildBytes(t, goldenArchive(t), WriteOptions{Compression: Zstd})
	stop := errors.New("stop here")
	err := Walk(context.Background(), bytes.NewReader(img), func(h *Header, _ Segment, _ io.Reader) error { return stop })
	if err != stop {
		t.Errorf("WalkFunc error came back as %v", err)
	}
	ioErr := errors.New("disk on fire")
	err = Walk(context.Background(), io.MultiReader(bytes.NewReader(img[:100]), errReader{ioErr}), func(*Header, Segment, io.Reader) error { return nil })
	var fe *FormatError
	if !errors.Is(err, ioErr) || errors.As(err, &fe) {
		t.Errorf("input error came back as %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Walk(ctx, bytes.NewReader(img), func(*Header, Segment, io.Reader) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestFormatEntryEscapes(t *testing.T) {
	h := &Header{Name: "evil\x1b]0;owned\x07\nline", Mode: TypeSymlink | 0o777, NLink: 1, Linkname: "t\r"}
	got := FormatEntry(h)
	if strings.ContainsAny(got, "\x1b\x07\n\r") || !strings.Contains(got, `evil\x1b]0;owned\a\nline -> t\r`) {
		t.Errorf("FormatEntry = %q", got)
	}
}
