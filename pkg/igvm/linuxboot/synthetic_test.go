package linuxboot

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/golden"
)

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
	golden.Check(t, syntheticPath, want)
	if _, err := ParseBzImage(want); err != nil {
		t.Fatal(err)
	}
}
