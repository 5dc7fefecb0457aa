package initrd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// checkWalk walks img and checks what every input must give: a nil error
// or a one-line *FormatError (the input is in memory, so no other error
// can be right), decompressed work within the format's largest expansion
// (65536 times: zstd RLE blocks reach 32768, LZMA about 7000, deflate
// 1032), and memory for the decoders' windows and the real data, never for
// a size a header declares.
func checkWalk(t *testing.T, img []byte) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	decoded, err := walkCounting(context.Background(), bytes.NewReader(img), func(h *Header, _ Segment, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v (%T) is not a FormatError", err, err)
		}
		if fe.Segment == 0 && !strings.HasPrefix(err.Error(), "initrd: no archive") {
			t.Fatalf("error %q names no segment", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	}
	if limit := int64(len(img))<<16 + 1<<20; decoded > limit {
		t.Fatalf("%d bytes decompressed from %d", decoded, len(img))
	}
	// Decoder windows (one zstd window, xz dictionaries up to their
	// allowance of 64 MiB + 1 KiB a byte), buffers, and a few bytes of
	// bookkeeping per byte decompressed (headers, names).
	budget := uint64(3*MaxWindow+64<<20) + 2048*uint64(len(img)) + 4*uint64(decoded)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > budget {
		t.Fatalf("allocated %d bytes for %d bytes of input (%d decompressed)", grew, len(img), decoded)
	}
}

// FuzzWalk feeds arbitrary bytes to the initramfs reader (cpio, gzip,
// zstd, xz segments).
func FuzzWalk(f *testing.F) {
	f.Add(buildBytes(f, goldenArchiveF(), WriteOptions{Compression: None}))
	f.Add(buildBytes(f, goldenArchiveF(), WriteOptions{Compression: Gzip}))
	zs := buildBytes(f, goldenArchiveF(), WriteOptions{Compression: Zstd})
	f.Add(append(zs, zs...)) // two zstd segments: the frame splitter at work
	f.Add(xzBytes(f, buildBytes(f, goldenArchiveF(), WriteOptions{Compression: None})))
	f.Add([]byte("070701"))
	f.Fuzz(checkWalk)
}

// FuzzWalkStructured builds an initramfs from a plan (the fuzzer's bytes,
// read as a sequence of choices) so that mutations reach the code behind
// the checksums: newc headers with valid hex fields and names, whose sizes
// and types the plan may make lie; segments compressed by real encoders
// (gzip, zstd, xz; their checksums right), zero padding, concatenation;
// then, as the plan says, a zstd window or xz dictionary rewritten (the xz
// block header's CRC32 repaired), a byte flipped, a segment cut short.
func FuzzWalkStructured(f *testing.F) {
	x := uint32(1)
	for i := 0; i < 24; i++ {
		plan := make([]byte, 32+i*24)
		for j := range plan {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			plan[j] = byte(x)
		}
		f.Add(plan)
	}
	f.Fuzz(func(t *testing.T, plan []byte) {
		checkWalk(t, genImage(&planReader{b: plan}))
	})
}

// planReader reads choices from the fuzzer's bytes (zeros when they run
// out).
type planReader struct {
	b []byte
	i int
}

func (p *planReader) byte() byte {
	if p.i >= len(p.b) {
		return 0
	}
	c := p.b[p.i]
	p.i++
	return c
}

// n returns a choice in [0, max) (max at most 256).
func (p *planReader) n(max int) int { return int(p.byte()) % max }

func (p *planReader) u32() uint32 {
	return uint32(p.byte()) | uint32(p.byte())<<8 | uint32(p.byte())<<16 | uint32(p.byte())<<24
}

func (p *planReader) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = p.byte()
	}
	return b
}

