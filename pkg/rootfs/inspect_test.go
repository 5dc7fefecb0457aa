package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/erofstest"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/gpttest"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/source"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// sliceAt writes into a fixed byte slice.
type sliceAt []byte

func (s sliceAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(s)) {
		return 0, errors.New("write outside")
	}
	return copy(s[off:], p), nil
}

// smallDisk builds the small fixture into memory.
func smallDisk(t testing.TB) []byte {
	t.Helper()
	opts, _ := smallBuild(t, t.TempDir())
	d := &rootfstest.MemDisk{}
	if _, err := Build(context.Background(), opts, d); err != nil {
		t.Fatal(err)
	}
	return d.B
}

// partitions returns the erofs and the hash partition of a disk.
func partitions(t testing.TB, disk []byte) (tab *gpt.Table, data, hash []byte) {
	t.Helper()
	tab, err := gpt.Read(bytes.NewReader(disk), int64(len(disk)), 0)
	if err != nil {
		t.Fatal(err)
	}
	d, h := tab.Partitions[0], tab.Partitions[1]
	return tab, disk[d.Offset : d.Offset+d.Size], disk[h.Offset : h.Offset+h.Size]
}

// reseal makes a disk whose erofs was changed consistent again, as an
// attacker would: the erofs superblock checksum, the verity tree (same
// salt and UUID) and the PARTUUIDs (the new root hash's halves), so the
// root hash checks out and Inspect reaches the file system.
func reseal(t testing.TB, disk []byte) {
	t.Helper()
	tab, data, hash := partitions(t, disk)
	erofstest.FixChecksum(data)
	sb, err := verity.ReadSuperblock(bytes.NewReader(hash), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := sb.Params(0)
	vr, err := verity.Format(context.Background(), bytes.NewReader(data), int64(p.DataBlocks)*int64(p.DataBlockSize), sliceAt(hash), p)
	if err != nil {
		t.Fatal(err)
	}
	parts := tab.Partitions
	d, h := vr.PartitionUUIDs()
	parts[0].UUID, parts[1].UUID = d, h
	if err := gpt.Write(sliceAt(disk), int64(len(disk)), tab.DiskGUID, parts); err != nil {
		t.Fatal(err)
	}
}

// damaged are the damaged-and-resealed recipes of the robustness issue:
// each mutates the erofs metadata of the small fixture; the disk is then
// resealed, so only the file system walk can find the damage.
var damaged = []struct {
	name string
	mut  func(t testing.TB, img []byte, l *erofstest.Layout)
	want string
}{
	{"entry points to an ancestor", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/usr/share", "many"), l.Inode("/usr").Nid)
	}, `entry "many": directory inode`},
	{"entry points to its directory", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/usr/share", "many"), l.Inode("/usr/share").Nid)
	}, "reached twice"},
	{"entry points to the root", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/usr/lib/systemd", "system"), l.Inode("/").Nid)
	}, "reached twice"},
	{"dot-dot points to a child", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/usr", ".."), l.Inode("/usr/share").Nid)
	}, `entry "..": points to inode`},
	{"nid out of range", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/etc", "passwd.new"), 1<<40)
	}, "/etc/passwd.new: inode 1099511627776 at offset 0x0: inode number beyond the image"},
	{"nid just past the metadata", func(t testing.TB, img []byte, l *erofstest.Layout) {
		erofstest.SetNid(img, l.Dirent("/etc", "passwd.new"), uint64(len(img))/32)
	}, "inode number beyond the image"},
	{"corrupt dirent block", func(t testing.TB, img []byte, l *erofstest.Layout) {
		d := l.Dirent("/usr/share/many", ".")
		img[d.Offset+8], img[d.Offset+9] = 5, 0
	}, "first name offset 5"},
	{"name offsets out of order", func(t testing.TB, img []byte, l *erofstest.Layout) {
		d := l.Dirent("/usr/share/many", "entry-with-a-rather-long-name-010")
		img[d.Offset+8], img[d.Offset+9] = 0xff, 0x0f
	}, "directory block 0: entry 10: bad name"},
	{"directory size beyond the image", func(t testing.TB, img []byte, l *erofstest.Layout) {
		off := l.Inode("/usr/share/many").Offset
		img[off+8], img[off+9], img[off+10], img[off+11] = 0xff, 0xff, 0xff, 0x7f
	}, "larger than the image"},
}

