package diff

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

func baseInitrd() []initrd.Entry {
	return []initrd.Entry{
		{Path: "bin/busybox", Mode: initrd.TypeReg | 0o755, Data: []byte("busybox binary")},
		{Path: "bin/sh", Mode: initrd.TypeSymlink | 0o777, Linkname: "busybox"},
		{Path: "dev/console", Mode: initrd.TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1},
		{Path: "etc/hostname", Mode: initrd.TypeReg | 0o644, Data: []byte("pod\n")},
		{Path: "init", Mode: initrd.TypeReg | 0o755, Data: []byte("#!/bin/sh\nexec /bin/sh\n")},
		{Path: initrd.LoadOrderPath, Mode: initrd.TypeReg | 0o644, Data: []byte("virtio.ko\nvirtio_ring.ko\nvirtio_blk.ko\ndm-verity.ko\n")},
	}
}

func editInitrd(f func(e *initrd.Entry) bool, extra ...initrd.Entry) []initrd.Entry {
	var out []initrd.Entry
	for _, e := range baseInitrd() {
		if f(&e) {
			out = append(out, e)
		}
	}
	return append(out, extra...)
}

func TestInitrds(t *testing.T) {
	gz := initrd.WriteOptions{Compression: initrd.Gzip}
	a := mkInitrd(t, baseInitrd(), gz)
	for _, tc := range []struct {
		name string
		b    []byte
		want []string
	}{
		{"identical", mkInitrd(t, baseInitrd(), gz), nil},
		{"entries", mkInitrd(t, editInitrd(func(e *initrd.Entry) bool {
			switch e.Path {
			case "etc/hostname":
				e.Data = []byte("pod-b\n")
			case "init":
				e.Mode = initrd.TypeReg | 0o700
			case "bin/sh":
				e.Linkname = "/bin/busybox"
			case "dev/console":
				e.RDevMinor = 2
			case "bin/busybox":
				e.UID, e.KeepOwner = 1000, true
			}
			return true
		}, initrd.Entry{Path: "etc/added", Mode: initrd.TypeReg | 0o644, Data: []byte("x")}), gz), []string{
			"initrd bin/busybox owner: 0:0 -> 1000:0",
			`initrd bin/sh link: "busybox" -> "/bin/busybox"`,
			"initrd dev/console device: 5:1 -> 5:2",
			"initrd etc/added: added: regular file 0644 0:0, 1 byte",
			`initrd etc/hostname content: 4 bytes -> 6 bytes (first difference at byte 3, line 1: "pod" -> "pod-b")`,
			"initrd init mode: 0755 -> 0700 (-rwxr-xr-x -> -rwx------)",
		}},
		{"modules", mkInitrd(t, editInitrd(func(e *initrd.Entry) bool {
			if e.Path == initrd.LoadOrderPath {
				e.Data = []byte("virtio_ring.ko\nvirtio.ko\nvirtio_blk.ko\noverlay.ko\n")
			}
			return true
		}), gz), []string{
			"modules dm-verity.ko: removed: position 4",
			"modules overlay.ko: added: position 4",
			"modules load order common module 1: virtio.ko -> virtio_ring.ko (the modules both load, in another order)",
		}},
		{"removed", mkInitrd(t, editInitrd(func(e *initrd.Entry) bool { return e.Path != "etc/hostname" }), gz),
			[]string{"initrd etc/hostname: removed: regular file 0644 0:0, 4 bytes"}},
		{"compression", mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.Zstd}),
			[]string{"initrd segment 1 compression: gzip -> zstd"}},
		{"level", mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.Gzip, Level: 1}),
			[]string{"initrd encoded bytes sha256: "}},
		{"epoch", mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.Gzip, SourceDateEpoch: 1700000000}),
			[]string{"initrd every entry mtime: 0 (1970-01-01T00:00:00Z) -> 1700000000 (2023-11-14T22:13:20Z) ("}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compareBytes(t, a, tc.b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != KindInitrd {
				t.Fatalf("kind %s", res.Kind)
			}
			got := primaryLines(res)
			if (len(tc.want) == 0) != res.Identical || len(got) != len(tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", lines(res), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("got\n%s\nwant\n%s", lines(res), strings.Join(tc.want, "\n"))
					break
				}
			}
		})
	}
}

// Entries in another order on one side are matched by name, their
// contents by digest.
func TestInitrdsUnsorted(t *testing.T) {
	// Two uncompressed archives back to back: the second holds an entry
	// the first side has in its first archive.
	a := append(mkInitrd(t, baseInitrd()[:3], initrd.WriteOptions{Compression: initrd.None}),
		mkInitrd(t, baseInitrd()[3:], initrd.WriteOptions{Compression: initrd.None})...)
	ents := baseInitrd()
	ents[0].Data = []byte("busybox binary 2") // bin/busybox, after the entries of the first archive on B's side
	b := append(mkInitrd(t, ents[3:], initrd.WriteOptions{Compression: initrd.None}),
		mkInitrd(t, ents[:3], initrd.WriteOptions{Compression: initrd.None})...)
	res, err := compareBytes(t, a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := primaryLines(res)
	if len(got) != 1 || !strings.HasPrefix(got[0], "initrd bin/busybox content: 14 bytes, sha256 ") {
		t.Errorf("got\n%s", lines(res))
	}
}

func TestInitrdsHostile(t *testing.T) {
	a := mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.Gzip})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"truncated", a[:len(a)/2]},
		{"garbage after the magic", append([]byte{0x1f, 0x8b}, make([]byte, 100)...)},
		{"newc header", []byte("070701zzzzzzzz" + strings.Repeat("0", 100))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compareBytes(t, a, tc.b, Options{})
			var ie *InputError
			var fe *initrd.FormatError
			if res != nil || !errors.As(err, &ie) || ie.Name != "b" || !errors.As(err, &fe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, %v", res, err)
			}
			t.Log(err)
		})
	}
}

// A hostile name in an error stays on one line, escaped.
func TestInitrdsHostileName(t *testing.T) {
	a := mkInitrd(t, baseInitrd(), initrd.WriteOptions{Compression: initrd.None})
	b := mkInitrd(t, []initrd.Entry{{Path: "evil\n\x1b[2Jname", Mode: initrd.TypeReg | 0o644, Data: []byte("0123456789")}}, initrd.WriteOptions{Compression: initrd.None})
	b = b[:len(b)-130] // cut inside the content
	_, err := compareBytes(t, a, b, Options{})
	if err == nil || strings.ContainsAny(err.Error(), "\n\x1b") || !strings.Contains(err.Error(), `evil\n\x1b[2Jname`) {
		t.Fatalf("error %q", err)
	}
}