func genImage(p *planReader) []byte {
	var img bytes.Buffer
	for s, n := 0, 1+p.n(4); s < n; s++ {
		img.Write(make([]byte, p.n(6))) // padding, not always a multiple of 4
		cpio := genCPIO(p)
		var seg []byte
		switch p.n(7) {
		case 0:
			seg = cpio
		case 1:
			seg = genGzip(cpio, 1+p.n(9))
		case 2:
			seg = genZstd(p, cpio)
		case 3:
			seg = genXZ(p, cpio)
		case 4:
			seg = p.bytes(p.n(32)) // garbage
		case 5:
			// Nested: the kernel refuses compressed data inside a
			// compressed stream, and so must the reader.
			seg = genZstd(p, genGzip(cpio, 1))
		case 6:
			seg = append(genGzip(cpio, 6), genGzip(cpio, 1)...) // two members
		}
		if len(seg) > 0 && p.n(16) == 0 {
			seg = append([]byte(nil), seg...)
			seg[int(p.u32()%uint32(len(seg)))] ^= 1 << p.n(8)
		}
		if len(seg) > 0 && p.n(16) == 0 {
			seg = seg[:int(p.u32()%uint32(len(seg)))]
		}
		img.Write(seg)
	}
	return img.Bytes()
}

// genCPIO writes one or two newc archives of entries chosen by the plan.
func genCPIO(p *planReader) []byte {
	var b bytes.Buffer
	for a, n := 0, 1+p.n(2); a < n; a++ {
		for e, m := 0, p.n(6); e < m; e++ {
			var typ uint32
			switch p.n(9) {
			case 0, 1:
				typ = TypeReg
			case 2:
				typ = TypeDir
			case 3:
				typ = TypeSymlink
			case 4:
				typ = TypeChar
			case 5:
				typ = TypeBlock
			case 6:
				typ = TypeFifo
			case 7:
				typ = TypeSocket
			case 8:
				typ = p.u32() & TypeMask
			}
			name := genName(p)
			data := p.bytes(p.n(48))
			size := uint32(len(data))
			switch p.n(8) {
			case 0:
				size = p.u32() // a lie, maybe a huge one
			case 1:
				size += uint32(p.n(8))
			case 2:
				size = 0xffffffff
			}
			nameSize := uint32(len(name) + 1)
			if p.n(8) == 0 {
				nameSize = p.u32() % 8192
			}
			magic := "070701"
			switch p.n(16) {
			case 0:
				magic = "070702"
			case 1:
				magic = "070707" // odc, not newc
			}
			fields := [13]uint32{uint32(e + 1), typ | uint32(p.n(256))<<1&PermMask, uint32(p.n(3)), 0, 1 + uint32(p.n(3)),
				p.u32(), size, 0, 0, uint32(p.n(256)), uint32(p.n(256)), nameSize, 0}
			var h [newcHeaderLen]byte
			copy(h[:], magic)
			for i, v := range fields {
				putHex(h[6+8*i:], v)
			}
			switch p.n(24) {
			case 0:
				copy(h[6:], bytes.ToUpper(h[6:]))
			case 1:
				h[6+p.n(104)] = "gxG "[p.n(4)]
			}
			b.Write(h[:])
			b.Write(name)
			b.WriteByte(0)
			b.Write(zeros[:pad4(newcHeaderLen+int64(len(name))+1)])
			b.Write(data)
			b.Write(zeros[:pad4(int64(len(data)))])
		}
		if p.n(8) != 0 {
			var h [newcHeaderLen]byte
			(&newcHeader{NLink: 1, NameSize: uint32(len(trailerName) + 1)}).marshal(h[:])
			b.Write(h[:])
			b.WriteString(trailerName + "\x00")
			b.Write(zeros[:pad4(newcHeaderLen+int64(len(trailerName))+1)])
		}
		b.Write(make([]byte, 4*p.n(3)))
	}
	return b.Bytes()
}

func genName(p *planReader) []byte {
	const alphabet = "abcdef/./..-_\x00\n\x1bé"
	name := make([]byte, p.n(24))
	for i := range name {
		name[i] = alphabet[p.n(len(alphabet))]
	}
	return name
}

