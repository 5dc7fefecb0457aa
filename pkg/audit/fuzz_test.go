package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/erofstest"
	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
	"github.com/imagebuilder/imagebuilder/internal/gpttest"
	"github.com/imagebuilder/imagebuilder/internal/igvmtest"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// fuzzSet is one build of the reproducibility config, in memory, with
// where the structures of its root disk and IGVM file are.
type fuzzSet struct {
	root     string // removed by TestMain (fuzzing workers killed early leave it: sweepFuzzDirs)
	dir      string // the build, on disk (unchanged files are linked from it)
	firmware string
	names    []string
	files    map[string][]byte
	// regions are byte ranges worth mutating, per file.
	regions map[string][][2]int64
	// covered are the ranges of rootfs.img under the verity tree: any
	// change there must fail link rootfs.
	covered [][2]int64
}

var (
	fuzzOnce sync.Once
	fuzzBase *fuzzSet
)

func loadFuzzSet(t testing.TB) *fuzzSet {
	fuzzOnce.Do(func() {
		sweepFuzzDirs()
		root, err := os.MkdirTemp("", fmt.Sprintf("audit-fuzz-%d-", os.Getpid()))
		if err != nil {
			t.Fatal(err)
		}
		cfg := reproTree(t, root)
		out := filepath.Join(root, "out")
		buildRepro(t, cfg, out)
		s := &fuzzSet{dir: out, firmware: firmwarePath(cfg), files: map[string][]byte{}, regions: map[string][][2]int64{}}
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			s.files[e.Name()] = b
			s.names = append(s.names, e.Name())
			s.regions[e.Name()] = [][2]int64{{0, int64(len(b))}}
		}
		sort.Strings(s.names)
		// The root disk: GPT headers and entries, the erofs superblock
		// and inodes, the verity superblock and tree, data blocks.
		img := s.files[podvm.FileRootfs]
		f, _ := os.Open(filepath.Join(out, podvm.FileRootfs))
		d := &diskCheck{}
		if err := d.readStructure(f, int64(len(img))); err != nil {
			t.Fatal(err)
		}
		f.Close()
		p1, p2 := d.data.Offset, d.hash.Offset
		covered := int64(d.params.DataBlocks) * int64(d.params.DataBlockSize)
		s.covered = [][2]int64{{p1, p1 + covered}, {p2, p2 + d.plan.HashDeviceSize()}}
		r := [][2]int64{{512, 512 + 92}, {1024, 1024 + 256}, {int64(len(img)) - 512, int64(len(img))},
			{p1 + 1024, p1 + 1024 + 128}, {p2, p2 + 512}, {p2 + 4096, p2 + d.plan.HashDeviceSize()}, {p1, p1 + covered}}
		if l, err := erofstest.Find(img[p1 : p1+covered]); err == nil {
			for _, in := range l.Inodes {
				r = append(r, [2]int64{p1 + in.Offset, p1 + in.Offset + 64})
			}
		}
		s.regions[podvm.FileRootfs] = r
		// The IGVM file: the fixed header, the variable headers, the data.
		ig := s.files[podvm.FileIGVM]
		end := int64(binary.LittleEndian.Uint32(ig[8:]) + binary.LittleEndian.Uint32(ig[12:]))
		s.regions[podvm.FileIGVM] = [][2]int64{{0, 24}, {24, end}, {end, int64(len(ig))}}
		s.root = root
		fuzzBase = s
	})
	if fuzzBase == nil {
		t.Fatal("no build to fuzz")
	}
	return fuzzBase
}

