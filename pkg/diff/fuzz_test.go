package diff

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/erofstest"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/gpttest"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// countingAt counts the bytes read through it, for the work bounds.
type countingAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// checkCompare compares a against b (the mutant): the result is complete
// or an error, never both, and an error is one line naming b; the text
// form has one line per difference; both inputs are read at most a few
// times over (work follows the inputs, not what they declare), and the
// allocations stay in proportion to them (fuzzbound).
func checkCompare(t *testing.T, a, b []byte, perByte uint64) *Result {
	t.Helper()
	ca, cb := &countingAt{r: bytes.NewReader(a)}, &countingAt{r: bytes.NewReader(b)}
	var res *Result
	var err error
	input := append(append([]byte(nil), a...), b...) // the bound covers both sides
	fuzzbound.Check(t, input, perByte, 64<<20, func() {
		res, err = Compare(context.Background(), Artifact{"a", ca, int64(len(a))}, Artifact{"b", cb, int64(len(b))}, Options{})
	})
	if (res == nil) == (err == nil) {
		t.Fatalf("result %v beside error %v", res != nil, err)
	}
	if err != nil {
		var ie *InputError
		if !asInputError(err, &ie) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("error %q: not one line of an *InputError", err)
		}
		return nil
	}
	for _, d := range res.Differences {
		if l := d.Line(); strings.ContainsAny(l, "\n\r") {
			t.Fatalf("difference of several lines: %q", l)
		}
	}
	if err := res.WriteText(io.Discard); err != nil {
		t.Fatal(err)
	}
	if limit := 16*int64(len(a)+len(b)) + 4<<20; ca.n+cb.n > limit {
		t.Fatalf("read %d+%d bytes of %d+%d-byte inputs", ca.n, cb.n, len(a), len(b))
	}
	return res
}

func asInputError(err error, ie **InputError) bool {
	for e := err; e != nil; {
		if x, ok := e.(*InputError); ok {
			*ie = x
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// FuzzRootDisks compares a good root disk with a mutant of it: the erofs
// damaged structure-aware (inode and directory entry fields, entries
// pointed at other inodes, superblock fields; internal/erofstest, which
// repairs the superblock checksum, so the mutations reach the walk), or,
// with raw, the start of the disk overwritten and the GPT CRCs repaired.
func FuzzRootDisks(f *testing.F) {
	a := buildDisk(f, baseTree())
	tab, err := gpt.Read(bytes.NewReader(a), int64(len(a)), 0)
	if err != nil {
		f.Fatal(err)
	}
	p := tab.Partitions[0]
	layout, err := erofstest.Find(a[p.Offset : p.Offset+p.Size])
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{2, 5, 0, 0}, false)    // an entry to the root
	f.Add([]byte{0, 7, 4, 0x41}, false) // an inode's mode
	f.Add([]byte{0, 9, 20, 7, 1, 3, 0, 9}, false)
	f.Add([]byte{3, 0, 12, 40}, false) // the block size
	f.Add(a[512:1024], true)
	f.Fuzz(func(t *testing.T, ops []byte, raw bool) {
		b := append([]byte(nil), a...)
		if raw {
			copy(b[512:], ops[:min(len(ops), 33*512)])
			gpttest.FixCRCs(b, 512)
		} else {
			erofstest.Mutate(b[p.Offset:p.Offset+p.Size], layout, ops)
		}
		checkCompare(t, a, b, 16)
	})
}

// igvmFuzzBase is the IGVM file FuzzIGVMs mutates: a Linux boot with a
// command line, an initrd and ACPI tables.
func igvmFuzzBase(t testing.TB) []byte {
	cpio := mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.None})
	return buildIGVM(t, kata("console=ttyS0 panic=-1", cpio, acpiTables(t, nil)), nil)
}

// mutateIGVM applies ops, 4 bytes each (kind, index, field, value), to an
// IGVM file and repairs its checksum:
//
//	kind%3 == 0: header[index] body byte field = value
//	kind%3 == 1: byte field*16 + kind/3%16 of the file data of the
//	             index-th header with data (pages, VMSAs)
//	kind%3 == 2: byte field*4 of the VMSA (registers up to 0x3fc)
func mutateIGVM(b []byte, f *igvm.File, ops []byte) {
	var withData []int64
	var vmsa int64 = -1
	for _, h := range f.Headers {
		switch x := h.(type) {
		case *igvm.PageData:
			if x.FileOffset != 0 {
				withData = append(withData, int64(x.FileOffset))
			}
		case *igvm.VPContext:
			if x.FileOffset != 0 {
				vmsa = int64(x.FileOffset)
				withData = append(withData, vmsa)
			}
		}
	}
	for len(ops) >= 4 {
		kind, idx, field, val := ops[0], int(ops[1]), int(ops[2]), ops[3]
		ops = ops[4:]
		var off int64 = -1
		switch kind % 3 {
		case 0:
			h := f.Offsets[idx%len(f.Offsets)]
			n := int64(binary.LittleEndian.Uint32(b[h+4:]))
			if n > 0 {
				off = h + 8 + int64(field)%n
			}
		case 1:
			if len(withData) > 0 {
				off = withData[idx%len(withData)] + int64(field)*16 + int64(kind/3%16)
			}
		case 2:
			if vmsa >= 0 {
				off = vmsa + int64(field)*4
			}
		}
		if off >= 0 && off < int64(len(b)) {
			b[off] = val
		}
	}
	igvmtest.FixChecksum(b)
}

// FuzzIGVMs compares a good IGVM file with a mutant of it: header fields,
// page contents (boot_params, command line, ACPI tables, the initrd, the
// CPUID page) and VMSA registers, with the checksum repaired.
func FuzzIGVMs(f *testing.F) {
	a := igvmFuzzBase(f)
	fa, err := igvm.Parse(a)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0, 236, 0x21}) // sev_features
	f.Add([]byte{2, 0, 204, 0x77}) // rsi: boot_params elsewhere
	f.Add([]byte{0, 5, 16, 2, 1, 3, 9, 1})
	f.Add([]byte{4, 7, 35, 0xff, 7, 7, 2, 0x41})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := append([]byte(nil), a...)
		mutateIGVM(b, fa, ops)
		checkCompare(t, a, b, 16)
	})
}

// FuzzInitrds compares a good initrd with arbitrary data seeded with
// initrds (uncompressed newc has no checksum to repair).
func FuzzInitrds(f *testing.F) {
	a := mkInitrd(f, baseInitrd(), initrd.WriteOptions{Compression: initrd.None})
	f.Add(a)
	f.Add(mkInitrd(f, baseInitrd(), initrd.WriteOptions{Compression: initrd.Gzip}))
	f.Add(append(mkInitrd(f, baseInitrd()[3:], initrd.WriteOptions{Compression: initrd.None}),
		mkInitrd(f, baseInitrd()[:3], initrd.WriteOptions{Compression: initrd.Zstd})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCompare(t, a, b, 64)
	})
}

// FuzzCompare compares two arbitrary inputs: detection, JSON, text, data
// and whatever kind the bytes look like.
func FuzzCompare(f *testing.F) {
	f.Add([]byte(`{"a": [1, {"name": "x", "v": 2}], "b": "c"}`), []byte(`{"a": [1.0, {"name": "x", "v": 3}, null]}`))
	f.Add([]byte("line one\nline two\n"), []byte("line one\nline 2\n"))
	f.Add([]byte{0, 1, 2}, []byte{0, 1})
	f.Add([]byte("070701"), []byte("\x1f\x8b\x08\x00"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		checkCompare(t, a, b, 64)
	})
}