func genGzip(b []byte, level int) []byte {
	var out bytes.Buffer
	w, _ := gzip.NewWriterLevel(&out, level)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// zstdEncoders keeps the encoders the fuzz target made (making one is
// much slower than using it); the target runs one input at a time.
var zstdEncoders = map[zstdKey]*zstd.Encoder{}

type zstdKey struct {
	level       int
	single, crc bool
	window      int
}

// genZstd compresses b with klauspost/zstd (one frame or several), and
// may set the window the frame header declares.
func genZstd(p *planReader, b []byte) []byte {
	k := zstdKey{level: p.n(3), single: p.n(2) == 0, crc: p.n(2) == 0, window: p.n(8)}
	enc := zstdEncoders[k]
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevel(k.level+1)), zstd.WithSingleSegment(k.single),
			zstd.WithEncoderCRC(k.crc), zstd.WithWindowSize(1<<(10+k.window)), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		zstdEncoders[k] = enc
	}
	var out []byte
	if half := p.n(2) == 0 && len(b) > 1; half {
		out = enc.EncodeAll(b[:len(b)/2], nil)
		out = enc.EncodeAll(b[len(b)/2:], out)
	} else {
		out = enc.EncodeAll(b, nil)
	}
	if p.n(4) == 0 && len(out) > 6 {
		if out[4]&0x20 == 0 {
			out[5] = p.byte() // the window descriptor
		} else if fcs := []int{1, 2, 4, 8}[out[4]>>6]; len(out) >= 5+fcs {
			copy(out[5:5+fcs], p.bytes(fcs)) // the content size, the window of a single segment
		}
	}
	return out
}

// genXZ compresses b with ulikunitz/xz (small blocks at times), and may
// set the dictionary the first block header declares, repairing its CRC32.
func genXZ(p *planReader, b []byte) []byte {
	var out bytes.Buffer
	cfg := xz.WriterConfig{CheckSum: []byte{xz.None, xz.CRC32, xz.CRC64, xz.SHA256}[p.n(4)],
		DictCap: 4096 << p.n(8), BlockSize: int64(1024 << p.n(6))}
	w, err := cfg.NewWriter(&out)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	s := out.Bytes()
	if p.n(4) == 0 && len(s) > 13 {
		size := (int(s[12]) + 1) * 4
		if len(s) >= 12+size {
			h := s[12 : 12+size]
			if at, _, err := xzDictionary(h[:size-4]); err == nil {
				h[at] = byte(p.n(41))
				binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
			}
		}
	}
	return s
}

// FuzzAddSpec: arbitrary spec text gives entries or a one-line error.
func FuzzAddSpec(f *testing.F) {
	f.Add("dir /dev 755 0 0\nnod /dev/console 600 0 0 c 5 1\nslink /bin/sh busybox 777 0 0\n")
	f.Add("file /init /nonexistent 755 0 0\n")
	f.Add("pipe /../x 644 0 0\n")
	f.Fuzz(func(t *testing.T, spec string) {
		a := New()
		if err := a.AddSpec(context.Background(), strings.NewReader(spec), "fuzz.spec", "/nonexistent"); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("error %q is not a SpecError with a line", err)
			}
			return
		}
		// The tree is only complete when it is written (later entries may
		// replace earlier ones), so Write may still refuse it, e.g. a
		// path under a device node; that must be a clear one-line error
		// naming the entry.
		if err := write(a, WriteOptions{Compression: None}); err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "initrd: ") {
				t.Fatalf("write error %q is not one initrd: line", msg)
			}
		}
	})
}

func goldenArchiveF() *Archive {
	a := New()
	a.Add(Entry{Path: "init", Mode: TypeReg | 0o755, Size: 3, Data: []byte("abc")})
	a.Add(Entry{Path: "dev/console", Mode: TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1})
	a.Add(Entry{Path: "lib64", Mode: TypeSymlink | 0o777, Linkname: "lib"})
	return a
}
