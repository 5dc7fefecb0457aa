package deb

import (
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/golden"
)

// TestTestdata checks (or with make golden writes) the small packages the
// examples read: made by makeDeb, so the bytes are fixed by this file.
func TestTestdata(t *testing.T) {
	ctl := func(pkg string) []byte {
		c := "Package: " + pkg + "\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libc6 (>= 2.36), foo\nDescription: an example\n"
		return makeTar(t, []tarEnt{dir("./", 0o755), file("./control", c, 0o644)})
	}
	debs := map[string][]byte{
		"hello_1.0-1_amd64.deb": makeAr([]arMem{
			{name: "debian-binary", data: []byte("2.0\n")},
			{name: "control.tar.xz", data: compress(t, XZ, ctl("hello"), 0)},
			{name: "data.tar.xz", data: compress(t, XZ, makeTar(t, []tarEnt{
				dir("./", 0o755), dir("./usr/", 0o755), dir("./usr/bin/", 0o755),
				file("./usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755), symlink("./usr/bin/hi", "hello"),
			}), 0)},
		}),
		"linux-image-1.0.0-test_1.0-1_amd64.deb": makeAr([]arMem{
			{name: "debian-binary", data: []byte("2.0\n")},
			{name: "control.tar.xz", data: compress(t, XZ, ctl("linux-image-1.0.0-test"), 0)},
			{name: "data.tar.xz", data: compress(t, XZ, makeTar(t, []tarEnt{
				dir("./", 0o755), dir("./boot/", 0o755),
				file("./boot/vmlinuz-1.0.0-test", fakeBzImage(), 0o644),
				file("./boot/config-1.0.0-test", "CONFIG_EROFS_FS=m\n", 0o644),
				dir("./lib/", 0o755), dir("./lib/modules/", 0o755), dir("./lib/modules/1.0.0-test/", 0o755),
				file("./lib/modules/1.0.0-test/modules.builtin", "kernel/fs/ext4/ext4.ko\n", 0o644),
			}), 0)},
		}),
	}
	for name, b := range debs {
		golden.Check(t, filepath.Join("testdata", name), b)
	}
}
