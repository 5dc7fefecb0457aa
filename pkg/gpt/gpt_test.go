package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/gpttest"
)

// memDisk is an in-memory io.ReaderAt and io.WriterAt of a fixed size.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("write beyond the disk")
	}
	return copy(m[off:], p), nil
}

var (
	testDisk  = MustParseGUID("9f1c2a3b-4d5e-4f60-8a7b-8c9d0e1f2a3b")
	testData  = MustParseGUID("e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12")
	testHash  = MustParseGUID("34fb20ef-99c4-f244-bf23-8a1d858e130f")
	testParts = []Partition{
		{Number: 1, Name: "root-x86-64", Type: TypeRootX86_64, UUID: testData, FirstLBA: 2048, LastLBA: 4095, Attrs: AttrReadOnly},
		{Number: 2, Name: "root-x86-64-verity", Type: TypeRootVerityX86_64, UUID: testHash, FirstLBA: 4096, LastLBA: 4103, Attrs: AttrReadOnly},
	}
)

const testSize = 3 << 20

func writeTest(t testing.TB) memDisk {
	t.Helper()
	d := make(memDisk, testSize)
	if err := Write(d, testSize, testDisk, testParts); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRoundTrip: Read gives back what Write wrote, with offsets and sizes.
func TestRoundTrip(t *testing.T) {
	d := writeTest(t)
	tab, err := Read(d, testSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tab.DiskGUID != testDisk || len(tab.Partitions) != 2 || tab.FirstUsableLBA != 34 || tab.LastUsableLBA != testSize/512-34 ||
		tab.NumEntries != 128 || tab.EntrySize != 128 || tab.EntriesLBA != 2 || tab.BackupLBA != testSize/512-1 {
		t.Fatalf("table %+v", tab)
	}
	for i, p := range tab.Partitions {
		w := testParts[i]
		w.Offset, w.Size = int64(w.FirstLBA)*512, int64(w.LastLBA-w.FirstLBA+1)*512
		if p != w {
			t.Errorf("partition %d: %+v, want %+v", i+1, p, w)
		}
	}
	if tab.Find(TypeRootVerityX86_64).Number != 2 || tab.Find(GUID{1}) != nil {
		t.Error("Find")
	}
	if err := tab.CheckBackup(d, testSize); err != nil {
		t.Error(err)
	}
}

// TestBadBackup: CheckBackup finds each damage of the backup table that
// Read does not look at.
func TestBadBackup(t *testing.T) {
	last := int64(testSize - 512)
	for _, tc := range []struct {
		name   string
		damage func(d memDisk)
		want   string
	}{
		{"header CRC", func(d memDisk) { d[last+60] ^= 1 }, "backup header CRC"},
		{"entry CRC", func(d memDisk) { d[last-32*512+40] ^= 1 }, "backup entry array CRC"},
		{"signature", func(d memDisk) { d[last] = 0 }, "no backup GPT header"},
		{"disk GUID", func(d memDisk) { d[last+56] ^= 1; fixBackupCRC(d, last) }, "disk GUID"},
		{"own LBA", func(d memDisk) { d[last+24] ^= 1; fixBackupCRC(d, last) }, "the backup header says it is at LBA"},
	} {
		d := writeTest(t)
		tc.damage(d)
		tab, err := Read(d, testSize, 0)
		if err != nil {
			t.Fatalf("%s: Read: %v", tc.name, err)
		}
		if err := tab.CheckBackup(d, testSize); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A disk that grew: Read still reads it, CheckBackup says where.
	d := append(writeTest(t), make([]byte, 1<<20)...)
	tab, err := Read(d, int64(len(d)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.CheckBackup(d, int64(len(d))); err == nil || !strings.Contains(err.Error(), "the disk's last LBA is") {
		t.Errorf("grown disk: %v", err)
	}
}

func fixBackupCRC(d memDisk, off int64) {
	h := d[off : off+512]
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:HeaderSize]))
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		fixtures.Missing(t, "%s missing (make deps installs it)", name)
	}
}

func tempDisk(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSgdiskReadsOurs: sgdisk -v finds no problem in what Write writes and
// shows every field as written.
func TestSgdiskReadsOurs(t *testing.T) {
	needTool(t, "sgdisk")
	img := tempDisk(t, writeTest(t))
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	out, _ = exec.Command("sgdisk", "-p", img).CombinedOutput()
	if !strings.Contains(string(out), strings.ToUpper(testDisk.String())) {
		t.Errorf("sgdisk -p: no disk GUID:\n%s", out)
	}
	for _, p := range testParts {
		out, _ := exec.Command("sgdisk", "-i", fmt.Sprint(p.Number), img).CombinedOutput()
		for _, want := range []string{strings.ToUpper(p.Type.String()), strings.ToUpper(p.UUID.String()),
			fmt.Sprintf("First sector: %d ", p.FirstLBA), fmt.Sprintf("Last sector: %d ", p.LastLBA),
			"Attribute flags: 1000000000000000", "'" + p.Name + "'"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("sgdisk -i %d: no %q in\n%s", p.Number, want, out)
			}
		}
	}
}

// TestReadSgdisk reads a table written by sgdisk (the reference tool), on a
// 512-byte and a 4096-byte sector disk.
func TestReadSgdisk(t *testing.T) {
	needTool(t, "sgdisk")
	img := tempDisk(t, make([]byte, 8<<20))
	out, err := exec.Command("sgdisk", "-o", "-U=9F1C2A3B-4D5E-4F60-8A7B-8C9D0E1F2A3B",
		"-n=1:2048:4095", "-u=1:e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12", "-c=1:données",
		"-n=2:4096:6143", "-u=2:34fb20ef-99c4-f244-bf23-8a1d858e130f", "-t=2:2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
		"-A=2:set:60", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(img)
	tab, err := Read(bytes.NewReader(b), int64(len(b)), 512)
	if err != nil {
		t.Fatal(err)
	}
	ps := tab.Partitions
	if tab.DiskGUID != testDisk || len(ps) != 2 || ps[0].Number != 1 || ps[1].Number != 2 || ps[0].UUID != testData || ps[1].UUID != testHash ||
		ps[1].Type != TypeRootVerityX86_64 || ps[0].FirstLBA != 2048 || ps[1].LastLBA != 6143 || ps[0].Name != "données" ||
		ps[1].Attrs != AttrReadOnly || ps[0].Attrs != 0 || ps[1].Size != 2048*512 {
		t.Errorf("read %+v", tab)
	}
	// A 4 KiB-sector disk: the header at byte 4096, the array at 8192.
	b4 := make([]byte, 8<<20)
	table4K(t, b4)
	tab, err = Read(bytes.NewReader(b4), int64(len(b4)), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 1 || tab.Partitions[0].Offset != 256*4096 || tab.Partitions[0].UUID != testData {
		t.Errorf("4K-sector table %+v", tab)
	}
	if _, err := Read(bytes.NewReader(b4), int64(len(b4)), 512); err == nil {
		t.Error("a 4K-sector table read with 512-byte sectors")
	}
}

// table4K fills b with a GPT of 4096-byte sectors, built by hand from the
// format (header at LBA 1, entries at LBA 2): sgdisk cannot be told the
// sector size of an image file.
func table4K(t *testing.T, b []byte) {
	t.Helper()
	const sec = 4096
	sectors := uint64(len(b) / sec)
	ents := make([]byte, 128*128)
	ty, u := TypeRootX86_64.Mixed(), testData.Mixed()
	copy(ents, ty[:])
	copy(ents[16:], u[:])
	binary.LittleEndian.PutUint64(ents[32:], 256)
	binary.LittleEndian.PutUint64(ents[40:], 511)
	h := b[sec : 2*sec]
	copy(h, "EFI PART")
	le := binary.LittleEndian
	le.PutUint32(h[8:], Revision1_0)
	le.PutUint32(h[12:], HeaderSize)
	le.PutUint64(h[24:], 1)
	le.PutUint64(h[32:], sectors-1)
	le.PutUint64(h[40:], 6)
	le.PutUint64(h[48:], sectors-6)
	le.PutUint64(h[72:], 2)
	le.PutUint32(h[80:], 128)
	le.PutUint32(h[84:], 128)
	le.PutUint32(h[88:], crc32.ChecksumIEEE(ents))
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:HeaderSize]))
	copy(b[2*sec:], ents)
}

