package linuxboot

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"os"
	"testing"
)

var updateSynthetic = flag.Bool("update-synthetic", false, "rewrite testdata/igvm/inputs/synthetic-bzImage")

const syntheticPath = "../../../testdata/igvm/inputs/synthetic-bzImage"

// syntheticBzImage is a small bzImage that parses and lays out like a real
// one (boot protocol 2.15, 64-bit entry, syssize covering its 16 KiB of
// pseudo-random code): the kernel of the examples in docs/igvm.md and of
// the Example functions. It cannot boot.
func syntheticBzImage() []byte {
	payload := make([]byte, 16<<10)
	r := rand.New(rand.NewPCG(2, 15))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	b := fakeBzImage(payload, nil)
	binary.LittleEndian.PutUint32(b[0x1f4:], uint32(len(payload)/16)) // syssize
	binary.LittleEndian.PutUint16(b[0x236:], 0x3)                     // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
	return b
}

// The committed file is what syntheticBzImage makes.
func TestSyntheticBzImageFile(t *testing.T) {
	want := syntheticBzImage()
	if *updateSynthetic {
		if err := os.WriteFile(syntheticPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(syntheticPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("testdata/igvm/inputs/synthetic-bzImage differs from syntheticBzImage (go test ./pkg/igvm/linuxboot -run TestSyntheticBzImageFile -args -update-synthetic)")
	}
	if _, err := ParseBzImage(got); err != nil {
		t.Fatal(err)
	}
}
