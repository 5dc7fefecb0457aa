package diff

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
)

// compareData compares two files byte by byte: sizes, sha256 and the
// first differing byte, reading each once.
func compareData(ctx context.Context, a, b *input, rep *report) error {
	d, err := hashedDiff(ctx, a, b, nil)
	if err != nil || d == nil {
		return err
	}
	return rep.add(Difference{Section: SectionBytes, Kind: Changed, Path: "content",
		A: d.sizeA, B: d.sizeB, Detail: d.describe(a.size, b.size)})
}

// hashed is where two files first differ, with the size and sha256 of
// each.
type hashed struct {
	contentDiff
	sizeA, sizeB string
}

// hashedDiff reads a and b side by side to their first difference, then
// each to its end for its sha256; it returns nil when they are equal.
// mask, when set, wraps each stream after hashing (to leave bytes out of
// the comparison, not of the digest).
func hashedDiff(ctx context.Context, a, b *input, mask func(io.Reader) io.Reader) (*hashed, error) {
	ha, hb := sha256.New(), sha256.New()
	ra, rb := io.TeeReader(a.reader(), ha), io.TeeReader(b.reader(), hb)
	if mask != nil {
		ra, rb = mask(ra), mask(rb)
	}
	buf := newBuffers()
	d, errA, errB := compareStreams(ctx, ra, rb, buf)
	if errA != nil {
		return nil, a.fail(errA)
	}
	if errB != nil {
		return nil, b.fail(errB)
	}
	if d.Offset < 0 {
		return nil, nil
	}
	if err := drain(ctx, ra, buf.a); err != nil {
		return nil, a.fail(err)
	}
	if err := drain(ctx, rb, buf.b); err != nil {
		return nil, b.fail(err)
	}
	d.Line = 0 // bytes, not lines
	return &hashed{d, sizeSHA(a.size, ha), sizeSHA(b.size, hb)}, nil
}

func sizeSHA(n int64, h hash.Hash) string {
	return sizeText(n) + ", sha256 " + hex.EncodeToString(h.Sum(nil))
}

func drain(ctx context.Context, r io.Reader, buf []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := io.ReadFull(r, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// textExcerpt is how much of a line around a difference a text comparison
// shows on each side: a command line whole.
const textExcerpt = 4096

// compareText compares two text files: the first differing line, with its
// text on both sides, and the sizes.
func compareText(ctx context.Context, a, b *input, rep *report) error {
	buf := newBuffers()
	buf.excerpt = textExcerpt
	d, errA, errB := compareStreams(ctx, a.reader(), b.reader(), buf)
	if errA != nil {
		return a.fail(errA)
	}
	if errB != nil {
		return b.fail(errB)
	}
	if d.Offset < 0 {
		return nil
	}
	if d.Line == 0 {
		return rep.add(Difference{Section: SectionBytes, Kind: Changed, Path: "content",
			A: sizeText(a.size), B: sizeText(b.size), Detail: d.describe(a.size, b.size)})
	}
	line := d.Line
	d.Line = 0
	return rep.add(Difference{Section: SectionLines, Kind: Changed, Path: fmt.Sprintf("line %d", line),
		A: d.LineA, B: d.LineB, Detail: d.describe(a.size, b.size) + fmt.Sprintf("; %s and %s in all", sizeText(a.size), sizeText(b.size))})
}

// compareKernels compares two bzImages: the setup header field by field,
// the version string, then the bytes.
func compareKernels(ctx context.Context, a, b *input, rep *report) error {
	var hdr [2][]byte
	var version [2]string
	for i, in := range []*input{a, b} {
		h := make([]byte, bootparams.SetupHeaderOffset+bootparams.SetupHeaderSize)
		if n, err := in.r.ReadAt(h, 0); err != nil && !(err == io.EOF && n == len(h)) {
			return in.fail(fmt.Errorf("setup header: %w", err))
		}
		hdr[i] = h
		sh, err := bootparams.UnmarshalSetupHeader(h[bootparams.SetupHeaderOffset:])
		if err != nil {
			return in.fail(err)
		}
		version[i] = kernelVersion(in, sh)
	}
	if version[0] != version[1] {
		if err := rep.add(Difference{Section: SectionKernel, Kind: Changed, Path: "version", A: strconv.Quote(version[0]), B: strconv.Quote(version[1])}); err != nil {
			return err
		}
	}
	err := diffFields(hdr[0][bootparams.SetupHeaderOffset:], hdr[1][bootparams.SetupHeaderOffset:], func(off int) (string, int, int) {
		name, start, size := fieldOf(bootparams.FieldName, off+bootparams.SetupHeaderOffset, bootparams.Size)
		return name, start - bootparams.SetupHeaderOffset, size
	}, func(name, x, y string) error {
		return rep.add(Difference{Section: SectionKernel, Kind: Changed, Path: name, A: x, B: y})
	})
	if err != nil {
		return err
	}
	// The rest (setup code and compressed kernel) as bytes, the header
	// left out: it follows from the version when that differs.
	d, err := hashedDiff(ctx, a, b, func(r io.Reader) io.Reader {
		return &maskReader{r: r, from: bootparams.SetupHeaderOffset, to: bootparams.SetupHeaderOffset + bootparams.SetupHeaderSize}
	})
	if err != nil || d == nil {
		return err
	}
	x := Difference{Section: SectionKernel, Kind: Changed, Path: "image", Field: "content",
		A: d.sizeA, B: d.sizeB, Detail: d.describe(a.size, b.size) + " (past the setup header)"}
	if version[0] != version[1] {
		return rep.consequence(x)
	}
	return rep.add(x)
}

// maskReader reads r with the bytes in [from, to) read as zeros.
type maskReader struct {
	r        io.Reader
	off      int64
	from, to int64
}

func (m *maskReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if lo, hi := max(m.from-m.off, 0), min(m.to-m.off, int64(n)); lo < hi {
		clear(p[lo:hi])
	}
	m.off += int64(n)
	return n, err
}

// kernelVersion reads the NUL-terminated version string kernel_version
// points to (offset + 0x200 in the file), at most 256 bytes; "" when there
// is none.
func kernelVersion(in *input, h *bootparams.SetupHeader) string {
	if h.KernelVersion == 0 {
		return ""
	}
	b := make([]byte, 256)
	n, _ := in.r.ReadAt(b, int64(h.KernelVersion)+0x200)
	return cString(b[:n])
}
