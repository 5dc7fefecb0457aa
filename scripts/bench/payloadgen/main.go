// Command payloadgen writes a demo-sized synthetic output set with its node
// payload for scripts/bench/payload.sh: a 200 MiB root disk, a 24 MiB
// initrd, an 8 MiB kernel, a 32 MiB IGVM (pseudo-random bytes from a fixed
// seed: the payload does not look inside them), a QEMU target with its
// firmware, the payload files and a manifest.json.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/internal/payloadtest"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: payloadgen OUT")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "payloadgen:", err)
		os.Exit(1)
	}
}

// writeRandom writes size pseudo-random bytes and returns their sha256.
func writeRandom(name string, size int64, seed uint64) (string, error) {
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	if _, err := io.CopyN(w, rng, size); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

func run(out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmdline := "console=ttyS0 panic=-1 ibroot.hash=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	set := payload.OutputSet{Dir: out, Cmdline: cmdline}
	for i, f := range []struct {
		name string
		size int64
	}{{"initrd.img", 24 << 20}, {"podvm.igvm", 32 << 20}, {"rootfs.img", 200 << 20}, {"vmlinuz", 8 << 20}} {
		sum, err := writeRandom(filepath.Join(out, f.name), f.size, uint64(i))
		if err != nil {
			return err
		}
		set.Artifacts = append(set.Artifacts, payload.Artifact{Name: f.name, Size: f.size, SHA256: sum})
	}
	if err := os.WriteFile(filepath.Join(out, "cmdline.txt"), []byte(cmdline+"\n"), 0o644); err != nil {
		return err
	}
	fw := filepath.Join(out, "..", "OVMF.fd")
	if _, err := writeRandom(fw, 4<<20, 9); err != nil {
		return err
	}
	set.Targets = []payload.Target{{Name: "qemu", Platform: payload.PlatformQEMUOVMF, Policy: 0x30000,
		Firmware: &payload.Artifact{Path: fw},
		IDBlocks: []payload.IDBlock{{CPU: "milan", VCPUs: 1, Block: make([]byte, 96), Auth: make([]byte, 4096)}}}}
	p, err := payload.Generate(context.Background(), set, payload.Options{})
	if err != nil {
		return err
	}
	for _, o := range p.Outputs() {
		data := o.Data
		if o.Src != "" {
			if data, err = os.ReadFile(o.Src); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(out, o.Name), data, 0o644); err != nil {
			return err
		}
	}
	return payloadtest.WriteManifest(out)
}
