package audit

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/ibroot"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/inspect"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// igvmView is podvm.igvm, parsed.
type igvmView struct {
	f     *igvm.File
	mem   *igvm.Memory
	rep   *inspect.Report
	linux *inspect.Linux
	bp    *bootparams.BootParams
	rip   uint64
}

// openIGVM parses an IGVM file held in memory and finds what a Linux
// direct boot left in its pages: boot_params through the first VMSA's
// rsi, and from them the command line and the initrd.
func openIGVM(data []byte) (*igvmView, error) {
	f, err := igvm.Parse(data)
	if err != nil {
		return nil, err
	}
	rep, err := inspect.Inspect(f)
	if err != nil {
		return nil, err
	}
	v := &igvmView{f: f, mem: f.Memory(), rep: rep, linux: rep.Linux}
	if len(rep.VMSAs) > 0 {
		v.rip = uint64(rep.VMSAs[0].Registers["rip"])
	}
	if v.linux != nil {
		page := make([]byte, bootparams.Size)
		if _, err := v.mem.ReadAt(page, int64(v.linux.BootParams)); err == nil {
			v.bp, _ = bootparams.Unmarshal(page)
		}
	}
	return v, nil
}

// noLinux says why an IGVM file has no Linux boot.
func (ig *igvmView) noLinux() string {
	why := "no SEV-SNP VMSA"
	if len(ig.rep.Notes) > 0 {
		why = strings.Join(ig.rep.Notes, "; ")
	}
	return "no Linux boot_params in its pages: " + why
}

// igvmUnusable returns the link for a podvm.igvm that is absent, unreadable
// or holds no Linux boot, or nil when it can be used.
func (v *verifier) igvmUnusable() *Link {
	switch {
	case v.files[podvm.FileIGVM] == nil:
		return &Link{Status: Skipped, Detail: "podvm.igvm not given", Unchecked: []string{"podvm.igvm not given"}}
	}
	var err error
	switch {
	case v.files[podvm.FileIGVM].err != nil:
		err = v.files[podvm.FileIGVM].err
	case v.igErr != nil:
		err = v.igErr
	case v.ig.linux == nil || v.ig.bp == nil:
		err = fmt.Errorf("%s", v.ig.noLinux())
	default:
		return nil
	}
	// The first link says what is wrong, the others refer to it.
	if v.igReported != 0 && v.igReported != v.current {
		err = fmt.Errorf("cannot be used (link %d)", v.igReported)
	} else {
		v.igReported = v.current
	}
	l := broken(podvm.FileIGVM, err)
	return &l
}

// linkRootfs is link 2: the root disk's own chain.
func (v *verifier) linkRootfs() Link {
	a := v.files[podvm.FileRootfs]
	switch {
	case a == nil:
		return Link{Status: Skipped, Detail: "rootfs.img not given", Unchecked: []string{"rootfs.img not given"}}
	case v.disk == nil:
		return broken(podvm.FileRootfs, a.err)
	case v.disk.readErr != nil:
		return broken(podvm.FileRootfs, v.disk.readErr)
	case v.disk.structErr != nil:
		return broken(podvm.FileRootfs, v.disk.structErr)
	}
	d := v.disk
	root, parts := hex.EncodeToString(d.rootHash), hex.EncodeToString(d.partUUIDs)
	where := ""
	if d.treeDiff != "" {
		where = fmt.Sprintf("partition %d first differs from the recomputed tree at %s", d.hash.Number, d.treeDiff)
		if d.where != "" {
			where += ", in " + d.where
		}
	}
	if !bytes.Equal(d.rootHash, d.partUUIDs) {
		return fail(&Mismatch{What: "root hash", WantFrom: fmt.Sprintf("the PARTUUIDs of partitions %d and %d", d.data.Number, d.hash.Number), Want: parts,
			GotFrom: fmt.Sprintf("the verity tree recomputed from partition %d", d.data.Number), Got: root, Detail: where})
	}
	if !d.treeOK {
		return fail(&Mismatch{What: "verity tree", WantFrom: fmt.Sprintf("the tree recomputed from partition %d", d.data.Number),
			Want: "root hash " + root, GotFrom: fmt.Sprintf("partition %d", d.hash.Number), Got: "another superblock or tree", Detail: where})
	}
	return Link{Status: OK, Detail: fmt.Sprintf("GPT and backup sound; the verity tree recomputed from partition %d (%d blocks of %d bytes) is partition %d; root hash %s is the PARTUUIDs",
		d.data.Number, d.params.DataBlocks, d.params.DataBlockSize, d.hash.Number, root)}
}

