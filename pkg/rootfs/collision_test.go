package rootfs

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

// TestCollisions pins how names that meet in one layer or across layers
// are normalized (the rules in the package doc): the later entry wins, a
// directory over a directory only changes its metadata, a non-directory
// over a directory drops the directory's subtree, a whiteout and an entry
// of the same name in one layer leave the entry, and a hard link keeps the
// inode it was made to even when its target name is replaced later.
func TestCollisions(t *testing.T) {
	sha := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "sha=" + hex.EncodeToString(sum[:])
	}
	cases := []struct {
		name   string
		layers [][]rootfstest.TarEntry
		want   map[string]string // path -> substring of its read-back ("" = absent)
	}{
		{"same file twice in a layer", [][]rootfstest.TarEntry{{
			{Name: "etc/a", Body: "first"}, {Name: "./etc/a", Body: "second", Mode: 0o600},
		}}, map[string]string{"/etc/a": "100600 0:0 size=6 nlink=1 " + sha("second")}},
		{"file over directory drops its subtree", [][]rootfstest.TarEntry{
			{{Name: "d/sub/f", Body: "x"}},
			{{Name: "d", Body: "now a file"}},
		}, map[string]string{"/d": sha("now a file"), "/d/sub": "", "/d/sub/f": ""}},
		{"directory over file", [][]rootfstest.TarEntry{
			{{Name: "d", Body: "file"}},
			{{Name: "d/", Type: tar.TypeDir, Mode: 0o700}, {Name: "d/g", Body: "g"}},
		}, map[string]string{"/d": "040700 0:0", "/d/g": sha("g")}},
		{"directory over directory keeps children", [][]rootfstest.TarEntry{
			{{Name: "d/", Type: tar.TypeDir}, {Name: "d/keep", Body: "k"}},
			{{Name: "d/", Type: tar.TypeDir, Mode: 0o750, UID: 5, GID: 6}},
		}, map[string]string{"/d": "040750 5:6", "/d/keep": sha("k")}},
		{"symlink over directory", [][]rootfstest.TarEntry{
			{{Name: "d/f", Body: "x"}},
			{{Name: "d", Type: tar.TypeSymlink, Link: "/elsewhere"}},
		}, map[string]string{"/d": "120777 0:0 -> /elsewhere", "/d/f": ""}},
		{"whiteout and entry of one name in one layer", [][]rootfstest.TarEntry{
			{{Name: "w", Body: "lower"}},
			{{Name: "w", Body: "upper"}, {Name: ".wh.w"}},
		}, map[string]string{"/w": sha("upper")}},
		{"hard link keeps the replaced target's inode", [][]rootfstest.TarEntry{{
			{Name: "t", Body: "old"}, {Name: "l", Type: tar.TypeLink, Link: "t"}, {Name: "t", Body: "new"},
		}}, map[string]string{"/l": "nlink=1 " + sha("old"), "/t": "nlink=1 " + sha("new")}},
		{"hard link replaced by a file", [][]rootfstest.TarEntry{{
			{Name: "t", Body: "t"}, {Name: "l", Type: tar.TypeLink, Link: "./t"}, {Name: "l", Body: "own"},
		}}, map[string]string{"/l": "nlink=1 " + sha("own"), "/t": "nlink=1 " + sha("t")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Agent: fakeAgent(t, dir), Seed: "s"}
			for i, l := range c.layers {
				p := writeFile(t, filepath.Join(dir, fmt.Sprintf("layer%d.tar", i)), rootfstest.Tar(t, l))
				opts.Sources = append(opts.Sources, srcs(t, "tar:"+p)...)
			}
			img := filepath.Join(dir, "rootfs.img")
			if _, err := buildFile(t, opts, img); err != nil {
				t.Fatal(err)
			}
			got := rootfstest.ReadBack(t, img)
			for p, want := range c.want {
				if want == "" {
					if d, ok := got[p]; ok {
						t.Errorf("%s: present (%s), want absent", p, d)
					}
					continue
				}
				if !strings.Contains(got[p], want) {
					t.Errorf("%s: %q, want %q", p, got[p], want)
				}
			}
		})
	}
}

