package igvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// raw encodes headers without any validation (file offsets as given) and
// appends data; hs receives the offset where file data starts.
func raw(hs func(dataStart uint32) []Header, data []byte) []byte {
	probe := hs(0)
	size := 0
	for _, h := range probe {
		n, err := headerSize(h)
		if err != nil {
			panic(err)
		}
		size += n
	}
	dataStart := uint32(FixedHeaderSize + size)
	var section []byte
	for _, h := range hs(dataStart) {
		body, err := encodeBody(h)
		if err != nil {
			panic(err)
		}
		section = binary.LittleEndian.AppendUint32(section, uint32(h.Type()))
		section = binary.LittleEndian.AppendUint32(section, uint32(len(body)))
		section = append(section, body...)
		for len(section)%8 != 0 {
			section = append(section, 0)
		}
	}
	return finish(section, data)
}

func finish(section, data []byte) []byte {
	fh := FixedHeader{Magic, 1, FixedHeaderSize, uint32(len(section)), uint32(FixedHeaderSize + len(section) + len(data)), 0}
	b, _ := binary.Append(nil, binary.LittleEndian, fh)
	b = append(b, section...)
	binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b))
	return append(b, data...)
}

func snpPlatform(mask uint32) *SupportedPlatform {
	return &SupportedPlatform{CompatibilityMask: mask, PlatformType: PlatformSEVSNP, PlatformVersion: 1}
}

func page(gpa uint64, off uint32) *PageData {
	return &PageData{GPA: gpa, CompatibilityMask: 1, FileOffset: off}
}

// valid is a small well-formed file: SNP platform, policy, a data page, a
// zero page, a parameter area with VP count and memory map, its insert, a
// VMSA and an ID block.
func valid(mut func(d uint32, hs []Header) []Header) []byte {
	return raw(func(d uint32) []Header {
		hs := []Header{
			snpPlatform(1),
			&GuestPolicy{Policy: 0x3001f, CompatibilityMask: 1},
			page(0x1000, d),
			page(0x2000, 0),
			&ParameterArea{NumberOfBytes: 0x1000, ParameterAreaIndex: 0},
			&VPCountParameter{ParameterAreaIndex: 0, ByteOffset: 0},
			&MemoryMap{ParameterAreaIndex: 0, ByteOffset: 24},
			&ParameterInsert{GPA: 0x3000, CompatibilityMask: 1, ParameterAreaIndex: 0},
			&VPContext{GPA: 0x4000, CompatibilityMask: 1, FileOffset: d + 0x1000},
			&SNPIDBlock{CompatibilityMask: 1},
		}
		if mut != nil {
			hs = mut(d, hs)
		}
		return hs
	}, append(bytes.Repeat([]byte{0xaa}, 0x1000), append(bytes.Repeat([]byte{0xbb}, 0x100), make([]byte, 0xf00)...)...))
}

func TestValidFile(t *testing.T) {
	b := valid(nil)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Platforms()) != 1 || len(f.Initialization()) != 1 || len(f.Directives()) != 8 {
		t.Fatalf("sections %d/%d/%d", len(f.Platforms()), len(f.Initialization()), len(f.Directives()))
	}
	d, err := f.Data(f.Directives()[0])
	if err != nil || !bytes.Equal(d, bytes.Repeat([]byte{0xaa}, 4096)) {
		t.Fatalf("page data %v %x", err, d[:8])
	}
	z, err := f.Data(f.Directives()[1])
	if err != nil || !bytes.Equal(z, make([]byte, 4096)) {
		t.Fatal("zero page not zero")
	}
}