func damagedDisk(t testing.TB, good []byte, mut func(testing.TB, []byte, *erofstest.Layout)) []byte {
	t.Helper()
	disk := append([]byte(nil), good...)
	_, data, _ := partitions(t, disk)
	l, err := erofstest.Find(data)
	if err != nil {
		t.Fatal(err)
	}
	mut(t, data, l)
	reseal(t, disk)
	return disk
}

// TestInspectDamaged: each recipe is a one-line *erofs.FormatError from
// Inspect with Files, in a child process whose address space is limited to
// what it had at start plus 256 MiB (setrlimit RLIMIT_AS), so a walk that
// loops or grows dies there instead of here. Before pkg/erofs, the first
// recipes never ended and grew to 921 MB in 30 s.
func TestInspectDamaged(t *testing.T) {
	good := smallDisk(t)
	dir := t.TempDir()
	for _, tc := range damaged {
		t.Run(tc.name, func(t *testing.T) {
			disk := damagedDisk(t, good, tc.mut)
			// The root hash checks out: only the walk can find the damage.
			in, err := Inspect(context.Background(), bytes.NewReader(disk), int64(len(disk)), InspectOptions{})
			if err != nil || !in.RootHashOK {
				t.Fatalf("resealed disk: %v %+v", err, in)
			}
			img := filepath.Join(dir, "damaged.img")
			if err := os.WriteFile(img, disk, 0o644); err != nil {
				t.Fatal(err)
			}
			out := inspectChild(t, img)
			if !strings.HasPrefix(out, "ERR rootfs: partition 1: erofs: ") || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
				t.Fatalf("child said %q, want one error line with %q", out, tc.want)
			}
			// The same in this process, now that it is known to end.
			_, err = Inspect(context.Background(), bytes.NewReader(disk), int64(len(disk)), InspectOptions{Files: true})
			var fe *erofs.FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not an *erofs.FormatError", err)
			}
		})
	}
}

const childEnv = "IMAGEBUILDER_INSPECT_CHILD"

// inspectChild runs Inspect with Files on img in a child process under the
// memory limit and returns what it printed.
func inspectChild(t *testing.T, img string) string {
	t.Helper()
	// A hang guard, not a timing assertion: the bug this catches never ends.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInspectChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+img)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("inspect did not finish in 2 minutes:\n%.2000s", out)
	}
	if err != nil {
		t.Fatalf("child failed (%v):\n%.4000s", err, out)
	}
	s := string(out)
	i := strings.Index(s, "ERR ")
	if i < 0 {
		i = strings.Index(s, "OK ")
	}
	if i < 0 {
		t.Fatalf("child printed no result:\n%.2000s", s)
	}
	s = s[i:]
	if j := strings.Index(s, "\n"); j >= 0 {
		s = s[:j+1]
	}
	return s
}

// TestInspectChild is the child of inspectChild; it does nothing unless
// started by it.
func TestInspectChild(t *testing.T) {
	img := os.Getenv(childEnv)
	if img == "" {
		t.Skip("the child process of TestInspectDamaged")
	}
	if err := limitMemory(256 << 20); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	in, err := Inspect(context.Background(), f, fi.Size(), InspectOptions{Files: true})
	if err != nil {
		fmt.Printf("ERR %s\n", strings.ReplaceAll(err.Error(), "\n", `\n`))
		return
	}
	fmt.Printf("OK %d files\n", len(in.Files))
}

// limitMemory caps the address space at its current size plus extra.
func limitMemory(extra uint64) error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	var vm uint64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmSize:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return err
			}
			vm = kb << 10
		}
	}
	if vm == 0 {
		return errors.New("no VmSize in /proc/self/status")
	}
	runtime.GC()
	return syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: vm + extra, Max: vm + extra})
}

