package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// layerGen turns fuzz bytes into a tar layer, entry by entry, so that
// mutations change the structure (entry types, names, links, whiteouts,
// pax records, sizes that lie) instead of breaking the first header's
// checksum. Raw header mutations repair the checksum.
type layerGen struct{ b []byte }

func (g *layerGen) next() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *layerGen) pick(n int) int { return int(g.next()) % n }

var fuzzNames = []string{"a", "b", "a/b", "a/b/c", "c", "./a", "/abs/x", "..", "../x", "a/../../x",
	"d/", ".", "lnk", "lnk/x", "a/b/c/d/e/f", "dev/null", "etc/passwd", "x\x00y", strings.Repeat("n", 256),
	"a//b", "f", "f/g"}

var fuzzWhiteouts = []string{".wh.a", ".wh.b", "a/.wh.b", "a/.wh..wh..opq", ".wh..wh..opq", ".wh..wh.plnk", ".wh.", ".wh..", "lnk/.wh.x"}

var fuzzXattrs = []string{"user.x", "security.capability", "trusted.t", "system.posix_acl_access", "system.foo", "user.", "bogus"}

// build writes the layer. It returns the tar stream (maybe gzip'd).
func (g *layerGen) build() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var pax map[string]string
	var headers []int // offsets of header blocks written so far
	for entries := 0; len(g.b) > 0 && entries < 64; entries++ {
		h := &tar.Header{Name: fuzzNames[g.pick(len(fuzzNames))], Mode: int64(g.next()) << 3 & 0o7777,
			Uid: int(g.next()), Gid: int(g.next()), PAXRecords: pax, Format: tar.FormatPAX}
		pax = nil
		op := g.pick(10)
		switch op {
		case 0, 1: // regular file, maybe with a size that lies (the last entry then)
			body := bytes.Repeat([]byte{g.next()}, g.pick(200))
			h.Typeflag, h.Size = tar.TypeReg, int64(len(body))
			if op == 1 && g.pick(4) == 0 {
				h.Size = int64(len(body)) + int64(g.next())<<uint(g.pick(40))
				if tw.WriteHeader(h) != nil {
					return buf.Bytes()
				}
				tw.Flush()
				buf.Write(body)
				return buf.Bytes() // ends inside the entry
			}
			headers = append(headers, buf.Len())
			if tw.WriteHeader(h) != nil {
				continue
			}
			tw.Write(body)
			continue
		case 2:
			h.Typeflag = tar.TypeDir
		case 3:
			h.Typeflag, h.Linkname = tar.TypeSymlink, fuzzNames[g.pick(len(fuzzNames))]
		case 4:
			h.Typeflag, h.Linkname = tar.TypeLink, fuzzNames[g.pick(len(fuzzNames))]
		case 5:
			h.Typeflag, h.Name = tar.TypeReg, fuzzWhiteouts[g.pick(len(fuzzWhiteouts))]
		case 6:
			h.Typeflag = []byte{tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader, 'Z'}[g.pick(5)]
			h.Devmajor, h.Devminor = int64(g.next())<<uint(g.pick(16)), int64(g.next())<<uint(g.pick(24))
		case 7: // xattrs on the next entry
			pax = map[string]string{"SCHILY.xattr." + fuzzXattrs[g.pick(len(fuzzXattrs))]: strings.Repeat("v", g.pick(8)<<uint(g.pick(17)))}
			continue
		case 8: // a long pax path on the next entry
			pax = map[string]string{"path": strings.Repeat("p/", g.pick(200)) + "end"}
			continue
		case 9: // flip a byte of a header already written; repair its checksum
			if len(headers) > 0 {
				tw.Flush()
				off := headers[g.pick(len(headers))]
				b := buf.Bytes()
				if off+512 <= len(b) {
					blk := b[off : off+512]
					if pos := g.pick(512); pos < 148 || pos >= 156 {
						blk[pos] ^= g.next() | 1
					}
					repairChecksum(blk)
				}
			}
			continue
		}
		headers = append(headers, buf.Len())
		tw.WriteHeader(h)
	}
	tw.Close()
	if g.pick(8) == 0 {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(buf.Bytes())
		zw.Close()
		return z.Bytes()
	}
	return buf.Bytes()
}

