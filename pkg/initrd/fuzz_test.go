package initrd

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// FuzzWalk feeds arbitrary bytes to the initramfs reader (cpio, gzip,
// zstd, xz segments): it must return an error or succeed, never panic.
func FuzzWalk(f *testing.F) {
	f.Add(buildBytes(f, goldenArchiveF(), WriteOptions{Compression: None}))
	f.Add(buildBytes(f, goldenArchiveF(), WriteOptions{Compression: Gzip}))
	zs := buildBytes(f, goldenArchiveF(), WriteOptions{Compression: Zstd})
	f.Add(append(zs, zs...)) // two zstd segments: the frame splitter at work
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Walk(context.Background(), bytes.NewReader(data), func(h *Header, _ Segment, r io.Reader) error {
			_, err := io.Copy(io.Discard, io.LimitReader(r, 1<<20))
			return err
		})
	})
}

// FuzzAddSpec: arbitrary spec text gives entries or a one-line error.
func FuzzAddSpec(f *testing.F) {
	f.Add("dir /dev 755 0 0\nnod /dev/console 600 0 0 c 5 1\nslink /bin/sh busybox 777 0 0\n")
	f.Add("file /init /nonexistent 755 0 0\n")
	f.Add("pipe /../x 644 0 0\n")
	f.Fuzz(func(t *testing.T, spec string) {
		a := New()
		if err := a.AddSpec(context.Background(), strings.NewReader(spec), "fuzz.spec", "/nonexistent"); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// The tree is only complete when it is written (later entries may
		// replace earlier ones), so WriteCPIO may still refuse it, e.g. a
		// path under a device node; that must be a clear one-line error
		// naming the entry.
		if err := write(a, WriteOptions{Compression: None}); err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "initrd: ") {
				t.Fatalf("write error %q is not one initrd: line", msg)
			}
		}
	})
}

func goldenArchiveF() *Archive {
	a := New()
	a.Add(Entry{Path: "init", Mode: TypeReg | 0o755, Size: 3, Data: []byte("abc")})
	a.Add(Entry{Path: "dev/console", Mode: TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1})
	a.Add(Entry{Path: "lib64", Mode: TypeSymlink | 0o777, Linkname: "lib"})
	return a
}