func TestRejects(t *testing.T) {
	set := func(i int, h Header) func(uint32, []Header) []Header {
		return func(_ uint32, hs []Header) []Header { hs[i] = h; return hs }
	}
	with := func(f func(d uint32, hs []Header)) func(uint32, []Header) []Header {
		return func(d uint32, hs []Header) []Header { f(d, hs); return hs }
	}
	insert := func(i int, h Header) func(uint32, []Header) []Header {
		return func(_ uint32, hs []Header) []Header {
			return append(hs[:i], append([]Header{h}, hs[i:]...)...)
		}
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than the 24-byte fixed header"},
		{"truncated", valid(nil)[:len(valid(nil))-1], "total_file_size"},
		{"extended", append(valid(nil), 0), "total_file_size"},
		{"magic", func() []byte { b := valid(nil); b[0] = 'X'; return b }(), "magic"},
		{"version", func() []byte { b := valid(nil); b[4] = 2; return b }(), "format version 2"},
		{"crc", func() []byte { b := valid(nil); b[20] ^= 1; return b }(), "checksum"},
		{"header byte flipped", func() []byte { b := valid(nil); b[FixedHeaderSize+8] ^= 1; return b }(), "checksum"},
		{"unaligned gpa", valid(set(2, page(0x1001, 0))), "header 2 (PAGE_DATA) at offset 0x48: gpa 0x1001 not 4 KiB aligned"},
		{"reserved", valid(set(3, &PageData{GPA: 0x2000, CompatibilityMask: 1, Reserved: 1})), "reserved"},
		{"policy reserved", valid(set(1, &GuestPolicy{Policy: 1, CompatibilityMask: 1, Reserved: 5})), "header 1 (GUEST_POLICY)"},
		{"page flags", valid(set(3, &PageData{GPA: 0x2000, CompatibilityMask: 1, Flags: 8})), "flags 0x8"},
		{"2M unaligned", valid(set(3, &PageData{GPA: 0x2000, CompatibilityMask: 1, Flags: PageFlag2MB})), "not 2 MiB aligned"},
		{"data type", valid(set(3, &PageData{GPA: 0x2000, CompatibilityMask: 1, DataType: 9})), "data_type 9"},
		{"mask zero", valid(set(3, &PageData{GPA: 0x2000})), "compatibility_mask is zero"},
		{"mask undeclared", valid(set(3, &PageData{GPA: 0x2000, CompatibilityMask: 2})), "no declared platform"},
		{"section order", valid(insert(5, &GuestPolicy{CompatibilityMask: 1})), "initialization header after the directive section"},
		{"platform late", valid(insert(2, snpPlatform(2))), "platform header after the initialization section"},
		{"no platform", valid(func(_ uint32, hs []Header) []Header { return hs[1:] }), "no SUPPORTED_PLATFORM"},
		{"duplicate platform", valid(insert(1, snpPlatform(2))), "second SUPPORTED_PLATFORM for SEV_SNP"},
		{"two-bit mask", valid(set(0, snpPlatform(3))), "exactly one bit"},
		{"vtl", valid(set(0, &SupportedPlatform{CompatibilityMask: 1, HighestVTL: 1, PlatformType: 2, PlatformVersion: 1})), "highest_vtl 1"},
		{"platform type", valid(set(0, &SupportedPlatform{CompatibilityMask: 1, PlatformType: 9, PlatformVersion: 1})), "platform_type 9"},
		{"platform version", valid(set(0, &SupportedPlatform{CompatibilityMask: 1, PlatformType: 2})), "platform_version 0"},
		{"vp mask two platforms", valid(func(d uint32, hs []Header) []Header {
			hs = append([]Header{hs[0], &SupportedPlatform{CompatibilityMask: 2, PlatformType: PlatformTDX, PlatformVersion: 1}}, hs[1:]...)
			hs[9] = &VPContext{GPA: 0x4000, CompatibilityMask: 3, FileOffset: d}
			return hs
		}), "not exactly one platform's mask"},
		{"vmsa tail", func() []byte {
			b := valid(nil)
			f, _ := Parse(b)
			vp := f.Directives()[6].(*VPContext)
			b[int(vp.FileOffset)+0xfff] = 1 // file data is not covered by the CRC
			return b
		}(), "header 8 (VP_CONTEXT) at offset 0xd8: VMSA byte 0xfff is 0x1"},
		{"vp no data", valid(set(8, &VPContext{GPA: 0x4000, CompatibilityMask: 1})), "needs file data"},
		{"data past end", valid(with(func(d uint32, hs []Header) { hs[2] = page(0x1000, d+0x1001) })), "runs past the end of the file"},
		{"data in headers", valid(with(func(d uint32, hs []Header) { hs[2] = page(0x1000, 24) })), "points into the headers"},
		{"area twice", valid(insert(5, &ParameterArea{NumberOfBytes: 0x1000})), "parameter area 0 allocated twice"},
		{"area size", valid(set(4, &ParameterArea{NumberOfBytes: 0x1001})), "number_of_bytes 0x1001"},
		{"huge area data", valid(with(func(d uint32, hs []Header) {
			hs[4] = &ParameterArea{NumberOfBytes: 1 << 60, FileOffset: d}
		})), "runs past the end"},
		{"param unallocated", valid(set(5, &VPCountParameter{ParameterAreaIndex: 7})), "parameter area 7 was never allocated"},
		{"param offset", valid(set(6, &MemoryMap{ByteOffset: 0x1000})), "byte_offset 0x1000 outside parameter area 0"},
		{"param after insert", valid(insert(8, &CommandLine{})), "used after its PARAMETER_INSERT"},
		{"insert twice", valid(insert(8, &ParameterInsert{GPA: 0x5000, CompatibilityMask: 1})), "inserted twice"},
		{"insert unallocated", valid(set(7, &ParameterInsert{GPA: 0x3000, CompatibilityMask: 1, ParameterAreaIndex: 3})), "never allocated"},
		{"unknown type", valid(insert(3, &Unknown{HeaderType: 0x3ff, Body: make([]byte, 8)})), "unknown header type 0x3ff"},
		{"bad length", func() []byte {
			b := valid(nil)
			f, _ := Parse(b)
			binary.LittleEndian.PutUint32(b[f.Offsets[2]+4:], 16)
			binary.LittleEndian.PutUint32(b[20:], 0)
			binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[:f.Fixed.VariableHeaderOffset+f.Fixed.VariableHeaderSize]))
			return b
		}(), "length 16, want 24"},
		{"length past section", func() []byte {
			b := valid(nil)
			f, _ := Parse(b)
			binary.LittleEndian.PutUint32(b[f.Offsets[9]+4:], 0xffffff00)
			binary.LittleEndian.PutUint32(b[20:], 0)
			binary.LittleEndian.PutUint32(b[20:], crc32.ChecksumIEEE(b[:f.Fixed.VariableHeaderOffset+f.Fixed.VariableHeaderSize]))
			return b
		}(), "runs past the end of the variable header section"},
		{"no file data", finish(func() []byte {
			b := valid(nil)
			f, _ := Parse(b)
			return b[24 : 24+f.Fixed.VariableHeaderSize]
		}(), nil), "no file data"},
		{"header offset", func() []byte { b := valid(nil); b[8] = 28; return b }(), "variable_header_offset 0x1c must be >= 24 and a multiple of 8"},
		{"no headers", finish(nil, make([]byte, 4096)), "no SUPPORTED_PLATFORM header"},
		{"platform mask reused", valid(insert(1, &SupportedPlatform{CompatibilityMask: 1, PlatformType: PlatformTDX, PlatformVersion: 1})), "compatibility_mask 0x1 already used by another platform"},
		{"vp reserved", valid(with(func(d uint32, hs []Header) {
			hs[8] = &VPContext{GPA: 0x4000, CompatibilityMask: 1, FileOffset: d + 0x1000, Reserved: 1}
		})), "header 8 (VP_CONTEXT) at offset 0xd8: reserved field 0x1 is not zero"},
		{"vp unaligned gpa", valid(with(func(d uint32, hs []Header) {
			hs[8] = &VPContext{GPA: 0x4800, CompatibilityMask: 1, FileOffset: d + 0x1000}
		})), "gpa 0x4800 not 4 KiB aligned"},
		{"vp data past end", valid(with(func(d uint32, hs []Header) {
			hs[8] = &VPContext{GPA: 0x4000, CompatibilityMask: 1, FileOffset: d + 0x1001}
		})), "header 8 (VP_CONTEXT) at offset 0xd8: file data"},
		{"insert unaligned gpa", valid(set(7, &ParameterInsert{GPA: 0x3100, CompatibilityMask: 1})), "header 7 (PARAMETER_INSERT) at offset 0xc0: gpa 0x3100 not 4 KiB aligned"},
		{"id block reserved", valid(set(9, &SNPIDBlock{CompatibilityMask: 1, Reserved: [3]byte{0, 1, 0}})), "header 9 (SNP_ID_BLOCK) at offset 0xf8: reserved bytes 000100"},
		{"required memory reserved", valid(insert(2, &RequiredMemory{GPA: 0x10000, CompatibilityMask: 1, NumberOfBytes: 0x1000, Reserved: 2})), "header 2 (REQUIRED_MEMORY) at offset 0x48: reserved field 0x2"},
		{"required memory size", valid(insert(2, &RequiredMemory{GPA: 0x10000, CompatibilityMask: 1, NumberOfBytes: 0x1001})), "number_of_bytes 0x1001 not a multiple of 4 KiB"},
		{"page table region (valid)", valid(insert(2, &PageTableRelocation{CompatibilityMask: 1, GPA: 0x10000, Size: 0x1000})), ""},
		{"relocation overlap", valid(func(_ uint32, hs []Header) []Header {
			r := &RelocatableRegion{CompatibilityMask: 1, RelocationAlignment: 0x1000, RelocationRegionGPA: 0x10000, RelocationRegionSize: 0x2000, MaximumRelocationGPA: 0x100000}
			return append(hs[:2], append([]Header{r, &PageTableRelocation{CompatibilityMask: 1, GPA: 0x11000, Size: 0x1000}}, hs[2:]...)...)
		}), "overlaps region"},
		{"insert in page tables", valid(insert(2, &PageTableRelocation{CompatibilityMask: 1, GPA: 0x3000, Size: 0x1000})), "inside the page table relocation region"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid variant rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *FormatError", err)
			}
		})
	}
}

