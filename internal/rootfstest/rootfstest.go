// Package rootfstest holds what the tests of pkg/rootfs and the e2e boots
// share: the fixed small fixture (two tar layers that exercise every
// layering rule and inode kind) and a reading of a built disk's erofs
// through github.com/erofs/go-erofs, a reader independent of ours, in one
// text form per file that the tests compare.
//
// The form of a file, keyed by its absolute path, is
//
//	MODE UID:GID[ -> TARGET| size=N nlink=N sha=SHA256| dev=MAJOR:MINOR][ xattrs=[...]]
//
// with MODE the st_mode in six octal digits. Directory sizes and link
// counts are left out (a detail of the encoding).
package rootfstest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"testing"

	goerofs "github.com/erofs/go-erofs"
	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
)

// SmallLayers returns the fixed small fixture: two uncompressed tar layers,
// bottom first, that use whiteouts, an opaque directory, hard links (also
// to a lower layer's file), symlinks (one of 3000 bytes), device nodes, a
// FIFO, xattrs, large ids, setuid bits, files across block boundaries and a
// directory over several blocks. pkg/rootfs pins the digest of the disk it
// builds from them (testdata/rootfs/small.sha256), so their bytes must not
// change.
func SmallLayers(t testing.TB) [][]byte {
	t.Helper()
	many := []TarEntry{{Name: "usr/share/many", Type: tar.TypeDir}}
	for i := range 300 {
		many = append(many, TarEntry{Name: fmt.Sprintf("usr/share/many/entry-with-a-rather-long-name-%03d", i), Body: fmt.Sprint(i)})
	}
	base := append([]TarEntry{
		{Name: "./", Type: tar.TypeDir},
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/sh", Mode: 0o755, Body: "original shell"},
		{Name: "bin/sh-link", Type: tar.TypeLink, Link: "bin/sh"},
		{Name: "bin/ping", Mode: 0o755, Body: "ping", Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00"}},
		{Name: "bin/su", Mode: 0o4755, Body: "su"},
		{Name: "dev/", Type: tar.TypeDir},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		{Name: "dev/sda", Type: tar.TypeBlock, Mode: 0o660, Major: 8, Minor: 0, GID: 6},
		{Name: "dev/big", Type: tar.TypeChar, Mode: 0o600, Major: 511, Minor: 70000},
		{Name: "run/initctl", Type: tar.TypeFifo, Mode: 0o600},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\n"},
		{Name: "etc/old/", Type: tar.TypeDir},
		{Name: "etc/old/a", Body: "a"},
		{Name: "etc/old/sub/b", Body: "b"},
		{Name: "home/user/notes", UID: 1000, GID: 70000, Mode: 0o600, Body: "large gid"},
		{Name: "usr/lib/block", Body: strings.Repeat("x", 4096)},
		{Name: "usr/lib/tail", Body: strings.Repeat("y", 10000)},
		{Name: "usr/lib/bigtail", Body: strings.Repeat("z", 8192+3000)},
		{Name: "usr/lib/empty"},
		{Name: "lib", Type: tar.TypeSymlink, Link: "usr/lib"},
		{Name: "usr/lib/longlink", Type: tar.TypeSymlink, Link: strings.Repeat("d/", 1500) + "end"},
		{Name: "usr/lib/replaced-by-file/", Type: tar.TypeDir},
		{Name: "usr/lib/replaced-by-file/inner", Body: "gone"},
	}, many...)
	top := []TarEntry{
		{Name: "bin/ping-link", Type: tar.TypeLink, Link: "bin/ping"}, // to a lower layer's file
		{Name: "bin/sh-before", Type: tar.TypeLink, Link: "bin/sh"},   // keeps the old shell...
		{Name: "etc/.wh.passwd"},
		{Name: "etc/passwd.new", Body: "new"},
		{Name: "etc/old/.wh..wh..opq"},
		{Name: "etc/old/c", Body: "c"},
		{Name: "bin/sh", Mode: 0o755, Body: "new shell"}, // ...which this replaces
		{Name: "usr/lib/replaced-by-file", Body: "now a file"},
		{Name: "usr/share/many/.wh.entry-with-a-rather-long-name-007"},
		{Name: "etc/hosts", Body: "127.0.0.1 localhost\n"},
		{Name: "etc/hosts-link", Type: tar.TypeLink, Link: "etc/hosts"},
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o700},
	}
	return [][]byte{Tar(t, base), Tar(t, top)}
}

