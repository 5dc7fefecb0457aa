package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/gpt"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// verifyDir verifies an output directory of the repro config, with its
// firmware.
func verifyDir(t *testing.T, out, cfg string) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), Artifacts{Dir: out}, Options{Firmware: []string{firmwarePath(cfg)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Links {
		if strings.ContainsAny(l.Detail, "\n\r") {
			t.Errorf("link %s: detail on more than one line: %q", l.Name, l.Detail)
		}
	}
	return rep
}

func link(rep *Report, name string) Link {
	for _, l := range rep.Links {
		if l.Name == name {
			return l
		}
	}
	return Link{}
}

// failedNames lists the failed links.
func failedNames(rep *Report) []string {
	var out []string
	for _, l := range rep.Failed() {
		out = append(out, l.Name)
	}
	return out
}

func dump(rep *Report) string {
	var b strings.Builder
	for _, l := range rep.Links {
		b.WriteString(l.Name + " " + string(l.Status) + " " + l.Detail + "\n")
	}
	return b.String()
}

// recordSum records a changed output's sha256 and size in manifest.json, as
// someone who changed the output on purpose would, so that the links
// after outputs must find the change.
func recordSum(t *testing.T, out, name string) {
	t.Helper()
	mp := filepath.Join(out, podvm.FileManifest)
	b, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	var m podvm.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	found := false
	for i := range m.Outputs {
		if m.Outputs[i].Name == name {
			m.Outputs[i].SHA256, m.Outputs[i].Size = hex.EncodeToString(sum[:]), int64(len(data))
			found = true
		}
	}
	if !found {
		t.Fatalf("%s is not an output", name)
	}
	b, err = json.MarshalIndent(&m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFresh(t *testing.T) {
	out, cfg := fresh(t)
	rep := verifyDir(t, out, cfg)
	if !rep.OK {
		t.Fatalf("a fresh build does not verify:\n%s", dump(rep))
	}
	want := map[string]Status{"outputs": OK, "rootfs": OK, "cmdline": OK, "payload": OK, "launch_digest": OK, "id_block": OK, "handler": OK}
	for _, l := range rep.Links {
		if l.Status != want[l.Name] {
			t.Errorf("link %d %s: %s, want %s: %s", l.Number, l.Name, l.Status, want[l.Name], l.Detail)
		}
	}
	if len(rep.Links) != 7 {
		t.Errorf("%d links", len(rep.Links))
	}
	keys := link(rep, "id_block").Keys
	if len(keys) != 2 || keys[0].AuthorKeyDigest == nil || keys[0].IDKeyDigest == (snp.Digest{}) {
		t.Errorf("keys: %+v", keys)
	}
	if l := link(rep, "handler"); !strings.HasPrefix(l.Detail, "contrast-cc-metal-qemu-snp-") || !strings.Contains(l.Detail, "is the hash of its 5 installed files") {
		t.Errorf("handler: %s", l.Detail)
	}
	// The node payload carries the qemu-ovmf target's firmware: it is
	// used without Options.Firmware.
	rep, err := Verify(context.Background(), Artifacts{Dir: out}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l := link(rep, "launch_digest"); !rep.OK || l.Status != OK || !strings.Contains(l.Detail, "metal-qemu-snp: 4 from ovmf-metal-qemu-snp.fd,") {
		t.Errorf("firmware of the payload: %+v", l)
	}
	// Without any firmware, the qemu-ovmf target is not recomputed: the
	// link is partial and says why.
	a := Artifacts{IGVM: filepath.Join(out, podvm.FileIGVM), Kernel: filepath.Join(out, podvm.FileKernel), Initrd: filepath.Join(out, podvm.FileInitrd),
		ReferenceValues: filepath.Join(out, podvm.FileReferenceValues), Manifest: filepath.Join(out, podvm.FileManifest)}
	if rep, err = Verify(context.Background(), a, Options{}); err != nil {
		t.Fatal(err)
	}
	l := link(rep, "launch_digest")
	if !rep.OK || l.Status != Partial || len(l.Unchecked) != 1 || !strings.Contains(l.Unchecked[0], "metal-qemu-snp: no OVMF firmware") {
		t.Errorf("without firmware: %+v", l)
	}
}

// contentOffset returns the offset in rootfs.img of the first byte of a
// file of the erofs in partition 1.
func contentOffset(t *testing.T, img, path string) int64 {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	tab, err := gpt.Read(f, st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Find(rootfs.TypeRootX86_64)
	fsys, err := erofs.Open(io.NewSectionReader(f, p.Offset, p.Size), p.Size)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(-1)
	fsys.Walk(context.Background(), func(name string, in *erofs.Inode) error {
		if name == path {
			o, ok := fsys.ContentOffset(in, 0)
			if !ok {
				t.Fatalf("%s has no content", path)
			}
			off = p.Offset + o
		}
		return nil
	})
	if off < 0 {
		t.Fatalf("no %s in the erofs", path)
	}
	return off
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyRootfsByte: one byte of a file of the root file system
// changes. Link outputs sees the file's sha256; with the manifest
// updated, link rootfs sees the tree, and names the file.
func TestVerifyRootfsByte(t *testing.T) {
	for _, c := range []struct{ path, where string }{
		{"/usr/lib/block", "in /usr/lib/block, byte 0"},                           // a file in data blocks
		{"/usr/lib/bigtail", "in /usr/lib/bigtail, byte 8192"},                    // its third block
		{"/usr/bin/kata-agent", "in a metadata block with the inline data of /,"}, // inline after its inode
	} {
		t.Run(c.path, func(t *testing.T) {
			path := c.path
			out, cfg := fresh(t)
			img := filepath.Join(out, podvm.FileRootfs)
			off := contentOffset(t, img, path)
			if path == "/usr/lib/bigtail" {
				off += 8192 + 5
			}
			flipByte(t, img, off)
			rep := verifyDir(t, out, cfg)
			// The node payload installs rootfs.img: its plan has the digest.
			if got := failedNames(rep); strings.Join(got, ",") != "outputs,rootfs,handler" {
				t.Errorf("failed links %v, want outputs, rootfs and handler:\n%s", got, dump(rep))
			}
			if m := link(rep, "outputs").Mismatch; m == nil || m.What != "rootfs.img" {
				t.Errorf("outputs: %+v", m)
			}
			recordSum(t, out, podvm.FileRootfs)
			rep = verifyDir(t, out, cfg)
			if got := failedNames(rep); strings.Join(got, ",") != "rootfs,handler" {
				t.Errorf("with the manifest updated, failed links %v, want rootfs and handler:\n%s", got, dump(rep))
			}
			l := link(rep, "rootfs")
			if l.Mismatch == nil || l.Mismatch.What != "root hash" || !strings.Contains(l.Detail, c.where) ||
				l.Mismatch.Got == l.Mismatch.Want || len(l.Mismatch.Got) != 64 || len(l.Mismatch.Want) != 64 {
				t.Errorf("rootfs: %s", l.Detail)
			}
		})
	}
}

// rebuildIGVM lays podvm.igvm out again from vmlinuz and initrd.img with
// the command line edit(cmdline.txt) (as the build does, without an ID
// block).
func rebuildIGVM(t *testing.T, out string, edit func(string) string) string {
	t.Helper()
	k, _ := os.ReadFile(filepath.Join(out, podvm.FileKernel))
	rd, _ := os.ReadFile(filepath.Join(out, podvm.FileInitrd))
	c, _ := os.ReadFile(filepath.Join(out, podvm.FileCmdline))
	bz, err := linuxboot.ParseBzImage(k)
	if err != nil {
		t.Fatal(err)
	}
	line := edit(strings.TrimSuffix(string(c), "\n"))
	img, err := linuxboot.Build(context.Background(), bz, linuxboot.Options{Cmdline: line, Initrd: rd, Policy: 0x30000,
		PvalidateOpt: true, EncryptedPage: true, SVME: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(out, podvm.FileIGVM))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := img.Write(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	return line
}

// otherHash changes the value of ibroot.hash= in a command line.
func otherHash(t *testing.T, line string) (string, string, string) {
	t.Helper()
	i := strings.Index(line, "ibroot.hash=")
	if i < 0 {
		t.Fatalf("no ibroot.hash in %q", line)
	}
	start := i + len("ibroot.hash=")
	old := line[start : start+64]
	b := []byte(old)
	b[0] = "01"[b[0]&1]
	if b[0] == old[0] {
		b[0] = 'f'
	}
	return line[:start] + string(b) + line[start+64:], old, string(b)
}

// TestVerifyCmdlineRootHash: the IGVM file laid out again with a command
// line that names another root hash. Link cmdline names both.
func TestVerifyCmdlineRootHash(t *testing.T) {
	out, cfg := fresh(t)
	var old, other string
	rebuildIGVM(t, out, func(l string) string {
		var nl string
		nl, old, other = otherHash(t, l)
		return nl
	})
	recordSum(t, out, podvm.FileIGVM)
	rep := verifyDir(t, out, cfg)
	l := link(rep, "cmdline")
	if l.Status != Failed || l.Mismatch.What != "ibroot.hash" || l.Mismatch.Got != other || l.Mismatch.Want != old {
		t.Errorf("cmdline: %s\n%s", l.Detail, dump(rep))
	}
	// The other links see the rest: cmdline.txt is not the IGVM's line,
	// the launch digest moved, the ID block is gone from the file.
	for _, name := range []string{"payload", "launch_digest", "id_block"} {
		if link(rep, name).Status != Failed {
			t.Errorf("%s: %s", name, link(rep, name).Detail)
		}
	}
	if link(rep, "rootfs").Status != OK || link(rep, "outputs").Status != OK {
		t.Errorf("\n%s", dump(rep))
	}
}

// TestVerifyReferenceValues: reference-values.json edited (one digest).
func TestVerifyReferenceValues(t *testing.T) {
	for _, target := range []int{0, 1} {
		out, cfg := fresh(t)
		p := filepath.Join(out, podvm.FileReferenceValues)
		b, _ := os.ReadFile(p)
		var rv podvm.ReferenceValues
		if err := json.Unmarshal(b, &rv); err != nil {
			t.Fatal(err)
		}
		orig := rv.Targets[target].Values[0].Digest
		rv.Targets[target].Values[0].Digest[5] ^= 1
		edited := rv.Targets[target].Values[0].Digest
		b, _ = json.MarshalIndent(&rv, "", "  ")
		os.WriteFile(p, b, 0o644)
		recordSum(t, out, podvm.FileReferenceValues)
		rep := verifyDir(t, out, cfg)
		l := link(rep, "launch_digest")
		if l.Status != Failed || !strings.HasPrefix(l.Mismatch.What, rv.Targets[target].Name+" launch digest") ||
			l.Mismatch.Got != edited.String() || l.Mismatch.Want != orig.String() {
			t.Errorf("target %d: %s\n%s", target, l.Detail, dump(rep))
		}
		if link(rep, "outputs").Status != OK || link(rep, "payload").Status != OK {
			t.Errorf("\n%s", dump(rep))
		}
	}
}

// TestVerifyIDBlockResigned: an ID block file re-signed with another key.
func TestVerifyIDBlockResigned(t *testing.T) {
	out, cfg := fresh(t)
	name := podvm.IDBlockFile("metal-qemu-snp")
	p := filepath.Join(out, name)
	b, _ := os.ReadFile(p)
	var doc podvm.IDBlocks
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range doc.Blocks {
		raw, _ := base64.StdEncoding.DecodeString(e.IDBlock)
		blk, err := snp.UnmarshalIDBlock(raw)
		if err != nil {
			t.Fatal(err)
		}
		auth, err := snp.SignIDBlock(blk, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		doc.Blocks[i].IDAuth = base64.StdEncoding.EncodeToString(auth.Marshal())
		doc.IDKeyDigest = auth.IDKeyDigest()
	}
	doc.AuthorKeyDigest, doc.AuthorKeyEnabled = nil, false
	b, _ = json.MarshalIndent(&doc, "", "  ")
	os.WriteFile(p, b, 0o644)
	recordSum(t, out, name)
	rep := verifyDir(t, out, cfg)
	// The Kata configuration of the payload still carries the block's
	// old authentication: link handler says so.
	if got := failedNames(rep); strings.Join(got, ",") != "id_block,handler" ||
		!strings.HasPrefix(link(rep, "handler").Detail, "configuration-metal-qemu-snp.toml [hypervisor.qemu] snp_id_auth: ") {
		t.Errorf("failed links %v, want id_block and handler:\n%s", got, dump(rep))
	}
	l := link(rep, "id_block")
	if l.Mismatch == nil || !strings.HasSuffix(l.Mismatch.What, "ID key") || l.Mismatch.Got != doc.IDKeyDigest.String() ||
		l.Mismatch.WantFrom != "manifest.json (inputs.id_key)" {
		t.Errorf("id_block: %s", l.Detail)
	}
	// The key digests are reported, the new one among them.
	if len(l.Keys) != 2 || l.Keys[1].IDKeyDigest != doc.IDKeyDigest || l.Keys[1].AuthorKeyDigest != nil {
		t.Errorf("keys: %+v", l.Keys)
	}
	// The auditor's expected key wins over the manifest's: with the new
	// key expected, the first file's (old) key is the mismatch.
	rep, err = Verify(context.Background(), Artifacts{Dir: out}, Options{Firmware: []string{firmwarePath(cfg)}, IDKeyDigest: &doc.IDKeyDigest})
	if err != nil {
		t.Fatal(err)
	}
	l = link(rep, "id_block")
	if l.Status != Failed || l.Mismatch.WantFrom != "the expected ID key" || !strings.HasPrefix(l.Mismatch.What, "id-block-aks-clh-snp.json") {
		t.Errorf("expected key: %s", l.Detail)
	}
	// A signature that does not verify: block 0's authentication on
	// block 1 of the file as built.
	out, _ = fresh(t)
	p = filepath.Join(out, name)
	b, _ = os.ReadFile(p)
	doc = podvm.IDBlocks{}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc.Blocks[1].IDAuth = doc.Blocks[0].IDAuth
	b, _ = json.MarshalIndent(&doc, "", "  ")
	os.WriteFile(p, b, 0o644)
	recordSum(t, out, name)
	l = link(verifyDir(t, out, cfg), "id_block")
	if l.Status != Failed || !strings.HasSuffix(l.Mismatch.What, "signature") || !strings.Contains(l.Mismatch.What, "block 1") {
		t.Errorf("bad signature: %s", l.Detail)
	}
}

// TestVerifyInitrdReplaced: another initrd.img. Links outputs and payload
// (and the qemu-ovmf digests, which hash the initrd).
func TestVerifyInitrdReplaced(t *testing.T) {
	for _, same := range []bool{false, true} {
		out, cfg := fresh(t)
		p := filepath.Join(out, podvm.FileInitrd)
		b, _ := os.ReadFile(p)
		if same {
			b[len(b)-1] ^= 1 // same size, one byte
		} else {
			b = append(b, make([]byte, 512)...)
		}
		os.WriteFile(p, b, 0o644)
		rep := verifyDir(t, out, cfg)
		if l := link(rep, "outputs"); l.Status != Failed || l.Mismatch.What != podvm.FileInitrd {
			t.Errorf("outputs: %s", l.Detail)
		}
		l := link(rep, "payload")
		want := "initrd size"
		if same {
			want = "initrd"
		}
		if l.Status != Failed || l.Mismatch.What != want {
			t.Errorf("payload: %s", l.Detail)
		}
		if link(rep, "launch_digest").Status != Failed {
			t.Errorf("launch_digest: %s", link(rep, "launch_digest").Detail)
		}
	}
}

// TestVerifyNamed: artifacts named one by one; what is missing is skipped
// or partial, and says so.
func TestVerifyNamed(t *testing.T) {
	out, _ := fresh(t)
	rep, err := Verify(context.Background(), Artifacts{IGVM: filepath.Join(out, podvm.FileIGVM), Rootfs: filepath.Join(out, podvm.FileRootfs)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The IGVM file's SNP_ID_BLOCK is checked on its own (its signature,
	// its digest against the file's): partial without its id-block file.
	want := map[string]Status{"outputs": Skipped, "rootfs": OK, "cmdline": OK, "payload": Skipped, "launch_digest": Skipped, "id_block": Partial, "handler": Skipped}
	for _, l := range rep.Links {
		if l.Status != want[l.Name] {
			t.Errorf("%s: %s, want %s: %s", l.Name, l.Status, want[l.Name], l.Detail)
		}
	}
	// With the manifest: the outputs given are checked, the others not.
	rep, err = Verify(context.Background(), Artifacts{IGVM: filepath.Join(out, podvm.FileIGVM), Manifest: filepath.Join(out, podvm.FileManifest),
		Initrd: filepath.Join(out, podvm.FileInitrd)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l := link(rep, "outputs"); l.Status != Partial || !strings.Contains(l.Detail, "2 outputs") {
		t.Errorf("outputs: %+v", l)
	}
	if l := link(rep, "cmdline"); l.Status != Partial || !strings.Contains(l.Unchecked[0], "manifest.json's record") {
		t.Errorf("cmdline: %+v", l)
	}
	if _, err := Verify(context.Background(), Artifacts{}, Options{}); err == nil {
		t.Error("no artifacts: no error")
	}
}

// TestVerifyExtraAndMissing: a file the manifest does not list, one it
// lists that is missing.
func TestVerifyExtraAndMissing(t *testing.T) {
	out, cfg := fresh(t)
	os.WriteFile(filepath.Join(out, "README"), []byte("hello\n"), 0o644)
	os.Remove(filepath.Join(out, podvm.FileKernel))
	rep := verifyDir(t, out, cfg)
	l := link(rep, "outputs")
	if l.Status != Failed || l.Mismatch.What != podvm.FileKernel || l.Mismatch.Got != "no such file" || !strings.Contains(l.Detail, "1 more: README") {
		t.Errorf("outputs: %s", l.Detail)
	}
	if l := link(rep, "payload"); l.Status != Partial || !strings.HasPrefix(l.Unchecked[0], "vmlinuz: no such file") {
		t.Errorf("payload: %+v", l)
	}
}

// TestVerifyHostile: corrupt and truncated artifacts give failed links
// with one line each, never an error or a panic.
func TestVerifyHostile(t *testing.T) {
	out0, cfg := fresh(t)
	sizes := map[string]int64{}
	for _, n := range []string{podvm.FileRootfs, podvm.FileIGVM, podvm.FileInitrd, podvm.FileKernel, podvm.FileManifest, podvm.FileReferenceValues, podvm.IDBlockFile("aks-clh-snp")} {
		st, err := os.Stat(filepath.Join(out0, n))
		if err != nil {
			t.Fatal(err)
		}
		sizes[n] = st.Size()
	}
	type mutation struct {
		name string
		file string
		f    func([]byte) []byte
		// link that must fail beyond outputs ("" for outputs only)
		link string
	}
	cases := []mutation{
		{"truncated rootfs", podvm.FileRootfs, func(b []byte) []byte { return b[:len(b)/2] }, "rootfs"},
		{"empty rootfs", podvm.FileRootfs, func([]byte) []byte { return nil }, "rootfs"},
		{"GPT header", podvm.FileRootfs, func(b []byte) []byte { b[512+20] ^= 1; return b }, "rootfs"},
		{"verity superblock", podvm.FileRootfs, func(b []byte) []byte { return b }, "rootfs"}, // set below
		{"truncated IGVM", podvm.FileIGVM, func(b []byte) []byte { return b[:len(b)/3] }, "cmdline"},
		{"IGVM magic", podvm.FileIGVM, func(b []byte) []byte { b[0] ^= 1; return b }, "cmdline"},
		{"kernel garbage", podvm.FileKernel, func(b []byte) []byte { return bytes.Repeat([]byte{0xcc}, 4096) }, "payload"},
		{"manifest garbage", podvm.FileManifest, func([]byte) []byte { return []byte("{\"schema\": 1\n") }, ""},
		{"manifest other schema", podvm.FileManifest, func([]byte) []byte { return []byte(`{"schema":"x/v9"}`) }, ""},
		{"reference values garbage", podvm.FileReferenceValues, func([]byte) []byte { return []byte("\x00\x01") }, "launch_digest"},
		{"ID block garbage", podvm.IDBlockFile("aks-clh-snp"), func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"snp_id_auth": "`), []byte(`"snp_id_auth": "!!`), 1)
		}, "id_block"},
		{"ID block short", podvm.IDBlockFile("aks-clh-snp"), func(b []byte) []byte { return b[:len(b)-40] }, "id_block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if err := os.CopyFS(out, os.DirFS(out0)); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(out, c.file)
			b, _ := os.ReadFile(p)
			if c.name == "verity superblock" {
				d := &diskCheck{}
				f, _ := os.Open(p)
				if err := d.readStructure(f, int64(len(b))); err != nil {
					t.Fatal(err)
				}
				f.Close()
				b[d.hash.Offset] ^= 1 // the "verity" magic
			}
			b = c.f(b)
			os.WriteFile(p, b, 0o644)
			rep := verifyDir(t, out, cfg)
			failed := failedNames(rep)
			if c.file != podvm.FileManifest && (len(failed) == 0 || failed[0] != "outputs") {
				t.Errorf("outputs did not fail:\n%s", dump(rep))
			}
			if c.link != "" && link(rep, c.link).Status != Failed {
				t.Errorf("%s did not fail:\n%s", c.link, dump(rep))
			}
			if c.file == podvm.FileManifest && link(rep, "outputs").Status != Failed {
				t.Errorf("outputs:\n%s", dump(rep))
			}
		})
	}
	// A directory that is not one.
	if _, err := Verify(context.Background(), Artifacts{Dir: filepath.Join(out0, podvm.FileManifest)}, Options{}); err == nil {
		t.Error("a file as the directory: no error")
	}
	// A cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, Artifacts{Dir: out0}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestVerifyKeyless: ID blocks signed without a key carry exactly the
// fixed keyless signature; one signed by a key instead fails.
func TestVerifyKeyless(t *testing.T) {
	root := t.TempDir()
	cfg := reproTree(t, root)
	b, _ := os.ReadFile(cfg)
	y := strings.Replace(string(b), "    key: id-key.pem\n    authorKey: author-key.pem\n", "    keyless: true\n", 1)
	if y == string(b) {
		t.Fatal("no keys in the config")
	}
	os.WriteFile(cfg, []byte(y), 0o644)
	out := filepath.Join(root, "out")
	buildRepro(t, cfg, out)
	rep := verifyDir(t, out, cfg)
	l := link(rep, "id_block")
	if !rep.OK || l.Status != OK || len(l.Keys) != 2 || !l.Keys[0].Keyless || !strings.Contains(l.Detail, "keyless, ID key") {
		t.Fatalf("%+v\n%s", l, dump(rep))
	}
	// Signed by a key, still said to be keyless.
	name := podvm.IDBlockFile("metal-qemu-snp")
	p := filepath.Join(out, name)
	b, _ = os.ReadFile(p)
	var doc podvm.IDBlocks
	json.Unmarshal(b, &doc)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	raw, _ := base64.StdEncoding.DecodeString(doc.Blocks[0].IDBlock)
	blk, _ := snp.UnmarshalIDBlock(raw)
	auth, _ := snp.SignIDBlock(blk, key, nil)
	doc.Blocks[0].IDAuth = base64.StdEncoding.EncodeToString(auth.Marshal())
	doc.IDKeyDigest = auth.IDKeyDigest()
	b, _ = json.MarshalIndent(&doc, "", "  ")
	os.WriteFile(p, b, 0o644)
	recordSum(t, out, name)
	l = link(verifyDir(t, out, cfg), "id_block")
	if l.Status != Failed || !strings.Contains(l.Detail, "a keyless build") {
		t.Errorf("%s", l.Detail)
	}
}

// TestVerifyHandler: the node payload's files and plan. The handler name
// is the hash of what the node installs: a changed Kata configuration, a
// plan whose digest is not its files', a RuntimeClass or a containerd
// runtime entry other than the plan's (another handler, another Kata
// configuration) each fail link handler.
func TestVerifyHandler(t *testing.T) {
	cases := []struct {
		name, file string
		edit       func(string) string
		want       string
	}{
		{"Kata configuration", "configuration-metal-qemu-snp.toml", func(s string) string {
			return strings.Replace(s, "default_vcpus = 1", "default_vcpus = 2", 1)
		}, "configuration-metal-qemu-snp.toml (installed as /opt/contrast-cc-metal-qemu-snp-"},
		{"plan digest", "install-plan.json", func(s string) string {
			i := strings.Index(s, `"handler_digest": "`) + len(`"handler_digest": "`)
			return s[:i] + "0000" + s[i+4:]
		}, "handler digest: 0000"},
		{"RuntimeClass", "runtimeclass.yaml", func(s string) string {
			return strings.Replace(s, "handler: contrast-cc-", "handler: other-cc-", 1)
		}, "RuntimeClass handler: other-cc-metal-qemu-snp-"},
		// The handler's name left in a comment is no handler.
		{"RuntimeClass comment", "runtimeclass.yaml", func(s string) string {
			i := strings.Index(s, "\nhandler: ") + 1
			j := i + strings.Index(s[i:], "\n") + 1
			return s[:i] + "handler: other\n# " + s[i:j] + s[j:]
		}, "RuntimeClass handler: other (runtimeclass.yaml)"},
		{"RuntimeClass without handler", "runtimeclass.yaml", func(s string) string {
			return strings.Replace(s, "\nhandler: ", "\nxhandler: ", 1)
		}, "RuntimeClass handler: none (runtimeclass.yaml)"},
		{"RuntimeClass name", "runtimeclass.yaml", func(s string) string {
			return strings.Replace(s, "  name: contrast-cc-", "  name: other-cc-", 1)
		}, "RuntimeClass metadata.name: other-cc-metal-qemu-snp-"},
		// The drop-in's header comment keeps the name; its tables do not.
		{"containerd runtime name", "containerd-runtime.toml", func(s string) string {
			return strings.ReplaceAll(s, "runtimes.contrast-cc-", "runtimes.other-cc-")
		}, "containerd-runtime.toml line 6: [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.other-cc-"},
		{"containerd ConfigPath", "containerd-runtime.toml", func(s string) string {
			return strings.Replace(s, `ConfigPath = "/opt/`, `ConfigPath = "/srv/`, 1)
		}, `containerd-runtime.toml line 12: ConfigPath = "/srv/`},
		{"containerd runtime_type", "containerd-runtime.toml", func(s string) string {
			return strings.Replace(s, "io.containerd.kata.v2", "io.containerd.runc.v2", 1)
		}, `containerd-runtime.toml line 7: runtime_type = "io.containerd.runc.v2"`},
		{"plan ConfigPath", "install-plan.json", func(s string) string {
			return strings.Replace(s, `"config_path": "/opt/`, `"config_path": "/srv/`, 1)
		}, "install-plan.json: containerd.config_path \"/srv/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, cfg := fresh(t)
			p := filepath.Join(out, c.file)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			e := c.edit(string(b))
			if e == string(b) {
				t.Fatalf("%s: the edit changes nothing", c.file)
			}
			os.WriteFile(p, []byte(e), 0o644)
			recordSum(t, out, c.file)
			rep := verifyDir(t, out, cfg)
			if got := failedNames(rep); strings.Join(got, ",") != "handler" {
				t.Errorf("failed links %v, want handler:\n%s", got, dump(rep))
			}
			if l := link(rep, "handler"); !strings.HasPrefix(l.Detail, c.want) {
				t.Errorf("handler: %s", l.Detail)
			}
		})
	}
}

// TestVerifyKVM: an IGVM file laid out for QEMU on KVM (the VMSA at
// KVM's address) with an igvm-kvm target: the kvm profile's digests per
// CPU model and vCPU count, with the target's host kernel.
func TestVerifyKVM(t *testing.T) {
	root := t.TempDir()
	cfg := reproTree(t, root)
	b, _ := os.ReadFile(cfg)
	s := string(b)
	i, j := strings.Index(s, "  measurements:"), strings.Index(s, "  idBlock:")
	s = s[:i] + `  igvm:
    layout:
      kind: kvm
  measurements:
    targets:
      - name: qemu-igvm
        platform: igvm-kvm
        vcpus: [1, 3]
        cpus: [EPYC-Milan, genoa]
        hostKernel: "6.12"
` + s[j:]
	if k := strings.Index(s, "  runtime:"); k > 0 {
		s = s[:k] // the payload runs no igvm-kvm target
	}
	os.WriteFile(cfg, []byte(s), 0o644)
	out := filepath.Join(root, "out")
	buildRepro(t, cfg, out)
	rep := verifyDir(t, out, cfg)
	if !rep.OK || !strings.Contains(link(rep, "launch_digest").Detail, "qemu-igvm: 4 from podvm.igvm") ||
		!strings.Contains(link(rep, "id_block").Detail, "qemu-igvm: 4 blocks") || link(rep, "payload").Status != OK {
		t.Fatalf("\n%s", dump(rep))
	}
	// A host kernel under which QEMU and KVM could not launch the file:
	// no digest exists.
	mp := filepath.Join(out, podvm.FileManifest)
	mb, _ := os.ReadFile(mp)
	edited := strings.Replace(string(mb), `"host_kernel": "6.12"`, `"host_kernel": "6.6"`, 1)
	if edited == string(mb) {
		t.Fatal("no host_kernel in the manifest")
	}
	os.WriteFile(mp, []byte(edited), 0o644)
	rep = verifyDir(t, out, cfg)
	if l := link(rep, "launch_digest"); l.Status != Failed || !strings.HasPrefix(l.Mismatch.What, "qemu-igvm launch digest (EPYC-Milan, 1 vCPUs)") ||
		!strings.Contains(l.Detail, "hypothetical-host: host kernel 6.6") {
		t.Errorf("host kernel 6.6: %s", l.Detail)
	}
}

// TestVerifyContrast: a measurement of reference-values.contrast.json
// that is no launch digest of its platform fails link launch_digest.
func TestVerifyContrast(t *testing.T) {
	out, cfg := fresh(t)
	p := filepath.Join(out, podvm.FileContrastReferences)
	b, _ := os.ReadFile(p)
	key := `"TrustedMeasurement": "`
	i := strings.Index(string(b), key) + len(key)
	b[i] ^= 1 // a hex digit to another
	os.WriteFile(p, b, 0o644)
	recordSum(t, out, podvm.FileContrastReferences)
	rep := verifyDir(t, out, cfg)
	l := link(rep, "launch_digest")
	if got := failedNames(rep); strings.Join(got, ",") != "launch_digest" || !strings.HasPrefix(l.Detail, "reference-values.contrast.json[") ||
		!strings.Contains(l.Detail, "TrustedMeasurement") {
		t.Errorf("%v: %s", got, l.Detail)
	}
}

// rehandle edits the Kata configuration of out's payload and hashes the
// payload again as an attacker would: the new handler name replaces the
// old one in every file, the plan and manifest.json carry the new
// digests, so that only the configuration's content can give it away.
func rehandle(t *testing.T, out string, edit func(string) string) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	plan, err := payload.ParsePlan([]byte(read(payload.InstallPlanFile)), payload.InstallPlanFile)
	if err != nil {
		t.Fatal(err)
	}
	old := plan.Handler
	var kata *payload.PlanFile
	for i := range plan.Files {
		if plan.Files[i].Path == plan.Containerd.ConfigPath {
			kata = &plan.Files[i]
		}
	}
	content := edit(read(kata.Source))
	if content == read(kata.Source) {
		t.Fatalf("%s: the edit changes nothing", kata.Source)
	}
	tsum := sha256.Sum256([]byte(strings.ReplaceAll(content, old, payload.Placeholder)))
	kata.TemplateSHA256 = hex.EncodeToString(tsum[:])
	var hashed []payload.HashedFile
	for _, f := range plan.Files {
		sum := f.SHA256
		if f.TemplateSHA256 != "" {
			sum = f.TemplateSHA256
		}
		rel := strings.ReplaceAll(strings.TrimPrefix(f.Path, plan.InstallPrefix), old, payload.Placeholder)
		hashed = append(hashed, payload.HashedFile{Path: rel, SHA256: sum})
	}
	digest, err := payload.HandlerDigest(hashed)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimSuffix(old, plan.HandlerDigest[:8]) + digest[:8]
	if n, err := payload.HandlerName(strings.TrimSuffix(old, plan.Platform+"-"+plan.HandlerDigest[:8]), plan.Platform, hashed); err != nil || n != name {
		t.Fatalf("handler name %s, %v; want %s", n, err, name)
	}
	content = strings.ReplaceAll(content, old, name)
	os.WriteFile(filepath.Join(out, kata.Source), []byte(content), 0o644)
	sum := sha256.Sum256([]byte(content))
	kata.SHA256, kata.Size = hex.EncodeToString(sum[:]), int64(len(content))
	kata.Integrity = "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
	plan.HandlerDigest = digest
	pj, err := plan.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, payload.InstallPlanFile), []byte(strings.ReplaceAll(string(pj), old, name)), 0o644)
	recordSum(t, out, kata.Source)
	recordSum(t, out, payload.InstallPlanFile)
	for _, f := range []string{payload.RuntimeClassFile, payload.ContainerdDropInFile, podvm.FileReferenceValues, podvm.FileContrastReferences} {
		os.WriteFile(filepath.Join(out, f), []byte(strings.ReplaceAll(read(f), old, name)), 0o644)
		recordSum(t, out, f)
	}
	mp := filepath.Join(out, podvm.FileManifest)
	os.WriteFile(mp, []byte(strings.ReplaceAll(read(podvm.FileManifest), old, name)), 0o644)
}

// TestVerifyKataConfig: a Kata configuration that boots other files, or
// another command line or policy than the launch digests are of, fails
// link handler even when the payload is hashed again under a new name.
func TestVerifyKataConfig(t *testing.T) {
	out, cfg := fresh(t)
	rehandle(t, out, func(s string) string { return s + "\n# a comment changes only the name\n" })
	if rep := verifyDir(t, out, cfg); !rep.OK {
		t.Fatalf("a payload hashed again as it is:\n%s", dump(rep))
	}
	set := func(key, value string) func(string) string {
		return func(s string) string {
			i := strings.Index(s, "\n"+key+" = ") + 1
			if i == 0 {
				t.Fatalf("no %s in the Kata configuration", key)
			}
			j := i + strings.Index(s[i:], "\n")
			return s[:i] + key + " = " + value + s[j:]
		}
	}
	for _, c := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"kernel_params", func(s string) string {
			i := strings.Index(s, "\nkernel_params = \"") + len("\nkernel_params = \"")
			return s[:i] + "quiet " + s[i:]
		}, `configuration-metal-qemu-snp.toml [hypervisor.qemu] kernel_params: "quiet console=`},
		{"image", set("image", `"/var/lib/other.img"`), `configuration-metal-qemu-snp.toml [hypervisor.qemu] image: "/var/lib/other.img" (configuration-metal-qemu-snp.toml), want "/opt/contrast-cc-metal-qemu-snp-`},
		{"policy", set("snp_guest_policy", "196639"), "configuration-metal-qemu-snp.toml [hypervisor.qemu] snp_guest_policy: 196639 (configuration-metal-qemu-snp.toml), want "},
		// The ID block is of a launch with 1 vCPU.
		{"vCPUs", set("default_vcpus", "3"), "configuration-metal-qemu-snp.toml [hypervisor.qemu] default_vcpus: 3 (configuration-metal-qemu-snp.toml), want 1 (id-block-metal-qemu-snp.json block 0, the one snp_id_block holds)"},
		{"no ID block", set("snp_id_block", `""`), `configuration-metal-qemu-snp.toml [hypervisor.qemu] snp_id_block: "" (configuration-metal-qemu-snp.toml), want one of its 4 blocks`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, cfg := fresh(t)
			rehandle(t, out, c.edit)
			rep := verifyDir(t, out, cfg)
			if got := failedNames(rep); strings.Join(got, ",") != "handler" || !strings.HasPrefix(link(rep, "handler").Detail, c.want) {
				t.Errorf("failed links %v, want handler: %s:\n%s", got, c.want, dump(rep))
			}
		})
	}
}