// TestSeedDerivations pins the seed-derived identifiers to values computed
// independently (Python hmac/hashlib/uuid, the systemd-repart formula:
// first 16 bytes of HMAC-SHA256(seed, msg) with the v4 bits set) and checks
// that they sit in the image where the kernel and tools read them: the GPT
// header, the erofs superblock and the verity superblock.
func TestSeedDerivations(t *testing.T) {
	const (
		diskGUID   = "d31432cc-d5ad-47ff-bea9-b39f975926b4" // derive(seed, "disk-uuid")
		fsUUID     = "30403b19-4e08-4d1f-88ae-e8baa962c693" // derive(seed, "file-system-uuid"), see the package doc
		verityUUID = "948218a9-07f0-46b9-9b0d-c5d73c19a8a5" // derive(seed, "verity-uuid")
		salt       = "3c92ae11a1dd2fe144fd31c563eb472866770498f28e3a676c06932be065a804"
	)
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "l.tar"), rootfstest.Tar(t, []rootfstest.TarEntry{{Name: "f", Body: "x"}}))
	img := filepath.Join(dir, "rootfs.img")
	d, err := buildFile(t, Options{Sources: srcs(t, "tar:"+p), Agent: fakeAgent(t, dir), Seed: "imagebuilder-test"}, img)
	if err != nil {
		t.Fatal(err)
	}
	if d.DiskGUID.String() != diskGUID || d.Filesystem.UUID.String() != fsUUID || d.Verity.UUID.String() != verityUUID || d.Verity.Salt != salt {
		t.Errorf("derived identifiers: disk %s fs %s verity %s salt %s", d.DiskGUID, d.Filesystem.UUID, d.Verity.UUID, d.Verity.Salt)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(u string) string { return strings.ReplaceAll(u, "-", "") }
	// erofs superblock at 1024 in partition 1, uuid at offset 48 in it.
	p1 := d.Partitions[0].Offset
	if got := hex.EncodeToString(b[p1+1024+48 : p1+1024+64]); got != raw(fsUUID) {
		t.Errorf("erofs superblock uuid %s, want %s", got, raw(fsUUID))
	}
	// verity superblock at the start of partition 2: uuid @16, salt @88.
	p2 := d.Partitions[1].Offset
	if got := hex.EncodeToString(b[p2+16 : p2+32]); got != raw(verityUUID) {
		t.Errorf("verity superblock uuid %s, want %s", got, raw(verityUUID))
	}
	if got := hex.EncodeToString(b[p2+88 : p2+88+32]); got != salt {
		t.Errorf("verity superblock salt %s, want %s", got, salt)
	}
	// GPT header at LBA 1: disk GUID @56 in mixed-endian order.
	g := b[512+56 : 512+72]
	mixed := fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x", g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:16])
	if mixed != diskGUID {
		t.Errorf("GPT disk GUID %s, want %s", mixed, diskGUID)
	}
}

// TestFileFlagOverDirectory: --file onto a directory (which would drop the
// whole directory, /etc with the units' links and machine-id) is an error.
func TestFileFlagOverDirectory(t *testing.T) {
	dir := t.TempDir()
	src := writeFile(t, filepath.Join(dir, "agent.toml"), []byte("[agent]\n"))
	layer := writeFile(t, filepath.Join(dir, "l.tar"), rootfstest.Tar(t, []rootfstest.TarEntry{{Name: "etc/kata/", Type: tar.TypeDir}}))
	for _, c := range []struct{ dst, want string }{
		{"/etc", `added files: entry "` + src + `:/etc": /etc is a directory`},
		{"/etc/kata", "/etc/kata is a directory"},
		{"/etc/kata/", "it names a directory, not a file"},
		{"/", "it names a directory, not a file"},
	} {
		opts := Options{Sources: srcs(t, "tar:"+layer), Agent: fakeAgent(t, dir), Seed: "s", Files: files(t, src+":"+c.dst)}
		if _, err := buildFile(t, opts, filepath.Join(dir, "rootfs.img")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--file %s: err = %v, want %q", c.dst, err, c.want)
		}
	}
	opts := Options{Sources: srcs(t, "tar:"+layer), Agent: fakeAgent(t, dir), Seed: "s", Files: files(t, src+":/etc/kata/agent.toml")}
	img := filepath.Join(dir, "ok.img")
	if _, err := buildFile(t, opts, img); err != nil {
		t.Fatal(err)
	}
	if got := rootfstest.ReadBack(t, img); got["/etc/kata/agent.toml"] == "" || got["/etc/machine-id"] == "" {
		t.Errorf("--file into a directory: %v", got)
	}
}

// TestDirSourceError: a dir: entry the image cannot hold is one line that
// names the source once and the entry.
func TestDirSourceError(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(src, "run", "sock"))
	if err != nil {
		t.Skipf("no unix socket: %v", err)
	}
	defer l.Close()
	opts := Options{Sources: srcs(t, "dir:"+src), Agent: fakeAgent(t, dir), Seed: "s"}
	_, err = buildFile(t, opts, filepath.Join(dir, "rootfs.img"))
	want := "rootfs: dir:" + src + `: entry "run/sock": unsupported file type`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
}