// TarEntry is one entry of a test tar.
type TarEntry struct {
	Name         string
	Type         byte // tar.TypeReg when 0
	Mode         int64
	UID, GID     int
	Body         string // a regular file's content
	Link         string // a symlink's target, a hard link's name
	Major, Minor int64
	Xattrs       map[string]string
	// Size, when not zero, is the header's size in place of len(Body);
	// when it differs, the tar ends after Body (cut short on purpose).
	Size int64
}

// Tar writes entries as a PAX tar; a zero mode is 0644 (0755 for a
// directory).
func Tar(t testing.TB, ents []TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.Name, Typeflag: typ, Mode: mode, Uid: e.UID, Gid: e.GID,
			Linkname: e.Link, Devmajor: e.Major, Devminor: e.Minor, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if e.Size != 0 {
			h.Size = e.Size
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if e.Size != 0 && e.Size != int64(len(e.Body)) {
				tw.Write([]byte(e.Body))
				return buf.Bytes() // truncated on purpose
			}
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// MemDisk is an in-memory disk (an io.ReaderAt, io.WriterAt and
// Truncate, as rootfs.Build writes into).
type MemDisk struct{ B []byte }

func (m *MemDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.B)) {
		m.B = append(m.B, make([]byte, end-int64(len(m.B)))...)
	}
	return copy(m.B[off:], p), nil
}

func (m *MemDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.B)) {
		return 0, io.EOF
	}
	n := copy(p, m.B[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *MemDisk) Truncate(n int64) error {
	if n <= int64(len(m.B)) {
		m.B = m.B[:n]
		return nil
	}
	m.B = append(m.B, make([]byte, n-int64(len(m.B)))...)
	return nil
}

// ReadBack lists the erofs of partition 1 of the disk image img through
// go-erofs, path -> form (see the package comment).
func ReadBack(t testing.TB, img string) map[string]string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(f, fi.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) == 0 {
		t.Fatalf("%s: no partitions", img)
	}
	p := tab.Partitions[0]
	fsys, err := goerofs.Open(io.NewSectionReader(f, p.Offset, p.Size))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*goerofs.Stat)
		mode := unixMode(st.Mode)
		desc := fmt.Sprintf("%06o %d:%d", mode, st.UID, st.GID)
		switch mode & erofs.S_IFMT {
		case erofs.S_IFLNK:
			l, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		case erofs.S_IFREG:
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			if int64(len(b)) != info.Size() {
				return fmt.Errorf("%s: read %d bytes, size %d", p, len(b), info.Size())
			}
			desc += fmt.Sprintf(" size=%d nlink=%d sha=%x", len(b), st.Nlink, sha256.Sum256(b))
		case erofs.S_IFCHR, erofs.S_IFBLK:
			// The kernel's new_decode_dev.
			ma, mi := (st.Rdev&0xfff00)>>8, (st.Rdev&0xff)|((st.Rdev>>12)&0xfff00)
			desc += fmt.Sprintf(" dev=%d:%d", ma, mi)
		}
		if len(st.Xattrs) > 0 {
			desc += fmt.Sprintf(" xattrs=%q", SortedXattrs(st.Xattrs))
		}
		out[path.Join("/", p)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SortedXattrs returns x as name=value strings in name order.
func SortedXattrs(x map[string]string) []string {
	s := make([]string, 0, len(x))
	for k, v := range x {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return s
}

// unixMode converts go-erofs's fs.FileMode back to st_mode bits.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	switch {
	case m.IsDir():
		u |= erofs.S_IFDIR
	case m&fs.ModeSymlink != 0:
		u |= erofs.S_IFLNK
	case m&fs.ModeCharDevice != 0:
		u |= erofs.S_IFCHR
	case m&fs.ModeDevice != 0:
		u |= erofs.S_IFBLK
	case m&fs.ModeNamedPipe != 0:
		u |= erofs.S_IFIFO
	case m&fs.ModeSocket != 0:
		u |= erofs.S_IFSOCK
	default:
		u |= erofs.S_IFREG
	}
	return u
}

// CompareTrees fails the test with the differences (the first 20) between
// two listings in the package's form.
func CompareTrees(t testing.TB, got, want map[string]string) {
	t.Helper()
	var bad []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			bad = append(bad, "missing "+p+": "+w)
		} else if g != w {
			bad = append(bad, fmt.Sprintf("%s: got %s, want %s", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			bad = append(bad, "unexpected "+p+": "+g)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		if len(bad) > 20 {
			bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
		}
		t.Fatalf("trees differ (got, want):\n%s", strings.Join(bad, "\n"))
	}
}
