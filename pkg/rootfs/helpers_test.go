package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

func writeFile(t testing.TB, p string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeAgent writes a small stand-in for the kata-agent binary (its bytes
// only matter as file content).
func fakeAgent(t testing.TB, dir string) string {
	p := writeFile(t, filepath.Join(dir, "kata-agent"), []byte("#!/bin/sh\necho kata-agent stand-in\n"))
	os.Chmod(p, 0o755)
	return p
}

// buildFile runs Build into dir/name and returns the description.
func buildFile(t testing.TB, opts Options, out string) (*Description, error) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Build(context.Background(), opts, f)
	f.Close()
	if err != nil {
		os.Remove(out)
	}
	return d, err
}

func sha256File(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// flatten is the reference model of a tree: it applies the entries of
// simple layers (whiteouts, opaque directories, hard links) with plain
// maps, independently of tree.go, and describes each path like readBack.
type model struct {
	files map[string]*mfile
}

type mfile struct {
	mode   uint32
	uid    int
	gid    int
	body   []byte
	link   string
	dev    [2]int64
	xattrs map[string]string
	id     int // shared by hard links
}

func newModel() *model {
	return &model{files: map[string]*mfile{"/": {mode: sIFDIR | 0o755}}}
}

func (m *model) applyTar(t testing.TB, b []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	type add struct {
		h    *tar.Header
		body []byte
	}
	var adds []add
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		p := path.Join("/", h.Name)
		dir, base := path.Split(p)
		dir = path.Clean(dir)
		if base == whOpaque {
			for k := range m.files {
				if strings.HasPrefix(k, strings.TrimSuffix(dir, "/")+"/") {
					delete(m.files, k)
				}
			}
			continue
		}
		if strings.HasPrefix(base, whPrefix) {
			victim := path.Join(dir, base[len(whPrefix):])
			for k := range m.files {
				if k == victim || strings.HasPrefix(k, victim+"/") {
					delete(m.files, k)
				}
			}
			continue
		}
		adds = append(adds, add{h, body})
	}
	for _, a := range adds {
		m.add(a.h, a.body)
	}
}

var nextID = 1

func (m *model) add(h *tar.Header, body []byte) {
	p := path.Join("/", h.Name)
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if m.files[d] == nil {
			m.files[d] = &mfile{mode: sIFDIR | 0o755}
		}
	}
	old := m.files[p]
	perm := uint32(h.Mode) & 0o7777
	switch h.Typeflag {
	case tar.TypeDir:
		if old != nil && old.mode&sIFMT == sIFDIR {
			old.mode, old.uid, old.gid, old.xattrs = sIFDIR|perm, h.Uid, h.Gid, xattrsOf(h)
			return
		}
		m.remove(p)
		m.files[p] = &mfile{mode: sIFDIR | perm, uid: h.Uid, gid: h.Gid, xattrs: xattrsOf(h)}
	case tar.TypeLink:
		m.remove(p)
		m.files[p] = m.files[path.Join("/", h.Linkname)]
	default:
		m.remove(p)
		f := &mfile{uid: h.Uid, gid: h.Gid, xattrs: xattrsOf(h), id: nextID}
		nextID++
		switch h.Typeflag {
		case tar.TypeReg:
			f.mode, f.body = sIFREG|perm, body
		case tar.TypeSymlink:
			f.mode, f.link = sIFLNK|0o777, h.Linkname
		case tar.TypeChar:
			f.mode, f.dev = sIFCHR|perm, [2]int64{h.Devmajor, h.Devminor}
		case tar.TypeBlock:
			f.mode, f.dev = sIFBLK|perm, [2]int64{h.Devmajor, h.Devminor}
		case tar.TypeFifo:
			f.mode = sIFIFO | perm
		}
		m.files[p] = f
	}
}

func (m *model) remove(p string) {
	for k := range m.files {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(m.files, k)
		}
	}
}

func xattrsOf(h *tar.Header) map[string]string {
	var x map[string]string
	for k, v := range h.PAXRecords {
		if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if x == nil {
				x = map[string]string{}
			}
			x[n] = v
		}
	}
	return x
}

func (m *model) describe() map[string]string {
	links := map[*mfile]int{}
	for _, f := range m.files {
		links[f]++
	}
	out := map[string]string{}
	for p, f := range m.files {
		desc := fmt.Sprintf("%06o %d:%d", f.mode, f.uid, f.gid)
		switch f.mode & sIFMT {
		case sIFLNK:
			desc += " -> " + f.link
		case sIFREG:
			desc += fmt.Sprintf(" size=%d nlink=%d sha=%x", len(f.body), links[f], sha256.Sum256(f.body))
		case sIFCHR, sIFBLK:
			desc += fmt.Sprintf(" dev=%d:%d", f.dev[0], f.dev[1])
		}
		if len(f.xattrs) > 0 {
			desc += fmt.Sprintf(" xattrs=%q", rootfstest.SortedXattrs(f.xattrs))
		}
		out[p] = desc
	}
	return out
}

// additions is what Build puts on top, as tar entries for the model.
func additions(t testing.TB, agent string) []byte {
	b, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	return rootfstest.Tar(t, []rootfstest.TarEntry{
		{Name: "dev", Type: tar.TypeDir}, {Name: "proc", Type: tar.TypeDir, Mode: 0o555},
		{Name: "sys", Type: tar.TypeDir, Mode: 0o555}, {Name: "run", Type: tar.TypeDir},
		{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777}, {Name: "var", Type: tar.TypeDir},
		{Name: "mnt", Type: tar.TypeDir},
		{Name: "usr/bin/kata-agent", Mode: 0o755, Body: string(b)},
		{Name: "usr/lib/systemd/system/kata-agent.service", Body: kataAgentService},
		{Name: "usr/lib/systemd/system/kata-containers.target", Body: kataContainersTarget},
		{Name: "etc/systemd/system/default.target", Type: tar.TypeSymlink, Link: "/usr/lib/systemd/system/kata-containers.target"},
		{Name: "etc/machine-id", Mode: 0o444},
		{Name: "etc/fstab", Body: fstab},
	})
}

// needTool returns the path of a command; it skips when absent, except in
// CI (CI set), where `make test` installs the tools and absence is a failure.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make deps installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkOracles runs fsck.erofs, sgdisk -v and veritysetup verify on a disk
// built by Build.
func checkOracles(t testing.TB, img string, d *Description) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p1, p2 := d.Partitions[0], d.Partitions[1]
	extract := func(p Partition, name string) string {
		out := filepath.Join(dir, name)
		w, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(w, io.NewSectionReader(f, p.Offset, p.Size))
		w.Close()
		return out
	}
	data, hash := extract(p1, "data"), extract(p2, "hash")
	run(t, "fsck.erofs", "--extract", data) // --extract without a path reads every file
	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk -v: %s", out)
	}
	for i, p := range d.Partitions {
		out := run(t, "sgdisk", "-i", fmt.Sprint(i+1), img)
		for _, want := range []string{strings.ToUpper(p.Type.String()), strings.ToUpper(p.UUID.String()), "Attribute flags: 1000000000000000", "'" + p.Name + "'"} {
			if !strings.Contains(out, want) {
				t.Errorf("sgdisk -i %d: no %q in\n%s", i+1, want, out)
			}
		}
	}
	if want := strings.ToUpper(d.DiskGUID.String()); !strings.Contains(run(t, "sgdisk", "-p", img), want) {
		t.Errorf("sgdisk -p: disk GUID %s not shown", want)
	}
	run(t, "veritysetup", "verify", data, hash, d.Verity.RootHash)
}
