package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testHash = "e28d9e36c9c16daabf6f72d4e96a3b1234fb20ef99c4f244bf238a1d858e130f"

func TestParseParams(t *testing.T) {
	base := "console=ttyS0 ibroot.hash=" + testHash + " ibroot.salt=00ff ibroot.alg=sha256 ibroot.blocks=100 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1 ibroot.fstype=erofs"
	p, err := parseParams(base + " quiet ibroot.timeout=3 -- ibroot.init=/not/this")
	if err != nil {
		t.Fatal(err)
	}
	if p.timeout != 3 || p.init != "/sbin/init" || p.blocks != 100 || p.fstype != "erofs" || p.policy != policyPanic {
		t.Errorf("parsed %+v", p)
	}
	wantTable := "1 254:1 254:2 4096 4096 100 1 sha256 " + testHash + " 00ff 1 panic_on_corruption"
	if got := p.table("254:1", "254:2"); got != wantTable {
		t.Errorf("table %q\nwant  %q", got, wantTable)
	}
	if uuidString(p.dataUUID()) != "e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12" || uuidString(p.hashUUID()) != "34fb20ef-99c4-f244-bf23-8a1d858e130f" {
		t.Errorf("partition UUIDs %s %s", uuidString(p.dataUUID()), uuidString(p.hashUUID()))
	}
	p, err = parseParams(strings.Replace(base, "ibroot.salt=00ff", "ibroot.salt=-", 1) + ` ibroot.corruption=eio ibroot.init="/lib/systemd/systemd"`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p.table("a", "b"), " "+testHash+" -") || p.init != "/lib/systemd/systemd" {
		t.Errorf("table %q init %q", p.table("a", "b"), p.init)
	}
	for _, c := range []struct{ cmdline, want string }{
		{"console=ttyS0", "missing kernel parameter ibroot.hash="},
		{strings.Replace(base, "ibroot.hash="+testHash, "ibroot.hash=xyz", 1), `ibroot.hash="xyz"`},
		{strings.Replace(base, "ibroot.salt=00ff", "", 1), "missing kernel parameter ibroot.salt="},
		{strings.Replace(base, "ibroot.blocks=100", "ibroot.blocks=-1", 1), `ibroot.blocks="-1": want a decimal number`},
		{strings.Replace(base, "ibroot.bs=4096", "ibroot.bs=1000", 1), "ibroot.bs=1000: want a power of two"},
		{strings.Replace(base, "ibroot.fstype=erofs", "ibroot.fstype=xfs", 1), `ibroot.fstype="xfs"`},
		{base + " ibroot.timeout=0", `ibroot.timeout="0"`},
		{base + " ibroot.init=sbin/init", `ibroot.init="sbin/init": want an absolute path`},
		{base + " ibroot.corruption=ignore", `ibroot.corruption="ignore"`},
		{strings.Replace(base, "ibroot.hashstart=1", "", 1), "missing kernel parameter ibroot.hashstart="},
	} {
		_, err := parseParams(c.cmdline)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.cmdline, err, c.want)
		}
	}
}

// TestReadGPT reads a GPT written by sgdisk (the reference tool).
func TestReadGPT(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sgdisk not installed")
		}
		t.Skip("sgdisk not installed")
	}
	disk := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 8<<20)
	out, err := exec.Command("sgdisk", "-o", "-n=1:2048:4095", "-u=1:e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12",
		"-n=2:4096:6143", "-u=2:34fb20ef-99c4-f244-bf23-8a1d858e130f", "-t=2:2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5", disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	f, _ := os.Open(disk)
	defer f.Close()
	parts, err := readGPT(f, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].Number != 1 || parts[1].Number != 2 ||
		uuidString(parts[0].UUID[:]) != "e28d9e36-c9c1-6daa-bf6f-72d4e96a3b12" ||
		uuidString(parts[1].UUID[:]) != "34fb20ef-99c4-f244-bf23-8a1d858e130f" ||
		uuidString(parts[1].TypeUUID[:]) != "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5" ||
		parts[0].First != 2048 || parts[1].Last != 6143 {
		t.Errorf("parts %+v", parts)
	}
	// A flipped bit in the entry array fails its CRC.
	b, _ := os.ReadFile(disk)
	b[1024+20] ^= 1
	if _, err := readGPT(bytes.NewReader(b), 512); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("corrupt GPT: %v", err)
	}
}

func TestDMStructs(t *testing.T) {
	if dmIoctlNr(dmDevCreate) != 0xc138fd03 || dmIoctlNr(dmTableLoad) != 0xc138fd09 || dmIoctlNr(dmDevSuspend) != 0xc138fd06 {
		t.Errorf("ioctl numbers %#x %#x %#x", dmIoctlNr(dmDevCreate), dmIoctlNr(dmTableLoad), dmIoctlNr(dmDevSuspend))
	}
	params := "1 254:1 254:2 4096 4096 100 1 sha256 aa -"
	b := dmTable("ibroot", dmReadonlyFlag, 800, "verity", params)
	le := binary.LittleEndian
	if len(b)%8 != 0 || le.Uint32(b[12:]) != uint32(len(b)) || le.Uint32(b[16:]) != 312 || le.Uint32(b[20:]) != 1 || le.Uint32(b[28:]) != 1 {
		t.Errorf("dm_ioctl header % x", b[:40])
	}
	if string(b[48:54]) != "ibroot" || le.Uint32(b[0:]) != 4 {
		t.Errorf("name/version")
	}
	ts := b[312:]
	if le.Uint64(ts[8:]) != 800 || string(ts[24:30]) != "verity" || string(ts[40:40+len(params)]) != params || ts[40+len(params)] != 0 {
		t.Errorf("target spec % x", ts[:48])
	}
}

func TestFSMagic(t *testing.T) {
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint32(b[1024:], 0xE0F5E1E2)
	if fs, err := fsMagic(b); fs != "erofs" || err != nil {
		t.Errorf("erofs: %q %v", fs, err)
	}
	b = make([]byte, 4096)
	binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
	if fs, _ := fsMagic(b); fs != "ext4" {
		t.Errorf("ext4: %q", fs)
	}
	b = make([]byte, 4096)
	copy(b, "hsqs")
	if fs, _ := fsMagic(b); fs != "squashfs" {
		t.Errorf("squashfs: %q", fs)
	}
	if _, err := fsMagic(make([]byte, 4096)); err == nil {
		t.Error("zeros recognised")
	}
}

func FuzzParseParams(f *testing.F) {
	f.Add("ibroot.hash=" + testHash + " ibroot.salt=- ibroot.blocks=1 ibroot.bs=4096 ibroot.hashbs=4096 ibroot.hashstart=1")
	f.Add(`a="b c" -- d`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseParams(s)
		if err == nil {
			p.table("1:1", "1:2")
			p.sectors()
		}
	})
}

func FuzzReadGPT(f *testing.F) {
	hdr := make([]byte, 2048)
	copy(hdr[512:], "EFI PART")
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		readGPT(bytes.NewReader(b), 512)
	})
}