// verityWant is the root hash and geometry the command line must carry.
type verityWant struct {
	// from and hashFrom say where the geometry and the root hash come
	// from.
	from, hashFrom string
	rootHash       []byte
	salt           []byte
	alg            string
	hashType       uint32
	dataBlocks     uint64
	dbs, hbs       uint32
	hashStart      uint64
	dataUUID       string
	hashUUID       string
}

// linkCmdline is link 3: the command line in the IGVM's pages names the
// root disk's root hash and geometry.
func (v *verifier) linkCmdline() Link {
	if l := v.igvmUnusable(); l != nil {
		return *l
	}
	var want verityWant
	var unchecked []string
	switch d := v.disk; {
	case d != nil && d.readErr == nil && d.structErr == nil:
		// The root hash the disk carries in its PARTUUIDs: link rootfs
		// checks that its data hashes to it; a disk whose data changed
		// fails there, not here.
		want = verityWant{from: "rootfs.img's verity superblock", hashFrom: "rootfs.img's PARTUUIDs", rootHash: d.partUUIDs, salt: d.params.Salt, alg: d.params.HashAlgorithm,
			hashType: d.params.HashType, dataBlocks: d.params.DataBlocks, dbs: d.params.DataBlockSize, hbs: d.params.HashBlockSize,
			hashStart: d.plan.HashStartBlock, dataUUID: d.data.UUID.String(), hashUUID: d.hash.UUID.String()}
	case v.files[podvm.FileRootfs] == nil && v.manifest != nil:
		// Without the disk, the manifest's record of it.
		mv := v.manifest.Rootfs.Verity
		rh, err1 := hex.DecodeString(mv.RootHash)
		salt, err2 := verity.ParseSalt(mv.Salt)
		if err1 != nil || err2 != nil || len(rh) < 32 {
			return broken(podvm.FileManifest, fmt.Errorf("rootfs.verity: root hash %q, salt %q: not hex", mv.RootHash, mv.Salt))
		}
		want = verityWant{from: "manifest.json's rootfs.verity", hashFrom: "manifest.json's rootfs.verity", rootHash: rh, salt: salt, alg: mv.HashAlgorithm, hashType: mv.HashType,
			dataBlocks: mv.DataBlocks, dbs: mv.DataBlockSize, hbs: mv.HashBlockSize, hashStart: mv.HashStartBlock}
		unchecked = append(unchecked, "rootfs.img not given: compared with manifest.json's record of it")
	default:
		why := v.missing(podvm.FileRootfs)
		if why == "" {
			why = "rootfs.img cannot be read (link rootfs)"
		}
		return Link{Status: Skipped, Detail: "no root disk to compare with: " + why, Unchecked: []string{why}}
	}
	forms, m := checkRootParams(v.cmdline, &want)
	if m != nil {
		return fail(m)
	}
	if len(forms) == 0 {
		return fail(&Mismatch{What: "verity root", GotFrom: "podvm.igvm's command line", Got: fmt.Sprintf("names none (no ibroot.hash=, roothash= or dm-mod.create=): %q", v.cmdline)})
	}
	l := Link{Status: OK, Detail: fmt.Sprintf("the command line in podvm.igvm's pages (at %#x) names root hash %s (%s) and the verity geometry of %s: %s",
		uint64(v.ig.linux.CmdlineGPA), hex.EncodeToString(want.rootHash), want.hashFrom, want.from, strings.Join(forms, ", "))}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}

