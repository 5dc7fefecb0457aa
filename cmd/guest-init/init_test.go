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

func FuzzReadGPT(f *testing.F) {
	hdr := make([]byte, 2048)
	copy(hdr[512:], "EFI PART")
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		readGPT(bytes.NewReader(b), 512)
	})
}