// repairChecksum recomputes a ustar header block's checksum: the sum of
// its bytes with the checksum field read as spaces.
func repairChecksum(blk []byte) {
	copy(blk[148:156], "        ")
	sum := 0
	for _, c := range blk {
		sum += int(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// fuzzing says whether the test runs under -fuzz (not the seed corpus).
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// FuzzTarLayer layers a generated tar (see layerGen) and reads all of its
// contents. It must fail with a typed, one-line error or give a clean tree
// whose contents come from the input; work and memory are proportional to
// the layer's real size, whatever its headers declare.
func FuzzTarLayer(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 5, 'x', 2, 3, 0, 0, 0, 3, 5, 5, 0, 0, 0, 4, 0, 5, 0, 0, 0})
	f.Add([]byte{2, 4, 0, 0, 0, 0, 8, 1, 0, 0, 0, 9, 9, 7, 0, 0, 0, 200, 3, 4, 10, 0, 0, 0, 1})
	f.Add([]byte{1, 1, 0, 0, 0, 10, 'y', 12, 0, 0, 255, 39})                       // lies about its size
	f.Add([]byte{7, 0, 0, 0, 0, 17, 3, 1, 1, 0, 0, 0, 0, 9, 0, 0, 0, 0, 9, 77, 1}) // pax xattr, then a mutation
	f.Add([]byte{0, 0, 0, 0, 0, 6, 1, 2, 3, 0, 0, 0, 3, 0})
	dir := f.TempDir()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		layer := (&layerGen{b: data}).build()
		p := filepath.Join(dir, "layer.tar")
		if err := os.WriteFile(p, layer, 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()

		flat, err := Flatten(ctx, []Source{{Kind: Tar, Path: p}}, Options{})
		var total int64
		if err == nil {
			checkFlat(t, flat)
			err = flat.Contents(ctx, func(i int, r io.Reader) error {
				n, err := io.Copy(io.Discard, r)
				if err == nil && n != flat.Entries[i].Size {
					t.Fatalf("%s: %d bytes of content, size %d", flat.Entries[i].Path, n, flat.Entries[i].Size)
				}
				total += n
				return err
			})
			if err != nil {
				t.Fatalf("Flatten accepted the layer but Contents fails: %v", err)
			}
		}
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil {
			checkError(t, err)
		}
		// Contents come from the input: never more than its decompressed size.
		if raw := decompressedSize(t, layer); total > raw {
			t.Fatalf("read %d bytes of contents from a %d-byte tar", total, raw)
		}
		// Memory: a fixed allowance (buffers, decompressor) plus a
		// bounded amount per input byte; declared sizes do not count.
		raw := decompressedSize(t, layer)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20+64*uint64(raw) {
			t.Fatalf("allocated %d bytes for a %d-byte layer", alloc, raw)
		}
		if fuzzing() && elapsed > 2*time.Second+time.Duration(raw)*time.Microsecond {
			t.Fatalf("took %v for a %d-byte layer", elapsed, raw)
		}
	})
}

func decompressedSize(t *testing.T, layer []byte) int64 {
	if zr, err := gzip.NewReader(bytes.NewReader(layer)); err == nil {
		n, _ := io.Copy(io.Discard, zr)
		return n
	}
	return int64(len(layer))
}

// checkFlat asserts the invariants of a merged tree.
func checkFlat(t *testing.T, f *Flat) {
	t.Helper()
	seen := map[string]uint32{"": ModeDir}
	prev := ""
	for _, e := range f.Entries {
		if e.Path == "" || strings.HasPrefix(e.Path, "/") || strings.Contains("/"+e.Path+"/", "/../") ||
			strings.Contains("/"+e.Path+"/", "/./") || strings.Contains(e.Path, "//") || strings.IndexByte(e.Path, 0) >= 0 {
			t.Fatalf("unclean path %q", e.Path)
		}
		if _, dup := seen[e.Path]; dup {
			t.Fatalf("path %q listed twice", e.Path)
		}
		if prev != "" && !lessElems(prev, e.Path) {
			t.Fatalf("%q listed after %q", e.Path, prev)
		}
		prev = e.Path
		parent := ""
		if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
			parent = e.Path[:i]
		}
		if m, ok := seen[parent]; !ok || m&ModeType != ModeDir {
			t.Fatalf("%q: parent %q is not a directory of the tree", e.Path, parent)
		}
		seen[e.Path] = e.Mode
		for k := range e.Xattrs {
			if !xattrNamespaceOK(k) {
				t.Fatalf("%q: xattr %q kept", e.Path, k)
			}
		}
		if e.Inode < 1 || (e.Mode&ModeType != ModeRegular && e.Size != 0) {
			t.Fatalf("%q: inode %d, mode %o, size %d", e.Path, e.Inode, e.Mode, e.Size)
		}
	}
}

func lessElems(x, y string) bool {
	xs, ys := strings.Split(x, "/"), strings.Split(y, "/")
	for i := 0; i < len(xs) && i < len(ys); i++ {
		if xs[i] != ys[i] {
			return xs[i] < ys[i]
		}
	}
	return len(xs) < len(ys)
}

// checkError asserts that a refusal is one line and typed.
func checkError(t *testing.T, err error) {
	t.Helper()
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error of several lines: %q", err)
	}
	var fe *FormatError
	var ce *CorruptError
	if !errors.As(err, &fe) && !errors.Is(err, ErrInsecurePath) && !errors.As(err, &ce) {
		t.Fatalf("untyped error: %v", err)
	}
}
