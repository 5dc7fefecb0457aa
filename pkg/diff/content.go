package diff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
)

// contentChunk is how much of each side content comparisons read at a
// time.
const contentChunk = 256 << 10

// buffers are the two read buffers of a comparison, reused for every file,
// and how much text to show on each side of a difference.
type buffers struct {
	a, b    []byte
	excerpt int
}

// excerpt bounds the text shown on each side of a difference in a file of
// a file system or archive.
const excerpt = 60

func newBuffers() *buffers {
	return &buffers{make([]byte, contentChunk), make([]byte, contentChunk), excerpt}
}

// contentDiff is where two contents first differ.
type contentDiff struct {
	Offset int64 // -1: equal
	// Line is the 1-based line of the difference and LineA, LineB its
	// text around it, when both contents are text up to there.
	Line         int
	LineA, LineB string
}

// compareStreams reads a and b side by side up to their first difference.
// An error of a reader is returned as errA or errB, so the caller can name
// the side.
func compareStreams(ctx context.Context, a, b io.Reader, buf *buffers) (d contentDiff, errA, errB error) {
	d.Offset = -1
	var off int64
	lines := 0
	text := true
	// The current line's start, up to excerpt bytes of it.
	var tail []byte
	for {
		if err := ctx.Err(); err != nil {
			return d, err, nil
		}
		na, ea := io.ReadFull(a, buf.a)
		nb, eb := io.ReadFull(b, buf.b)
		if ea != nil && ea != io.EOF && ea != io.ErrUnexpectedEOF {
			return d, ea, nil
		}
		if eb != nil && eb != io.EOF && eb != io.ErrUnexpectedEOF {
			return d, nil, eb
		}
		n := min(na, nb)
		i := mismatch(buf.a[:n], buf.b[:n])
		if i < 0 && na == nb && na == len(buf.a) {
			// Equal and more to come.
			text = text && bytes.IndexByte(buf.a[:n], 0) < 0
			lines += bytes.Count(buf.a[:n], []byte{'\n'})
			tail = lineTail(tail, buf.a[:n], buf.excerpt)
			off += int64(n)
			continue
		}
		if i < 0 {
			if na == nb {
				return d, nil, nil // both ended together
			}
			i = n // one is a prefix of the other
		}
		d.Offset = off + int64(i)
		same := buf.a[:i]
		if text && bytes.IndexByte(same, 0) < 0 {
			d.Line = lines + bytes.Count(same, []byte{'\n'}) + 1
			head := lineTail(tail, same, buf.excerpt)
			d.LineA = lineText(head, buf.a[i:na], buf.excerpt)
			d.LineB = lineText(head, buf.b[i:nb], buf.excerpt)
		}
		return d, nil, nil
	}
}

// lineTail keeps the last excerpt bytes of the current line after b.
func lineTail(tail, b []byte, excerpt int) []byte {
	if j := bytes.LastIndexByte(b, '\n'); j >= 0 {
		tail = tail[:0]
		b = b[j+1:]
	}
	if len(b) >= excerpt {
		return append(tail[:0], b[len(b)-excerpt:]...)
	}
	tail = append(tail, b...)
	if len(tail) > excerpt {
		tail = append(tail[:0], tail[len(tail)-excerpt:]...)
	}
	return tail
}

// lineText is the line around a difference: head (up to the difference),
// then rest up to the end of the line, each bounded, quoted. A line that
// is not valid UTF-8, or holds control characters, is shown escaped.
func lineText(head, rest []byte, excerpt int) string {
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	more := ""
	if len(rest) > excerpt {
		rest, more = rest[:excerpt], "..."
	}
	return strconv.Quote(string(head)+string(rest)) + more
}

// describe says where two contents differ, for Difference.Detail.
func (d contentDiff) describe(sizeA, sizeB int64) string {
	var s string
	switch {
	case d.Offset == min(sizeA, sizeB) && sizeA < sizeB:
		s = fmt.Sprintf("B continues after A's %d bytes", sizeA)
	case d.Offset == min(sizeA, sizeB) && sizeA > sizeB:
		s = fmt.Sprintf("A continues after B's %d bytes", sizeB)
	default:
		s = fmt.Sprintf("first difference at byte %d", d.Offset)
	}
	if d.Line > 0 && d.LineA != d.LineB {
		s += fmt.Sprintf(", line %d: %s -> %s", d.Line, d.LineA, d.LineB)
	}
	return s
}

func sizeText(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