// TestBadTables: each damage is a *FormatError at the right offset.
func TestBadTables(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name   string
		damage func(b []byte)
		fix    bool // recompute the CRCs after the damage
		off    int64
		want   string
		crc    bool
	}{
		{"no signature", func(b []byte) { b[512] = 'X' }, false, 512, "no GPT header", false},
		{"header CRC", func(b []byte) { b[512+60] ^= 1 }, false, 512 + 16, "header CRC", true},
		{"entry CRC", func(b []byte) { b[1024+20] ^= 1 }, false, 512 + 88, "entry array CRC", true},
		{"header size", func(b []byte) { le.PutUint32(b[512+12:], 600) }, true, 512 + 12, "header size 600", false},
		{"own LBA", func(b []byte) { le.PutUint64(b[512+24:], 5) }, true, 512 + 24, "at LBA 5", false},
		{"huge entry count", func(b []byte) { le.PutUint32(b[512+80:], 0xffffffff) }, true, 512 + 80, "4294967295 partition entries", false},
		{"entry size 0", func(b []byte) { le.PutUint32(b[512+84:], 0) }, true, 512 + 80, "entries of 0 bytes", false},
		{"entry size 200", func(b []byte) { le.PutUint32(b[512+84:], 200) }, true, 512 + 80, "entries of 200 bytes", false},
		{"array outside", func(b []byte) { le.PutUint64(b[512+72:], testSize/512-2) }, true, 512 + 72, "not inside the disk", false},
		{"array in usable area", func(b []byte) { le.PutUint64(b[512+72:], 100) }, true, 512 + 72, "overlaps the usable LBAs", false},
		{"usable beyond disk", func(b []byte) { le.PutUint64(b[512+48:], 1<<40) }, true, 512 + 40, "usable LBAs", false},
		{"partition beyond usable", func(b []byte) { le.PutUint64(b[1024+128+40:], testSize/512-2) }, true, 1024 + 128 + 32, "partition 2 (LBAs 4096-6142)", false},
		{"partition reversed", func(b []byte) { le.PutUint64(b[1024+40:], 2000) }, true, 1024 + 32, "partition 1 (LBAs 2048-2000)", false},
		{"overlap", func(b []byte) { le.PutUint64(b[1024+128+32:], 4000) }, true, 1024 + 128 + 32, "partition 2 overlaps", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := writeTest(t)
			tc.damage(d)
			if tc.fix {
				gpttest.FixCRCs(d, 512)
			}
			tab, err := Read(d, testSize, 512)
			var fe *FormatError
			if tab != nil || !errors.As(err, &fe) || fe.Offset != tc.off || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrChecksum) != tc.crc {
				t.Errorf("got %v (%+v), want a FormatError at %#x with %q", err, fe, tc.off, tc.want)
			}
		})
	}
	// Too small, and a read error.
	if _, err := Read(make(memDisk, 1024), 1024, 0); err == nil {
		t.Error("1 KiB disk accepted")
	}
	d := writeTest(t)
	if _, err := Read(d[:2048], testSize, 0); err == nil || !strings.Contains(err.Error(), "reading the entry array") {
		t.Errorf("truncated reader: %v", err)
	}
}