// FuzzVerify mutates one artifact of a real build (bytes written over a
// chosen structure, or the file cut short), repairing the GPT and IGVM
// checksums so that mutants reach the code behind them, and with resum
// records the mutant's sha256 in manifest.json, so that the links after
// outputs must find the change. Verify must report (never fail or panic),
// on one line per link, within bounded memory; a changed byte must fail a
// link (outputs, or with resum rootfs for the blocks under the verity
// tree and payload for the initrd and command line).
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint32(20), []byte{1}, false)
	f.Add(uint8(0), uint8(3), uint32(0), []byte{0xff, 0xff}, true)
	f.Add(uint8(0), uint8(4), uint32(100), []byte{7}, true)
	f.Add(uint8(0), uint8(5), uint32(5), []byte{7}, true)
	f.Add(uint8(0), uint8(6), uint32(16384), []byte("X"), true)
	f.Add(uint8(0), uint8(8), uint32(2), []byte{0x80}, true)
	f.Add(uint8(0), uint8(2), uint32(7), []byte{}, false)
	f.Add(uint8(1), uint8(1), uint32(40), []byte{9, 9, 9, 9}, true)
	f.Add(uint8(1), uint8(2), uint32(5000), []byte{1}, true)
	f.Add(uint8(1), uint8(0), uint32(3), []byte{}, true)
	f.Add(uint8(2), uint8(0), uint32(10), []byte("\"x"), true)
	f.Add(uint8(3), uint8(0), uint32(100), []byte("A"), true)
	f.Add(uint8(4), uint8(0), uint32(12), []byte("Z"), true)
	f.Add(uint8(6), uint8(0), uint32(2), []byte{0}, true)
	f.Add(uint8(9), uint8(0), uint32(300), []byte("0"), true)
	f.Fuzz(func(t *testing.T, file, region uint8, off uint32, data []byte, resum bool) {
		s := loadFuzzSet(t)
		// The IGVM file and the root disk get most of the mutants.
		order := append([]string{podvm.FileRootfs, podvm.FileIGVM}, s.names...)
		name := order[int(file)%len(order)]
		base := s.files[name]
		b := bytes.Clone(base)
		rs := s.regions[name]
		r := rs[int(region)%len(rs)]
		at := r[0]
		if n := r[1] - r[0]; n > 0 {
			at += int64(off) % n
		}
		if len(data) == 0 {
			b = b[:at]
		} else {
			copy(b[min(at, int64(len(b))):], data)
		}
		switch name {
		case podvm.FileRootfs:
			gpttest.FixCRCs(b, 512)
		case podvm.FileIGVM:
			igvmtest.FixChecksum(b)
		}
		changed := !bytes.Equal(b, base)
		dir := filepath.Join(t.TempDir(), "out")
		os.Mkdir(dir, 0o755)
		for _, n := range s.names {
			if n == name || (resum && n == podvm.FileManifest) {
				continue
			}
			if err := os.Link(filepath.Join(s.dir, n), filepath.Join(dir, n)); err != nil {
				os.WriteFile(filepath.Join(dir, n), s.files[n], 0o644)
			}
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		if resum && name != podvm.FileManifest {
			os.WriteFile(filepath.Join(dir, podvm.FileManifest), s.files[podvm.FileManifest], 0o644)
			recordSum(t, dir, name)
		}
		var rep *Report
		var err error
		fuzzbound.Check(t, data, 0, 96<<20, func() {
			rep, err = Verify(context.Background(), Artifacts{Dir: dir}, Options{Firmware: []string{s.firmware}})
		})
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		for _, l := range rep.Links {
			if strings.ContainsAny(l.Detail, "\n\r") {
				t.Fatalf("link %s: %q", l.Name, l.Detail)
			}
		}
		if !changed {
			return
		}
		failed := func(link string) bool { return linkOf(rep, link).Status == Failed }
		switch {
		case name == podvm.FileManifest:
			// Not every field of the manifest is checked (labels, the
			// tool, input paths).
		case !resum:
			if rep.OK {
				t.Fatalf("%s changed at %d, every link holds", name, at)
			}
		case name == podvm.FileRootfs && len(b) == len(base):
			i := int64(firstDiff(b, base))
			for _, c := range s.covered {
				if i >= c[0] && i < c[1] && !failed("rootfs") {
					t.Fatalf("rootfs.img changed at %d (under the verity tree), link rootfs: %s", i, linkOf(rep, "rootfs").Detail)
				}
			}
		case name == podvm.FileInitrd, name == podvm.FileCmdline:
			if !failed("payload") {
				t.Fatalf("%s changed, link payload: %s", name, linkOf(rep, "payload").Detail)
			}
		case name == payload.ContainerdDropInFile:
			// The drop-in is the plan's containerd entry, byte for byte.
			if !failed("handler") {
				t.Fatalf("%s changed, link handler: %s", name, linkOf(rep, "handler").Detail)
			}
		}
	})
}

// sweepFuzzDirs removes the build directories of fuzzing processes that
// no longer run ("audit-fuzz-PID-...").
func sweepFuzzDirs() {
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "audit-fuzz-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

func linkOf(rep *Report, name string) Link {
	for _, l := range rep.Links {
		if l.Name == name {
			return l
		}
	}
	return Link{}
}

// FuzzCommandLine: any command line against a fixed root: no panic, a
// mismatch on one line.
func FuzzCommandLine(f *testing.F) {
	want := &verityWant{from: "superblock", hashFrom: "PARTUUIDs", rootHash: bytes.Repeat([]byte{0xab}, 32), salt: []byte{1, 2},
		alg: "sha256", hashType: 1, dataBlocks: 18, dbs: 4096, hbs: 4096, hashStart: 1, dataUUID: "a", hashUUID: "b"}
	f.Add("console=ttyS0 ibroot.hash=" + strings.Repeat("ab", 32) + " ibroot.salt=0102 ibroot.blocks=18 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1")
	f.Add(`dm-mod.create="root,,,ro,0 144 verity 1 PARTUUID=a PARTUUID=b 4096 4096 18 1 sha256 ` + strings.Repeat("ab", 32) + ` 0102" root=/dev/dm-0`)
	f.Add("roothash=" + strings.Repeat("ab", 32) + " systemd.verity_root_options=hash=sha1,salt=00")
	f.Add(`ibroot.hash=1 ibroot.hash=2 "unterminated`)
	f.Fuzz(func(t *testing.T, line string) {
		forms, m := checkRootParams(line, want)
		if m == nil && len(forms) == 0 {
			for _, w := range splitCmdline(line) {
				k, _, _ := strings.Cut(w, "=")
				if strings.HasPrefix(k, "ibroot.") || k == "roothash" || k == "dm-mod.create" {
					t.Fatalf("%q names a root (%s), no form found", line, w)
				}
			}
		}
		if m != nil && m.What == "" {
			t.Fatalf("%q: a mismatch of nothing: %+v", line, m)
		}
	})
}
