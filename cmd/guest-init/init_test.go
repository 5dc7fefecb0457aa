package main

import (
	"encoding/binary"
	"testing"
)

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