// TestInspectResults: a mismatch is data, real errors are typed and come
// without a result.
func TestInspectResults(t *testing.T) {
	good := smallDisk(t)
	ctx := context.Background()
	inspect := func(b []byte, opts InspectOptions) (*Inspection, error) {
		return Inspect(ctx, bytes.NewReader(b), int64(len(b)), opts)
	}
	in, err := inspect(good, InspectOptions{Files: true})
	if err != nil || !in.RootHashOK || in.Mismatch != "" || in.PartUUIDRootHash != in.Verity.RootHash || len(in.Files) < 300 {
		t.Fatalf("good disk: %v %+v", err, in)
	}

	// One data byte: the root hash of partition 1 is not the PARTUUIDs'.
	b := append([]byte(nil), good...)
	b[1<<20+4096+10] ^= 0xff
	in, err = inspect(b, InspectOptions{})
	if err != nil || in.RootHashOK || in.PartUUIDRootHash == in.Verity.RootHash ||
		!strings.Contains(in.Mismatch, "data block 1 is corrupt") || !strings.Contains(in.Mismatch, in.PartUUIDRootHash) {
		t.Errorf("data byte: %v %+v", err, in)
	}

	// SkipHashCheck reads the tables and superblocks only: the same disk
	// gives the PARTUUIDs' root hash and no verdict, reading a few blocks.
	cr := &countingReaderAt{r: bytes.NewReader(b)}
	in, err = Inspect(ctx, cr, int64(len(b)), InspectOptions{SkipHashCheck: true})
	if err != nil || in.RootHashOK || in.Mismatch != "" || in.Verity.RootHash != in.PartUUIDRootHash ||
		in.Cmdline.Systemd == "" || cr.n > 64<<10 {
		t.Errorf("SkipHashCheck: %v %+v, read %d bytes", err, in, cr.n)
	}

	// One byte of the tree in partition 2: the data is right, the hash
	// partition is corrupt.
	tab, _, _ := partitions(t, good)
	b = append([]byte(nil), good...)
	b[tab.Partitions[1].Offset+4096+3] ^= 0xff
	in, err = inspect(b, InspectOptions{})
	var ce *verity.CorruptError
	if in != nil || !errors.As(err, &ce) || !ce.Hash {
		t.Errorf("tree byte: %v %+v", err, in)
	}

	// A GPT problem.
	b = append([]byte(nil), good...)
	b[512+70] ^= 1
	in, err = inspect(b, InspectOptions{})
	var ge *gpt.FormatError
	if in != nil || !errors.As(err, &ge) || !errors.Is(err, gpt.ErrChecksum) {
		t.Errorf("GPT: %v", err)
	}

	var fe *erofs.FormatError
	// A verity superblock that covers less than the file system (tree
	// and PARTUUIDs remade for the shorter data).
	b = append([]byte(nil), good...)
	{
		tab, data, hash := partitions(t, b)
		sb, _ := verity.ReadSuperblock(bytes.NewReader(hash), 0)
		p := sb.Params(0)
		p.DataBlocks--
		clear(hash)
		vr, err := verity.Format(ctx, bytes.NewReader(data), int64(p.DataBlocks)*int64(p.DataBlockSize), sliceAt(hash), p)
		if err != nil {
			t.Fatal(err)
		}
		parts := tab.Partitions
		parts[0].UUID, parts[1].UUID = vr.PartitionUUIDs()
		gpt.Write(sliceAt(b), int64(len(b)), tab.DiskGUID, parts)
	}
	in, err = inspect(b, InspectOptions{})
	if in != nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("short verity: %v", err)
	}

	// A damaged backup GPT.
	b = append([]byte(nil), good...)
	b[len(b)-512+60] ^= 1
	if in, err = inspect(b, InspectOptions{}); in != nil || !errors.As(err, &ge) || !strings.Contains(err.Error(), "backup header CRC") {
		t.Errorf("backup GPT: %v", err)
	}

	// An erofs superblock problem (resealed, so the root hash is right).
	b = append([]byte(nil), good...)
	_, data, _ := partitions(t, b)
	data[erofs.SuperblockOffset+12] = 40
	reseal(t, b)
	in, err = inspect(b, InspectOptions{})
	if in != nil || !errors.As(err, &fe) || fe.Offset != erofs.SuperblockOffset+12 {
		t.Errorf("erofs superblock: %v", err)
	}

	// Cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if in, err := Inspect(cctx, bytes.NewReader(good), int64(len(good)), InspectOptions{Files: true}); in != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// deepTar is a chain of depth directories "d", with a file at the bottom.
func deepTar(t testing.TB, depth int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := strings.Repeat("d/", depth) + "f"
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 4, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("deep"))
	tw.Close()
	return buf.Bytes()
}