func TestWriteRefuses(t *testing.T) {
	p := testParts[0]
	for _, tc := range []struct {
		name  string
		parts []Partition
		size  int64
	}{
		{"number 0", []Partition{{Number: 0, Type: p.Type, FirstLBA: 2048, LastLBA: 2048}}, testSize},
		{"number 129", []Partition{{Number: 129, Type: p.Type, FirstLBA: 2048, LastLBA: 2048}}, testSize},
		{"zero type", []Partition{{Number: 1, FirstLBA: 2048, LastLBA: 2048}}, testSize},
		{"twice", []Partition{p, p}, testSize},
		{"overlap", []Partition{p, {Number: 2, Type: p.Type, FirstLBA: 4095, LastLBA: 5000}}, testSize},
		{"before usable", []Partition{{Number: 1, Type: p.Type, FirstLBA: 33, LastLBA: 40}}, testSize},
		{"after usable", []Partition{{Number: 1, Type: p.Type, FirstLBA: 2048, LastLBA: testSize/512 - 33}}, testSize},
		{"long name", []Partition{{Number: 1, Type: p.Type, FirstLBA: 2048, LastLBA: 2048, Name: strings.Repeat("n", 37)}}, testSize},
		{"odd size", testParts, testSize + 1},
		{"tiny disk", nil, 512 * 60},
	} {
		if err := Write(make(memDisk, max(tc.size, 1<<16)), tc.size, testDisk, tc.parts); err == nil {
			t.Errorf("%s: written", tc.name)
		}
	}
}

