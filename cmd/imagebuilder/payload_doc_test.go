package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/doctest"
	"github.com/imagebuilder/imagebuilder/internal/payloadtest"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

// docOutputSet writes the small synthetic output set the examples of
// docs/node-payload.md use into dir/out: made-up artifacts (their
// contents do not matter to the payload), a QEMU target with the firmware
// and one ID block, the payload and a manifest.json.
func docOutputSet(t *testing.T, dir string) {
	t.Helper()
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	cmdline := "console=ttyS0 panic=-1 ibroot.root=PARTUUID=00000000-0000-4000-8000-000000000001 ibroot.hash=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	files := map[string][]byte{
		"rootfs.img":  bytes.Repeat([]byte("root disk "), 100000),
		"initrd.img":  bytes.Repeat([]byte("initrd "), 10000),
		"vmlinuz":     bytes.Repeat([]byte("kernel "), 20000),
		"podvm.igvm":  bytes.Repeat([]byte("igvm "), 20000),
		"cmdline.txt": []byte(cmdline + "\n"),
	}
	set := payload.OutputSet{Dir: out, Cmdline: cmdline}
	for _, name := range []string{"cmdline.txt", "initrd.img", "podvm.igvm", "rootfs.img", "vmlinuz"} {
		data := files[name]
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		set.Artifacts = append(set.Artifacts, payload.Artifact{Name: name, Size: int64(len(data)), SHA256: sha256hex(data)})
	}
	fw := filepath.Join(t.TempDir(), "OVMF.fd")
	os.WriteFile(fw, bytes.Repeat([]byte("OVMF"), 1024), 0o644)
	set.Targets = []payload.Target{{Name: "qemu", Platform: payload.PlatformQEMUOVMF, Policy: 0x30000,
		Firmware: &payload.Artifact{Path: fw},
		IDBlocks: []payload.IDBlock{{CPU: "milan", VCPUs: 1, Block: make([]byte, 96), Auth: make([]byte, 4096)}}}}
	p, err := payload.Generate(context.Background(), set, payload.Options{HandlerPrefix: "contrast-cc-"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.Outputs() {
		data := o.Data
		if o.Src != "" {
			data, _ = os.ReadFile(o.Src)
		}
		os.WriteFile(filepath.Join(out, o.Name), data, 0o644)
	}
	if err := payloadtest.WriteManifest(out); err != nil {
		t.Fatal(err)
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPayloadDocExamples runs the console examples of
// docs/node-payload.md (install, the handler-name recipe with sha256sum,
// push and pull through an OCI layout) with imagebuilder being this test
// binary.
func TestPayloadDocExamples(t *testing.T) {
	dir := t.TempDir()
	docOutputSet(t, dir)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := doctest.Wrapper(t, "imagebuilder", []string{self, "-test.run=^TestCLIChildProcess$", "--"}, []string{cliChildEnv + "=1"})
	doctest.Run(t, "../../docs/node-payload.md", doctest.Options{Dir: dir, Path: []string{bin}})
}