// TestDeepImage: a tree 3000 directories deep, built by Build, lists
// correctly (the walk is linear in the entries; scripts/bench/rootfs-inspect.sh
// times 1000, 2000 and 5000 levels).
func TestDeepImage(t *testing.T) {
	const depth = 3000
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "deep.tar"), deepTar(t, depth))
	opts := Options{Sources: srcs(t, "tar:"+p), Agent: fakeAgent(t, dir), Seed: "deep"}
	d := &rootfstest.MemDisk{}
	if _, err := Build(context.Background(), opts, d); err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(context.Background(), bytes.NewReader(d.B), int64(len(d.B)), InspectOptions{Files: true})
	if err != nil || !in.RootHashOK {
		t.Fatal(err)
	}
	var chain []FileInfo
	for _, f := range in.Files {
		if f.Path == "/d" || strings.HasPrefix(f.Path, "/d/") {
			chain = append(chain, f)
		}
	}
	if len(chain) != depth+1 {
		t.Fatalf("%d entries under /d, want %d", len(chain), depth+1)
	}
	for i, f := range chain[:depth] {
		if want := strings.Repeat("/d", i+1); f.Path != want || f.Mode != sIFDIR|0o755 {
			t.Fatalf("entry %d: %s %o", i, f.Path[:min(len(f.Path), 40)], f.Mode)
		}
	}
	if last := chain[depth]; last.Path != strings.Repeat("/d", depth)+"/f" || last.Size != 4 {
		t.Fatalf("bottom: %.40s... size %d", last.Path, last.Size)
	}
}

// countingReaderAt counts the bytes read.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// FuzzInspect damages the erofs of the small fixture structure-aware
// (inode and dirent fields, entries pointed at other inodes, superblock
// fields; internal/erofstest), repairs the superblock checksum, recomputes
// the verity tree and the PARTUUIDs and rewrites the GPT, so every mutant
// passes the root hash check and reaches the file system walk. Inspect
// must return a complete result or an error, read at most a few times the
// disk (work follows the input) and allocate in proportion to it. With
// raw, the bytes of data replace the start of the disk instead, with the
// GPT CRCs repaired.
func FuzzInspect(f *testing.F) {
	good := smallDisk(f)
	_, data, _ := partitions(f, good)
	layout, err := erofstest.Find(data)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{2, 5, 0, 0}, false) // an entry to the root
	f.Add([]byte{1, 7, 8, 3, 4, 9, 0, 200}, false)
	f.Add([]byte{0, 3, 8, 0xff, 0, 3, 11, 0x7f}, false)
	f.Add(good[:34*512], true)
	f.Fuzz(func(t *testing.T, ops []byte, raw bool) {
		disk := append([]byte(nil), good...)
		if raw {
			copy(disk, ops)
			gpttest.FixCRCs(disk, 512)
		} else {
			_, d, _ := partitions(t, disk)
			erofstest.Mutate(d, layout, ops)
			reseal(t, disk)
		}
		cr := &countingReaderAt{r: bytes.NewReader(disk)}
		var in *Inspection
		var err error
		fuzzbound.Check(t, disk, 64, 64<<20, func() {
			cr.n = 0 // Check may run this again
			in, err = Inspect(context.Background(), cr, int64(len(disk)), InspectOptions{Files: true})
		})
		if (in == nil) == (err == nil) {
			t.Fatalf("result %v beside error %v", in != nil, err)
		}
		size := int64(len(disk))
		t.Logf("disk %d bytes, read %d", size, cr.n)
		if cr.n > 16*size+1<<20 {
			t.Fatalf("read %d bytes of a %d-byte disk", cr.n, size)
		}
	})
}

func ExampleInspect() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	// A one-file layer and an agent.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
	tw.Write([]byte("hello\n"))
	tw.Close()
	os.WriteFile(filepath.Join(dir, "base.tar"), layer.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "agent"), []byte("#!/bin/sh\n"), 0o755)
	f, _ := os.Create(filepath.Join(dir, "rootfs.img"))
	defer f.Close()
	src, err := source.Parse("tar:" + filepath.Join(dir, "base.tar"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := Build(context.Background(), Options{Sources: []source.Source{src},
		Agent: filepath.Join(dir, "agent"), Seed: "example"}, f); err != nil {
		fmt.Println(err)
		return
	}
	fi, _ := f.Stat()
	in, err := Inspect(context.Background(), f, fi.Size(), InspectOptions{Files: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("root hash ok:", in.RootHashOK, in.Verity.RootHash == in.PartUUIDRootHash)
	for _, file := range in.Files {
		if file.Path == "/etc/motd" {
			fmt.Printf("%s %o %d bytes\n", file.Path, file.Mode, file.Size)
		}
	}
	// Output:
	// root hash ok: true true
	// /etc/motd 100644 6 bytes
}
