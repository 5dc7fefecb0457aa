// Package e2e holds the end-to-end tests: they build this module's binaries
// (go build, as 'make build' does) and boot real Linux guests under
// qemu-system-x86_64 with TCG (-accel tcg; no KVM is needed), with a real
// Debian kernel and the images the library builds, and check what the
// guest's serial console shows.
//
// They need the tools and fixtures 'make deps' installs and caches
// (qemu-system-x86_64, mkfs.erofs, veritysetup, sgdisk, cpio, busybox; the
// Debian kernel and systemd root under ~/.cache/imagebuilder). A missing one
// fails the test when CI is set and skips it otherwise. Every test that
// builds or boots is skipped under -short; TestConsole, the harness's own
// test, runs always.
//
// Run them with
//
//	make e2e                                      # all of them
//	go test -run TestSystemdBoot -v ./e2e         # one
//
// The package has no API: everything is in its _test.go files, with the
// harness (QEMU runner, console matching, binary builds, small disks) in
// harness_test.go. docs/testing.md describes the tests.
package e2e
