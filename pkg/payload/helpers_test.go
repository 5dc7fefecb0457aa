package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/payloadtest"
)

// testCmdline is a command line as the pipeline records it (a dm-verity
// root fragment with quotes and a '"' inside one parameter).
const testCmdline = `console=ttyS0 panic=-1 ibroot.hash=4f2a9c0e61b7d8a35e0c4b9f1a2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5 ibroot.data="dm-verity,,,ro,0 8 verity" quiet`

// testFiles are a synthetic output set: the content does not matter for
// the payload, only names, sizes and digests do.
var testFiles = map[string]int{
	"rootfs.img":            256 << 10,
	"initrd.img":            64 << 10,
	"vmlinuz":               128 << 10,
	"podvm.igvm":            96 << 10,
	"cmdline.txt":           0,
	"reference-values.json": 0,
}

// writeOutputSet makes a synthetic output set in dir and returns it with
// two targets (igvm-mshv "azure" and qemu-ovmf "qemu" with ID blocks for
// milan and genoa at 1 vCPU).
func writeOutputSet(t testing.TB, dir string) OutputSet {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, 0, len(testFiles))
	for n := range testFiles {
		names = append(names, n)
	}
	slices.Sort(names)
	set := OutputSet{Dir: dir, Cmdline: testCmdline}
	for _, n := range names {
		var data []byte
		switch n {
		case "cmdline.txt":
			data = []byte(testCmdline + "\n")
		case "reference-values.json":
			data = []byte(`{"targets":[]}` + "\n")
		default:
			data = make([]byte, testFiles[n])
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
		}
		writeTestFile(t, filepath.Join(dir, n), data)
		set.Artifacts = append(set.Artifacts, Artifact{Name: n, Size: int64(len(data)), SHA256: sumHex(data)})
	}
	fw := filepath.Join(t.TempDir(), "OVMF.fd")
	writeTestFile(t, fw, bytes.Repeat([]byte("OVMF"), 4096))
	block := func(seed byte) []byte { return bytes.Repeat([]byte{seed}, 96) }
	auth := func(seed byte) []byte { return bytes.Repeat([]byte{seed}, 4096) }
	set.Targets = []Target{
		{Name: "azure", Platform: PlatformIGVMMSHV, Policy: 0x30000},
		{Name: "qemu", Platform: PlatformQEMUOVMF, Policy: 0x30000, Firmware: &Artifact{Path: fw},
			IDBlocks: []IDBlock{
				{CPU: "milan", VCPUs: 1, Block: block(1), Auth: auth(2)},
				{CPU: "genoa", VCPUs: 1, Block: block(3), Auth: auth(4)},
				{CPU: "milan", VCPUs: 2, Block: block(5), Auth: auth(6)},
			}},
	}
	return set
}

// writeManifest writes a manifest.json listing every file of dir, in the
// shape pkg/podvm's manifest has.
func writeManifest(t testing.TB, dir string) {
	t.Helper()
	if err := payloadtest.WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
}

// writePayload generates the payload for opts and writes its outputs and a
// manifest into set.Dir.
func writePayload(t testing.TB, set OutputSet, opts Options) *Payload {
	t.Helper()
	p, err := Generate(context.Background(), set, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.Outputs() {
		data := o.Data
		if o.Src != "" {
			if data, err = os.ReadFile(o.Src); err != nil {
				t.Fatal(err)
			}
		}
		writeTestFile(t, filepath.Join(set.Dir, o.Name), data)
	}
	writeManifest(t, set.Dir)
	return p
}

func writeTestFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// snapshot is every file, directory and link under root with its mode and
// content digest, for comparing trees.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + sumHex(data)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k+": "+v+" -> "+b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+": new "+v)
		}
	}
	slices.Sort(d)
	return d
}

func lines(s string) []string { return strings.SplitAfter(s, "\n") }

func hexString(b []byte) string { return hex.EncodeToString(b) }