func TestGUID(t *testing.T) {
	g := MustParseGUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
	if g != TypeRootX86_64 || g.String() != "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" {
		t.Errorf("%s", g)
	}
	m := g.Mixed()
	if m[0] != 0xe3 || m[3] != 0x4f || m[4] != 0xcd || m[6] != 0xb1 || m[8] != 0x96 || FromMixed(m[:]) != g {
		t.Errorf("mixed % x", m)
	}
	var u GUID
	if err := u.UnmarshalText([]byte(g.String())); err != nil || u != g {
		t.Error(err)
	}
	for _, s := range []string{"", "4f68bce3e8cd4db196e7fbcaf984b709", "4f68bce3-e8cd-4db1-96e7-fbcaf984b70g", "4f68bce3-e8cd-4db1-96e7fbcaf984b709-"} {
		if _, err := ParseGUID(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

// zeroTail reads head, then zeros up to size, counting the bytes read.
type zeroTail struct {
	head []byte
	size int64
	read int64
}

func (z *zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-off))
	for i := range p[:n] {
		p[i] = 0
	}
	if off < int64(len(z.head)) {
		copy(p[:n], z.head[off:])
	}
	z.read += int64(n)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzRead mutates a valid table and repairs both CRCs (with repair), so
// the mutations reach the checks behind them. Read and CheckBackup must
// not panic, must read and allocate no more than the limits allow (at
// most 4 MiB of entry array, whatever the header declares), and what Read
// accepts must be consistent. The disk is the fuzzed head (MBR, header,
// array) followed by zeros up to the fuzzed size.
func FuzzRead(f *testing.F) {
	d := writeTest(f)
	f.Add([]byte(d[:34*512]), uint32(testSize/512), true)
	f.Add([]byte(d[:34*512]), uint32(testSize/512), false)
	f.Add([]byte(d[:34*512]), uint32(40), true)
	f.Fuzz(func(t *testing.T, head []byte, sectors uint32, repair bool) {
		if len(head) > 64*512 {
			head = head[:64*512]
		}
		head = append([]byte(nil), head...)
		if repair {
			gpttest.FixCRCs(head, 512)
		}
		size := max(int64(sectors)*512, int64(len(head)))
		z := &zeroTail{head: head, size: size}
		var tab *Table
		var err error
		const limit = 2*MaxEntries*MaxEntrySize + 1<<20
		fuzzbound.Check(t, head, 0, limit, func() {
			z.read = 0 // Check may run this again
			if tab, err = Read(z, size, 512); err == nil {
				tab.CheckBackup(z, size)
			}
		})
		t.Logf("disk %d bytes, read %d", size, z.read)
		if z.read > limit {
			t.Fatalf("read %d bytes", z.read)
		}
		if err != nil {
			if tab != nil {
				t.Fatal("a table beside an error")
			}
			return
		}
		for _, p := range tab.Partitions {
			if p.Offset < 0 || p.Offset+p.Size > size || p.FirstLBA < tab.FirstUsableLBA || p.LastLBA > tab.LastUsableLBA {
				t.Fatalf("partition outside: %+v", p)
			}
		}
	})
}

func ExampleRead() {
	disk := make(memDisk, 3<<20)
	parts := []Partition{{Number: 1, Name: "root-x86-64", Type: TypeRootX86_64,
		UUID: MustParseGUID("e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12"), FirstLBA: 2048, LastLBA: 4095, Attrs: AttrReadOnly}}
	if err := Write(disk, int64(len(disk)), MustParseGUID("9f1c2a3b-4d5e-4f60-8a7b-8c9d0e1f2a3b"), parts); err != nil {
		fmt.Println(err)
		return
	}
	tab, err := Read(disk, int64(len(disk)), 512)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range tab.Partitions {
		fmt.Println(p.Number, p.Name, p.UUID, p.Offset, p.Size, p.Attrs)
	}
	// Output: 1 root-x86-64 e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12 1048576 1048576 0x1000000000000000
}
