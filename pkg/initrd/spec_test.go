package initrd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpecRoundTrip(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "init.sh"), []byte("#!/bin/sh\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "busybox"), []byte("busybox binary"), 0o644)
	spec := `# a gen_init_cpio spec
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
nod /dev/vda 660 0 6 b 254 0
dir /bin 755 0 0
file /bin/busybox sub/busybox 755 0 0 /bin/sh /sbin/ash
slink /lib64 lib 777 0 0
pipe /run/fifo 644 0 0
sock /run/sock 755 0 0
file /init init.sh 755 0 0
dir /home/user 700 1000 1000
`
	a := New()
	if err := a.AddSpec(context.Background(), strings.NewReader(spec), "test.spec", dir); err != nil {
		t.Fatal(err)
	}
	var s1 bytes.Buffer
	if err := a.WriteSpec(&s1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `dir /bin 755 0 0
file /bin/busybox ` + filepath.Join(dir, "sub/busybox") + ` 755 0 0 /bin/sh /sbin/ash
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
nod /dev/vda 660 0 6 b 254 0
dir /home 755 0 0
dir /home/user 700 1000 1000
file /init ` + filepath.Join(dir, "init.sh") + ` 755 0 0
slink /lib64 lib 777 0 0
dir /run 755 0 0
pipe /run/fifo 644 0 0
sock /run/sock 755 0 0
dir /sbin 755 0 0
`
	if s1.String() != want {
		t.Errorf("spec written:\n%s\nwant:\n%s", s1.String(), want)
	}
	b := New()
	if err := b.AddSpec(context.Background(), bytes.NewReader(s1.Bytes()), "again.spec", "/nonexistent"); err != nil {
		t.Fatal(err)
	}
	var s2 bytes.Buffer
	b.WriteSpec(&s2, WriteOptions{})
	if s2.String() != s1.String() {
		t.Errorf("second round trip differs:\n%s", s2.String())
	}
	x1 := buildBytes(t, a, WriteOptions{Compression: None})
	x2 := buildBytes(t, b, WriteOptions{Compression: None})
	if !bytes.Equal(x1, x2) {
		t.Error("archives from the spec and its round trip differ")
	}
	// Hard links: one inode, content once (on the last name).
	var inos []uint32
	var sizes []int64
	r := NewReader(bytes.NewReader(x1))
	for {
		h, err := r.Next()
		if err != nil {
			break
		}
		if h.Name == "bin/busybox" || h.Name == "bin/sh" || h.Name == "sbin/ash" {
			inos = append(inos, h.Ino)
			sizes = append(sizes, h.Size)
			if h.NLink != 3 {
				t.Errorf("%s: nlink %d, want 3", h.Name, h.NLink)
			}
		}
		if h.Name == "home/user" && (h.UID != 1000 || h.GID != 1000) {
			t.Errorf("spec owners not kept: %d:%d", h.UID, h.GID)
		}
	}
	if len(inos) != 3 || inos[0] != inos[1] || inos[1] != inos[2] || sizes[0] != 0 || sizes[1] != 0 || sizes[2] != 14 {
		t.Errorf("hard link group: inodes %v sizes %v (order bin/busybox bin/sh sbin/ash)", inos, sizes)
	}
}

// TestWriteSpecWhiteSpace: a name gen_init_cpio would split is an error,
// not a spec line that reads back as something else.
func TestWriteSpecWhiteSpace(t *testing.T) {
	a := New()
	a.Add(Entry{Path: "etc/file name", Mode: TypeDir | 0o755})
	err := a.WriteSpec(&bytes.Buffer{}, WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), `"etc/file name" holds white space`) {
		t.Fatalf("error %v", err)
	}
}
