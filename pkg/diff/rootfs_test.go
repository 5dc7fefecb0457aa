package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
)

// baseTree is the source of disk A: every kind of entry.
func baseTree() []tent {
	return []tent{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/dash", Mode: 0o755, Body: "dash binary"},
		{Name: "bin/bash", Mode: 0o755, Body: "bash binary"},
		{Name: "bin/sh", Type: tar.TypeSymlink, Link: "dash"},
		{Name: "bin/ping", Mode: 0o755, Body: "ping", Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"}},
		{Name: "bin/ping-link", Type: tar.TypeLink, Link: "bin/ping"},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		{Name: "etc/hostname", Body: "alpha-host\n"},
		{Name: "etc/motd", Body: "welcome\n"},
		{Name: "etc/big", Body: strings.Repeat("0123456789abcdef", 1000) + "\n"},
		{Name: "home/user/notes", Mode: 0o600, Body: "notes"},
		{Name: "opt/", Type: tar.TypeDir},
	}
}

// changed returns the tree with each entry passed through f (nil drops
// it), then extra appended.
func changed(f func(e *tent) bool, extra ...tent) []tent {
	var out []tent
	for _, e := range baseTree() {
		if f(&e) {
			out = append(out, e)
		}
	}
	return append(out, extra...)
}

// Two root disks from sources that differ in exactly one file's content,
// one file's mode, one owner, one symlink target and one added file: the
// diff lists exactly those five, and the verity and GPT parameters that
// change with the content only as derived.
func TestRootDisksFiveDifferences(t *testing.T) {
	a := buildDisk(t, baseTree())
	b := buildDisk(t, changed(func(e *tent) bool {
		switch e.Name {
		case "etc/hostname":
			e.Body = "omega-host\n"
		case "etc/motd":
			e.Mode = 0o600
		case "home/user/notes":
			e.UID, e.GID = 1000, 1000
		case "bin/sh":
			e.Link = "bash"
		}
		return true
	}, tent{Name: "opt/new", Body: "new file\n"}))
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindRootDisk || res.Identical {
		t.Fatalf("kind %s identical %v", res.Kind, res.Identical)
	}
	want := []string{
		`/bin/sh link: "dash" -> "bash"`,
		`/etc/hostname content: 11 bytes -> 11 bytes (first difference at byte 0, line 1: "alpha-host" -> "omega-host")`,
		`/etc/motd mode: 0644 -> 0600 (-rw-r--r-- -> -rw-------)`,
		`/home/user/notes owner: 0:0 -> 1000:1000`,
		`/opt/new: added: regular file 0644 0:0, 9 bytes`,
	}
	got := primaryLines(res)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("differences:\n%s\nwant exactly:\n%s\nall:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), lines(res))
	}
	for _, d := range res.Differences {
		if d.Section == SectionFiles && d.Derived {
			t.Errorf("file difference marked derived: %s", d.Line())
		}
	}
	// The root hash, the PARTUUIDs that carry it and the sizes follow.
	all := lines(res)
	for _, w := range []string{"~ verity root_hash: ", "~ gpt partitions[name=root-x86-64].uuid: ", "~ erofs inodes: 35 -> 36"} {
		if !strings.Contains(all, w) {
			t.Errorf("no %q in\n%s", w, all)
		}
	}
	txt := text(t, res)
	if !strings.HasPrefix(txt, "a and b: root disks differ: 5 differences, ") || !strings.Contains(txt, "\n  follows from the above:\n    ") {
		t.Errorf("text:\n%s", txt)
	}
	// Each file read about once: the disk's bytes plus metadata.
	if res.Read.ReadA > res.Read.SizeA || res.Read.ReadB > res.Read.SizeB {
		t.Errorf("read %+v", res.Read)
	}
	t.Logf("\n%s", txt)
}

func TestRootDisksIdentical(t *testing.T) {
	a := buildDisk(t, baseTree())
	b := buildDisk(t, baseTree())
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Identical || len(res.Differences) != 0 {
		t.Fatalf("identical disks: %s", lines(res))
	}
	if txt := text(t, res); txt != "a and b are identical (root disks)\n" {
		t.Errorf("text %q", txt)
	}
}

// Every attribute a file can differ in, each alone.
func TestRootDisksAttributes(t *testing.T) {
	a := buildDisk(t, baseTree())
	for _, tc := range []struct {
		name string
		f    func(e *tent) bool
		want []string
	}{
		{"xattr", func(e *tent) bool {
			if e.Name == "bin/ping" {
				e.Xattrs = map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x30\x00\x00"}
			}
			return true
		}, []string{`/bin/ping xattr security.capability: 0x0100000200200000 -> 0x0100000200300000`}},
		{"xattr removed", func(e *tent) bool {
			if e.Name == "bin/ping" {
				e.Xattrs = nil
			}
			return true
		}, []string{`/bin/ping xattr security.capability: 0x0100000200200000 -> (none)`}},
		{"type", func(e *tent) bool {
			if e.Name == "bin/sh" {
				*e = tent{Name: "bin/sh", Mode: 0o755, Body: "sh"}
			}
			return true
		}, []string{`/bin/sh type: symlink 0777 0:0 -> "dash" -> regular file 0755 0:0, 2 bytes`}},
		{"device", func(e *tent) bool {
			if e.Name == "dev/null" {
				e.Minor = 5
			}
			return true
		}, []string{`/dev/null device: 1:3 -> 1:5`}},
		{"hard link", func(e *tent) bool {
			if e.Name == "bin/ping-link" {
				*e = tent{Name: "bin/ping-link", Mode: 0o755, Body: "ping", Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"}}
			}
			return true
		}, []string{`/bin/ping-link hard link: same inode as "/bin/ping" -> own inode`}},
		{"size and content", func(e *tent) bool {
			if e.Name == "etc/big" {
				e.Body = strings.Repeat("0123456789abcdef", 1000) + "more\n"
			}
			return true
		}, []string{`/etc/big content: 16001 bytes -> 16005 bytes (first difference at byte 16000, line 1: "...` /* checked below */}},
		{"removed", func(e *tent) bool { return e.Name != "etc/motd" }, []string{`/etc/motd: removed: regular file 0644 0:0, 8 bytes`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildDisk(t, changed(tc.f))
			res, err := compareBytes(t, a, b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := primaryLines(res)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				w := tc.want[i]
				if strings.HasSuffix(w, "...") {
					ok = strings.HasPrefix(got[i], strings.TrimSuffix(w, `"...`))
				} else {
					ok = got[i] == w
				}
			}
			if !ok {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// A seed changes what derives from it: those are differences of their own.
func TestRootDisksSeed(t *testing.T) {
	a := buildDisk(t, baseTree())
	b := append([]byte(nil), a...)
	// The same disk, its disk GUID changed (CRCs repaired).
	tab, err := gpt.Read(bytes.NewReader(b), int64(len(b)), 0)
	if err != nil {
		t.Fatal(err)
	}
	guid := tab.DiskGUID
	guid[0] ^= 0xff
	if err := gpt.Write(writerAt(b), int64(len(b)), guid, tab.Partitions); err != nil {
		t.Fatal(err)
	}
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := primaryLines(res); len(got) != 1 || !strings.HasPrefix(got[0], "gpt disk_guid: ") {
		t.Errorf("got\n%s", lines(res))
	}
}

type writerAt []byte

func (w writerAt) WriteAt(p []byte, off int64) (int, error) { return copy(w[off:], p), nil }

// A byte outside everything a root disk comparison reads still makes the
// disks differ, and says where.
func TestRootDisksUnexplainedByte(t *testing.T) {
	a := buildDisk(t, baseTree())
	tab, _ := gpt.Read(bytes.NewReader(a), int64(len(a)), 0)
	b := append([]byte(nil), a...)
	gap := tab.Partitions[0].Offset - 4096 // between the GPT entries and partition 1
	b[gap] = 1
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := primaryLines(res); len(got) != 1 || !strings.HasPrefix(got[0], "bytes byte ") || res.Identical {
		t.Errorf("got\n%s", lines(res))
	}
}

// Corrupt and truncated disks: an *InputError naming the side, wrapping
// the reader's error, in one line.
func TestRootDisksHostile(t *testing.T) {
	a := buildDisk(t, baseTree())
	tab, _ := gpt.Read(bytes.NewReader(a), int64(len(a)), 0)
	data := tab.Partitions[0]
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		want any
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, new(*gpt.FormatError)},
		{"gpt crc", func(b []byte) []byte { b[512+40] ^= 1; return b }, new(*gpt.FormatError)},
		{"erofs magic", func(b []byte) []byte { b[data.Offset+1024] ^= 1; return b }, new(*erofs.FormatError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(append([]byte(nil), a...))
			res, err := compareBytes(t, a, b, Options{})
			var ie *InputError
			if res != nil || !errors.As(err, &ie) || ie.Name != "b" {
				t.Fatalf("got %v, %v", res, err)
			}
			switch w := tc.want.(type) {
			case **gpt.FormatError:
				if !errors.As(err, w) {
					t.Errorf("%v is not a *gpt.FormatError", err)
				}
			case **erofs.FormatError:
				if !errors.As(err, w) {
					t.Errorf("%v is not an *erofs.FormatError", err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %q", err)
			}
			t.Log(err)
		})
	}
	// Cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := buildDisk(t, changed(func(e *tent) bool { return true }, tent{Name: "x", Body: "x"}))
	if _, err := Compare(ctx, Artifact{"a", bytes.NewReader(a), int64(len(a))}, Artifact{"b", bytes.NewReader(b), int64(len(b))}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// Another SOURCE_DATE_EPOCH: the build time is the difference, not the
// mtime of every file, which follows it.
func TestRootDisksEpoch(t *testing.T) {
	a := buildDisk(t, baseTree())
	b := buildDiskAt(t, baseTree(), 1700000000)
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "erofs build_time: 0 (1970-01-01T00:00:00Z) -> 1700000000 (2023-11-14T22:13:20Z)"
	if got := primaryLines(res); len(got) != 1 || got[0] != want {
		t.Errorf("got\n%s\nwant\n%s", lines(res), want)
	}
}

// Two bare erofs images (partition 1 of two disks).
func TestErofsImages(t *testing.T) {
	part := func(disk []byte) []byte {
		tab, err := gpt.Read(bytes.NewReader(disk), int64(len(disk)), 0)
		if err != nil {
			t.Fatal(err)
		}
		p := tab.Partitions[0]
		return disk[p.Offset : p.Offset+p.Size]
	}
	a := part(buildDisk(t, baseTree()))
	b := part(buildDisk(t, changed(func(e *tent) bool { return e.Name != "etc/motd" })))
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(res)
	if res.Kind != KindErofs || len(primaryLines(res)) != 1 || !strings.Contains(all, "/etc/motd: removed: ") || !strings.Contains(all, "~ erofs inodes: ") {
		t.Errorf("kind %s:\n%s", res.Kind, all)
	}
}