func TestOptionalUnknownKept(t *testing.T) {
	u := &Unknown{HeaderType: OptionalBit | 0x3ff, Body: []byte{1, 2, 3}}
	b := valid(func(_ uint32, hs []Header) []Header {
		return append(hs[:3], append([]Header{u}, hs[3:]...)...)
	})
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := f.Headers[3].(*Unknown)
	if !ok || got.HeaderType != u.HeaderType || !bytes.Equal(got.Body, u.Body) {
		t.Fatalf("header 3 = %#v", f.Headers[3])
	}
	var bld Builder
	bld.CopyFile(f)
	g := reparse(t, &bld)
	sameContents(t, f, g)
}

func TestBuilder(t *testing.T) {
	a := bytes.Repeat([]byte{1}, 4096)
	short := []byte("hello")
	var b Builder
	b.Add(snpPlatform(1), nil)
	b.Add(&GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(page(0x1000, 99), Bytes(a))                                                                 // stored
	b.Add(page(0x2000, 0), Bytes(bytes.Clone(a)))                                                     // same contents: deduplicated
	b.Add(page(0x3000, 0), Bytes(make([]byte, 4096)))                                                 // zero: offset 0
	b.Add(page(0x4000, 0), nil)                                                                       // no data: offset 0
	b.Add(page(0x5000, 0), Bytes(short))                                                              // padded
	b.Add(&VPContext{GPA: 0x6000, CompatibilityMask: 1}, Bytes(append(short, make([]byte, 4091)...))) // same padded contents as 0x5000
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ds := f.Directives()
	off := func(i int) uint32 { return fileOffsetOf(ds[i]) }
	dataStart := uint32(f.Fixed.VariableHeaderOffset + f.Fixed.VariableHeaderSize)
	if off(0) != dataStart || off(1) != dataStart || off(2) != 0 || off(3) != 0 || off(4) != dataStart+4096 || off(5) != off(4) {
		t.Errorf("file offsets %#x %#x %#x %#x %#x %#x (data at %#x)", off(0), off(1), off(2), off(3), off(4), off(5), dataStart)
	}
	if want := int(dataStart) + 2*4096; out.Len() != want {
		t.Errorf("file size %d, want %d", out.Len(), want)
	}
	p, _ := f.Data(ds[4])
	if !bytes.Equal(p[:5], short) || !bytes.Equal(p[5:], make([]byte, 4091)) {
		t.Error("short page not zero padded")
	}
	// Padding between headers is zero: VP_CONTEXT is the only 20-byte body.
	vp := f.Offsets[f.DirectiveIndex(5)]
	if !bytes.Equal(out.Bytes()[vp+28:vp+32], []byte{0, 0, 0, 0}) {
		t.Errorf("padding %x", out.Bytes()[vp+28:vp+32])
	}
}

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name string
		add  func(b *Builder)
		want string
	}{
		{"vp without data", func(b *Builder) { b.Add(&VPContext{GPA: 0x1000, CompatibilityMask: 1}, nil) }, "needs data"},
		{"data on a parameter", func(b *Builder) {
			b.Add(&ParameterArea{NumberOfBytes: 4096}, nil)
			b.Add(&VPCountParameter{}, Bytes([]byte{1}))
		}, "carries no file data"},
		{"oversized page", func(b *Builder) { b.Add(page(0x1000, 0), Bytes(make([]byte, 4097))) }, "exceeds the 4096 bytes"},
		{"unaligned", func(b *Builder) { b.Add(page(0x1800, 0), Bytes([]byte{1})) }, "header 1 (PAGE_DATA) at offset 0x30: gpa 0x1800 not 4 KiB aligned"},
		{"no data at all", func(b *Builder) { b.Add(&GuestPolicy{CompatibilityMask: 1}, nil) }, "no header carries file data"},
		{"vmsa tail", func(b *Builder) {
			b.Add(&VPContext{GPA: 0x1000, CompatibilityMask: 1}, Bytes(append(make([]byte, 0x670), 1)))
		}, "VMSA byte 0x670 is 0x1"},
		{"unknown not optional", func(b *Builder) { b.Add(&Unknown{HeaderType: 0x3f0}, nil) }, "unknown header type 0x3f0"},
		{"unknown of a known type", func(b *Builder) { b.Add(&Unknown{HeaderType: TypePageData}, nil) }, "known type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder
			b.Add(snpPlatform(1), nil)
			tc.add(&b)
			var out bytes.Buffer
			_, err := b.WriteTo(&out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A file whose only data is zero keeps one stored copy so that it stays
	// readable.
	var b Builder
	b.Add(snpPlatform(1), nil)
	b.Add(page(0x1000, 0), Bytes(make([]byte, 10)))
	var out bytes.Buffer
	if _, err := b.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(out.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// TestHugeHeaderSection: a variable header section above MaxHeaderSection
// is rejected from the fixed header alone, before it is read or allocated.
func TestHugeHeaderSection(t *testing.T) {
	const vs = MaxHeaderSection + 8
	size := int64(FixedHeaderSize + vs + PageSize4K)
	fh := FixedHeader{Magic, 1, FixedHeaderSize, vs, uint32(size), 0}
	b, _ := binary.Append(nil, binary.LittleEndian, fh)
	r := &countingZeroReader{head: b}
	_, err := Open(r, size)
	if err == nil || !strings.Contains(err.Error(), "variable_header_size 67108872 exceeds the 67108864-byte limit") {
		t.Fatalf("error %v", err)
	}
	if r.n > FixedHeaderSize {
		t.Errorf("read %d bytes before rejecting", r.n)
	}
}

// countingZeroReader serves head, then zeros, counting the bytes read.
type countingZeroReader struct {
	head []byte
	n    int64
}

func (c *countingZeroReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if off < int64(len(c.head)) {
		copy(p, c.head[off:])
	}
	c.n += int64(len(p))
	return len(p), nil
}

// TestManyRegions: the quadratic overlap check is bounded.
func TestManyRegions(t *testing.T) {
	b := valid(func(_ uint32, hs []Header) []Header {
		var rs []Header
		for i := 0; i <= maxRegions; i++ {
			rs = append(rs, &RelocatableRegion{CompatibilityMask: 1, RelocationAlignment: 0x1000,
				RelocationRegionGPA: 0x100000000 + uint64(i)*0x1000, RelocationRegionSize: 0x1000, MaximumRelocationGPA: 1 << 40})
		}
		return append(hs[:2], append(rs, hs[2:]...)...)
	})
	if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "more than 4096 relocation regions") {
		t.Fatalf("error %v", err)
	}
}