// checkRootParams checks every verity root form the command line holds
// against want; it returns the forms found, or the first mismatch.
func checkRootParams(line string, want *verityWant) ([]string, *Mismatch) {
	words := splitCmdline(line)
	from := "podvm.igvm's command line"
	mm := func(what, got, wantV string) *Mismatch {
		wf := want.from
		if what == "ibroot.hash" || what == "roothash" || what == "dm-mod.create root hash" {
			wf = want.hashFrom
		}
		if strings.Contains(what, "device") || strings.HasPrefix(what, "systemd.verity_root_") && !strings.Contains(what, "options") {
			wf = "rootfs.img's partition table"
		}
		return &Mismatch{What: what, GotFrom: from, Got: got, WantFrom: wf, Want: wantV}
	}
	// A parameter the guest reads given twice with two values is not
	// "exactly" one root.
	seen := map[string]string{}
	for _, w := range words {
		k, val, _ := strings.Cut(w, "=")
		if strings.HasPrefix(k, "ibroot.") || k == "roothash" || strings.HasPrefix(k, "systemd.verity") || k == "dm-mod.create" {
			if prev, ok := seen[k]; ok && prev != val {
				return nil, &Mismatch{What: k, GotFrom: from, Got: fmt.Sprintf("given twice, %q and %q", prev, val)}
			}
			seen[k] = val
		}
	}
	var forms []string
	salt := verity.SaltHex(want.salt)
	if _, ok := seen["ibroot.hash"]; ok || hasPrefixKey(seen, "ibroot.") {
		forms = append(forms, "ibroot.*")
		p, err := ibroot.Parse(line)
		if err != nil {
			return nil, &Mismatch{What: "ibroot parameters", GotFrom: from, Got: err.Error()}
		}
		checks := []struct{ what, got, want string }{
			{"ibroot.hash", hex.EncodeToString(p.RootHash), hex.EncodeToString(want.rootHash)},
			{"ibroot.salt", verity.SaltHex(p.Salt), salt},
			{"ibroot.alg", p.Alg, want.alg},
			{"ibroot.blocks", fmt.Sprint(p.DataBlocks), fmt.Sprint(want.dataBlocks)},
			{"ibroot.bs", fmt.Sprint(p.DataBlockSize), fmt.Sprint(want.dbs)},
			{"ibroot.hashbs", fmt.Sprint(p.HashBlockSize), fmt.Sprint(want.hbs)},
			{"ibroot.hashstart", fmt.Sprint(p.HashStart), fmt.Sprint(want.hashStart)},
		}
		if want.hashType != 1 {
			// The guest init builds a format 1 table.
			checks = append(checks, struct{ what, got, want string }{"verity format", "1 (ibroot)", fmt.Sprint(want.hashType)})
		}
		if p.FSType != "" {
			checks = append(checks, struct{ what, got, want string }{"ibroot.fstype", p.FSType, "erofs"})
		}
		for _, c := range checks {
			if c.got != c.want {
				return nil, mm(c.what, c.got, c.want)
			}
		}
	}
	if rh, ok := seen["roothash"]; ok {
		forms = append(forms, "roothash=")
		if rh != hex.EncodeToString(want.rootHash) {
			return nil, mm("roothash", rh, hex.EncodeToString(want.rootHash))
		}
		if o, ok := seen["systemd.verity_root_options"]; ok {
			// Only a hash device without a superblock at offset 0 needs
			// them; the options that name the geometry must match.
			for _, kv := range strings.Split(o, ",") {
				k, val, _ := strings.Cut(kv, "=")
				exp, known := map[string]string{"data-block-size": fmt.Sprint(want.dbs), "hash-block-size": fmt.Sprint(want.hbs),
					"data-blocks": fmt.Sprint(want.dataBlocks), "hash": want.alg, "salt": salt, "format": fmt.Sprint(want.hashType),
					"superblock": "true", "hash-offset": "0"}[k]
				if known && val != exp {
					return nil, mm("systemd.verity_root_options "+k, val, exp)
				}
			}
		}
		for _, k := range []string{"systemd.verity_root_data", "systemd.verity_root_hash"} {
			uuid := want.dataUUID
			if strings.HasSuffix(k, "hash") {
				uuid = want.hashUUID
			}
			if val, ok := seen[k]; ok && uuid != "" && !strings.EqualFold(strings.TrimPrefix(val, "PARTUUID="), uuid) {
				return nil, mm(k, val, "PARTUUID="+uuid)
			}
		}
	}
	if dm, ok := seen["dm-mod.create"]; ok {
		forms = append(forms, "dm-mod.create=")
		if m := checkDMTable(dm, want, mm); m != nil {
			return nil, m
		}
	}
	return forms, nil
}

