package initrd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// treeInfo describes a tree for comparison: path -> type/mode/content/link
// target, plus which paths share an inode.
func treeInfo(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := ModeString(st.Mode)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:8])
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range inodes {
		out["hardlinks "+strings.Join(names, " ")] = "same inode"
	}
	return out
}

func diffTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: want %q, got %q", k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q", k, v)
		}
	}
}

// TestGNUCpioExtracts checks each compression against the reference
// tools: gzip -dc / zstd -dc, then GNU cpio -idm must give back exactly the
// source tree (types, modes, contents, symlinks, hard links, mtimes).
func TestGNUCpioExtracts(t *testing.T) {
	needTool(t, "cpio")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	src := t.TempDir()
	makeTree(t, src, time.Unix(1234567890, 0))
	a := New()
	mustAdd(t, a, Dir{Path: src})
	want := treeInfo(t, src)
	const epoch = 1700000000
	for _, c := range []struct {
		comp   Compression
		decomp []string
	}{{None, []string{"cat"}}, {Gzip, []string{"gzip", "-dc"}}, {Zstd, []string{"zstd", "-dcq"}}} {
		t.Run(string(c.comp), func(t *testing.T) {
			needTool(t, c.decomp[0])
			img := filepath.Join(t.TempDir(), "initrd.img")
			if err := os.WriteFile(img, buildBytes(t, a, WriteOptions{Compression: c.comp, SourceDateEpoch: epoch}), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			sh := strings.Join(c.decomp, " ") + " < " + img + " | cpio -idm --quiet --no-absolute-filenames"
			cmd := exec.Command("sh", "-c", sh)
			cmd.Dir = dst
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", sh, err, out)
			}
			diffTrees(t, want, treeInfo(t, dst))
			fi, err := os.Lstat(filepath.Join(dst, "usr/lib/big.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.ModTime().Unix() != epoch {
				t.Errorf("mtime %d, want SOURCE_DATE_EPOCH %d", fi.ModTime().Unix(), epoch)
			}
		})
	}
}

// TestListMatchesCpio compares `initrd list` lines with GNU cpio -tvn.
func TestListMatchesCpio(t *testing.T) {
	needTool(t, "cpio")
	src := t.TempDir()
	makeTree(t, src, time.Unix(99, 0))
	a := New()
	mustAdd(t, a, Dir{Path: src})
	AddInitSkeleton(a)
	raw := buildBytes(t, a, WriteOptions{Compression: None})
	cmd := exec.Command("cpio", "-tvn", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	ref, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	gz := buildBytes(t, a, WriteOptions{Compression: Gzip})
	if err := walkAll(gz, func(h *Header, _ Segment) {
		ours = append(ours, FormatEntry(h))
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(ours, "\n")+"\n", string(ref); got != want {
		t.Errorf("list differs from cpio -tvn:\n--- ours\n%s--- cpio\n%s", got, want)
	}
}

// goldenArchive is a fixed in-memory archive covering every entry type.
func goldenArchive(t *testing.T) *Archive {
	a := New()
	for _, e := range []Entry{
		{Path: "init", Mode: TypeReg | 0o755, Data: []byte("#!/bin/sh\nexec /sbin/init\n")},
		{Path: "/etc/hostname", Mode: TypeReg | 0o644, Data: []byte("pod\n")},
		{Path: "bin/busybox", Mode: TypeReg | 0o755, Data: pattern(100000, 3), LinkGroup: "bb"},
		{Path: "bin/sh", Mode: TypeReg | 0o755, Data: pattern(100000, 3), LinkGroup: "bb"},
		{Path: "lib64", Mode: TypeSymlink | 0o777, Linkname: "lib"},
		{Path: "dev/console", Mode: TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1},
		{Path: "dev/vda", Mode: TypeBlock | 0o660, RDevMajor: 254, RDevMinor: 0, UID: 0, GID: 6},
		{Path: "run/initctl", Mode: TypeFifo | 0o600},
		{Path: "tmp", Mode: TypeDir | 0o1777},
		{Path: "home/user", Mode: TypeDir | 0o700, UID: 1000, GID: 1000},
	} {
		e.Size = int64(len(e.Data))
		if err := a.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// Golden sha256 of goldenArchive with SOURCE_DATE_EPOCH=0 (pinned; a change
// means the bytes we write changed).
var goldenSHA256 = map[Compression]string{
	None: "b9d6d842833379bf4297a2aecab12e41e13186d1fca153fa4d2886f95974928c",
	Gzip: "d9fe77e4c6490156ef495994f497a4a5336921ab48efd5f740f16f436e641416",
	Zstd: "7ef98624be86df2b715ffd020aa66003ad5f41f33a2c7b0146caaa52e616ff20",
}

func TestGolden(t *testing.T) {
	for _, c := range []Compression{None, Gzip, Zstd} {
		b := buildBytes(t, goldenArchive(t), WriteOptions{Compression: c})
		sum := sha256.Sum256(b)
		got := hex.EncodeToString(sum[:])
		if got != goldenSHA256[c] {
			t.Errorf("%s: sha256 %s, golden %s", c, got, goldenSHA256[c])
		}
	}
}

// TestGOMAXPROCS builds the same input with 1 and 2 (and 8) processors.
func TestGOMAXPROCS(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, time.Unix(5, 0))
	a := New()
	mustAdd(t, a, Dir{Path: src})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []Compression{Gzip, Zstd} {
		var first []byte
		for _, n := range []int{1, 2, 8} {
			runtime.GOMAXPROCS(n)
			b := buildBytes(t, a, WriteOptions{Compression: c})
			if first == nil {
				first = b
			} else if !bytes.Equal(b, first) {
				t.Errorf("%s: GOMAXPROCS=%d output differs from GOMAXPROCS=1", c, n)
			}
		}
	}
}

func TestSortParentsFirst(t *testing.T) {
	a := New()
	for _, p := range []string{"a-b/x", "a/b/c", "a/b-c", "a.b", "z", "a/b/c/d"} {
		a.Add(Entry{Path: p, Mode: TypeReg | 0o644})
	}
	var got []string
	for _, e := range a.Entries() {
		got = append(got, e.Path)
	}
	want := "a a/b a/b/c a/b/c/d a/b-c a-b a-b/x a.b z"
	if strings.Join(got, " ") != want {
		t.Errorf("order %q, want %q", strings.Join(got, " "), want)
	}
}

func TestEarlyCPIO(t *testing.T) {
	early := New()
	early.Add(Entry{Path: "kernel/x86/microcode/AuthenticAMD.bin", Mode: TypeReg | 0o644, Size: 5, Data: []byte("ucode")})
	eb := bytes.NewBuffer(buildBytes(t, early, WriteOptions{Compression: None}))
	main := goldenArchive(t)
	for _, c := range []Compression{None, Gzip, Zstd} {
		b := buildBytes(t, main, WriteOptions{Compression: c, Early: eb.Bytes()})
		if !bytes.HasPrefix(b, eb.Bytes()) {
			t.Fatalf("%s: early archive is not a byte-identical prefix", c)
		}
		var names []string
		walkAll(b, func(h *Header, seg Segment) {
			names = append(names, string(seg.Compression)+":"+h.Name)
		})
		if names[0] != "none:kernel" || !strings.Contains(strings.Join(names, " "), string(c)+":init") {
			t.Errorf("%s: segments read back as %v", c, names)
		}
	}
	var out bytes.Buffer
	_, err := main.Write(context.Background(), &out, WriteOptions{Compression: Gzip, Early: []byte("not a cpio archive at all")})
	if err == nil || !strings.Contains(err.Error(), "early cpio") {
		t.Errorf("bad early archive: %v", err)
	}
}

// TestWalkSegments reads an initramfs of several segments as the kernel
// accepts them: a zstd segment is no longer required to be the last one,
// and a cpio archive may span adjacent zstd frames (one segment).
func TestWalkSegments(t *testing.T) {
	raw := bytes.NewBuffer(buildBytes(t, goldenArchive(t), WriteOptions{Compression: None}))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	half := raw.Len() / 2
	var img bytes.Buffer
	img.Write(raw.Bytes())
	img.Write(enc.EncodeAll(raw.Bytes()[:half], nil)) // one cpio in two frames
	img.Write(enc.EncodeAll(raw.Bytes()[half:], nil))
	img.Write([]byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}) // skippable frame
	img.Write(make([]byte, 8))                                           // padding
	img.Write(buildBytes(t, goldenArchive(t), WriteOptions{Compression: Zstd}))
	img.Write(buildBytes(t, goldenArchive(t), WriteOptions{Compression: Gzip}))
	img.Write(raw.Bytes())
	var comps []string
	if err := walkAll(img.Bytes(), func(h *Header, seg Segment) {
		if h.Name == "init" {
			comps = append(comps, string(seg.Compression))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(comps, " "); got != "none zstd zstd gzip none" {
		t.Errorf("segments read: %q, want none zstd zstd gzip none", got)
	}
	// A truncated zstd frame is an error, not a short listing.
	z := buildBytes(t, goldenArchive(t), WriteOptions{Compression: Zstd})
	if err := walkAll(z[:len(z)-10], func(*Header, Segment) {}); err == nil {
		t.Error("truncated zstd segment: no error")
	}
}