func hasPrefixKey(m map[string]string, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// checkDMTable checks a dm-mod.create="name,uuid,minor,flags,table" value
// (one device, a verity table) against want.
func checkDMTable(val string, want *verityWant, mm func(what, got, want string) *Mismatch) *Mismatch {
	val = strings.Trim(val, `"`)
	parts := strings.SplitN(val, ",", 5)
	if len(parts) != 5 {
		return mm("dm-mod.create", val, "name,uuid,minor,flags,table")
	}
	f := strings.Fields(parts[4])
	// 0 <sectors> verity <format> <data> <hash> <dbs> <hbs> <blocks> <hash_start> <alg> <root> <salt> [opts]
	if len(f) < 13 || f[2] != "verity" {
		return mm("dm-mod.create table", parts[4], "a verity table: 0 SECTORS verity FORMAT DATA HASH DBS HBS BLOCKS HASHSTART ALG ROOT SALT")
	}
	checks := []struct{ what, got, want string }{
		{"dm-mod.create length (sectors)", f[1], fmt.Sprint(want.dataBlocks * uint64(want.dbs) / 512)},
		{"dm-mod.create format", f[3], fmt.Sprint(want.hashType)},
		{"dm-mod.create data block size", f[6], fmt.Sprint(want.dbs)},
		{"dm-mod.create hash block size", f[7], fmt.Sprint(want.hbs)},
		{"dm-mod.create data blocks", f[8], fmt.Sprint(want.dataBlocks)},
		{"dm-mod.create hash start", f[9], fmt.Sprint(want.hashStart)},
		{"dm-mod.create algorithm", f[10], want.alg},
		{"dm-mod.create root hash", f[11], hex.EncodeToString(want.rootHash)},
		{"dm-mod.create salt", f[12], verity.SaltHex(want.salt)},
	}
	if want.dataUUID != "" {
		checks = append(checks, struct{ what, got, want string }{"dm-mod.create data device", f[4], "PARTUUID=" + want.dataUUID},
			struct{ what, got, want string }{"dm-mod.create hash device", f[5], "PARTUUID=" + want.hashUUID})
	}
	for _, c := range checks {
		if !strings.EqualFold(c.got, c.want) {
			return mm(c.what, c.got, c.want)
		}
	}
	return nil
}

// splitCmdline splits a kernel command line into words as the kernel's
// next_arg does: spaces separate, double quotes group (and stay in the
// word).
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			cur.WriteByte(c)
		case (c == ' ' || c == '\t' || c == '\n') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// linkPayload is link 4: the kernel, initrd and command line in the
// IGVM's pages are vmlinuz, initrd.img and cmdline.txt.
func (v *verifier) linkPayload() Link {
	if l := v.igvmUnusable(); l != nil {
		return *l
	}
	ig := v.ig
	var done, unchecked []string

	// The initrd: boot_params' ramdisk_image and ramdisk_size.
	if why := v.missing(podvm.FileInitrd); why != "" {
		unchecked = append(unchecked, why)
	} else {
		rd := v.files[podvm.FileInitrd].data
		gpa, size := ig.bp.Ramdisk()
		if size != uint64(len(rd)) {
			return fail(&Mismatch{What: "initrd size", GotFrom: "podvm.igvm's boot_params (ramdisk_size)", Got: fmt.Sprint(size),
				WantFrom: "initrd.img", Want: fmt.Sprint(len(rd))})
		}
		if m := compareGuest(ig.mem, gpa, rd, "initrd", "initrd.img"); m != nil {
			return fail(m)
		}
		done = append(done, fmt.Sprintf("initrd (%d bytes at %#x) is initrd.img", len(rd), gpa))
	}

	// The kernel: the protected-mode payload at the load address (the
	// VMSA's rip less the 64-bit entry offset), and the setup header in
	// boot_params as the kernel's with only what a loader writes changed.
	if why := v.missing(podvm.FileKernel); why != "" {
		unchecked = append(unchecked, why)
	} else {
		bz, err := linuxboot.ParseBzImage(v.files[podvm.FileKernel].data)
		if err != nil {
			return broken(podvm.FileKernel, err)
		}
		load := ig.rip - 0x200
		if load != bz.Header.PrefAddress {
			return fail(&Mismatch{What: "kernel entry", GotFrom: "podvm.igvm's VMSA (rip)", Got: fmt.Sprintf("%#x", ig.rip),
				WantFrom: "vmlinuz's 64-bit entry (pref_address + 0x200)", Want: fmt.Sprintf("%#x", bz.Header.PrefAddress+0x200)})
		}
		if m := compareSetupHeader(&ig.bp.Hdr, &bz.Header); m != nil {
			return fail(m)
		}
		if m := compareGuest(ig.mem, load, bz.Payload, "kernel", "vmlinuz (after its setup sectors)"); m != nil {
			return fail(m)
		}
		// The rest of the last page is zeros.
		if pad := (4096 - uint64(len(bz.Payload))%4096) % 4096; pad > 0 {
			if m := compareGuest(ig.mem, load+uint64(len(bz.Payload)), make([]byte, pad), "kernel", "zeros after vmlinuz"); m != nil {
				return fail(m)
			}
		}
		done = append(done, fmt.Sprintf("kernel (%d bytes at %#x, entry %#x) is vmlinuz", len(bz.Payload), load, ig.rip))
	}

	// The command line: cmdline.txt is it and a newline; the manifest
	// records it too.
	if why := v.missing(podvm.FileCmdline); why != "" {
		unchecked = append(unchecked, why)
	} else {
		txt := string(v.files[podvm.FileCmdline].data)
		if txt != v.cmdline+"\n" {
			return fail(&Mismatch{What: "command line", GotFrom: "cmdline.txt", Got: strconv.Quote(txt),
				WantFrom: "podvm.igvm's pages", Want: strconv.Quote(v.cmdline + "\n")})
		}
		done = append(done, "the command line is cmdline.txt")
	}
	if v.manifest != nil && v.manifest.Cmdline.Line != v.cmdline {
		return fail(&Mismatch{What: "command line", GotFrom: "manifest.json (cmdline.line)", Got: strconv.Quote(v.manifest.Cmdline.Line),
			WantFrom: "podvm.igvm's pages", Want: strconv.Quote(v.cmdline)})
	}
	if len(done) == 0 {
		return Link{Status: Skipped, Detail: "nothing to compare podvm.igvm's pages with", Unchecked: unchecked}
	}
	l := Link{Status: OK, Detail: "in podvm.igvm's pages: " + strings.Join(done, "; ")}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}

// compareGuest compares guest memory at gpa with want, in pages.
func compareGuest(mem *igvm.Memory, gpa uint64, want []byte, what, wantFrom string) *Mismatch {
	page := make([]byte, 64<<10)
	for off := 0; off < len(want); off += len(page) {
		n := min(len(page), len(want)-off)
		if _, err := mem.ReadAt(page[:n], int64(gpa)+int64(off)); err != nil {
			return &Mismatch{What: what, GotFrom: "podvm.igvm", Got: oneLine(err.Error()), WantFrom: wantFrom, Want: fmt.Sprintf("%d bytes at %#x", len(want), gpa)}
		}
		if i := firstDiff(page[:n], want[off:off+n]); i >= 0 {
			at := off + i
			return &Mismatch{What: what, GotFrom: fmt.Sprintf("podvm.igvm at %#x", gpa+uint64(at)), Got: fmt.Sprintf("byte %#02x", page[i]),
				WantFrom: fmt.Sprintf("%s at offset %d", wantFrom, at), Want: fmt.Sprintf("byte %#02x", want[at]),
				Detail: fmt.Sprintf("the first of the %d bytes differs at offset %d", len(want), at)}
		}
	}
	return nil
}

// compareSetupHeader compares the setup header in boot_params with the
// kernel's, ignoring the fields a boot loader writes or may modify
// (Documentation/arch/x86/boot.rst) and cmdline_size, which igvmgen sets
// to the command line's length.
func compareSetupHeader(got, kernel *bootparams.SetupHeader) *Mismatch {
	mask := func(h bootparams.SetupHeader) bootparams.SetupHeader {
		h.VidMode, h.TypeOfLoader, h.LoadFlags, h.SetupMoveSize, h.Code32Start = 0, 0, 0, 0, 0
		h.RamdiskImage, h.RamdiskSize, h.HeapEndPtr, h.ExtLoaderVer, h.ExtLoaderType = 0, 0, 0, 0, 0
		h.CmdLinePtr, h.KernelAlignment, h.HardwareSubarch, h.HardwareSubarchData, h.SetupData = 0, 0, 0, 0, 0
		h.CmdlineSize = 0
		return h
	}
	a, b := mask(*got), mask(*kernel)
	ab, bb := a.Marshal(), b.Marshal()
	i := firstDiff(ab, bb)
	if i < 0 {
		return nil
	}
	field := bootparams.FieldName(0x1f1 + i)
	return &Mismatch{What: "setup header " + field, GotFrom: "podvm.igvm's boot_params", Got: fmt.Sprintf("byte %d is %#02x", i, ab[i]),
		WantFrom: "vmlinuz's setup header", Want: fmt.Sprintf("%#02x", bb[i])}
}
