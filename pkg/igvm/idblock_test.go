package igvm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

func readKey(t *testing.T, name string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("../../testdata/measure/ovmf/" + name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := snp.ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The SNP_ID_BLOCK header holds the same ID block and keys as the SEV-SNP
// ABI's structures, in its own layout, and converts both ways.
func TestSNPIDBlockConversion(t *testing.T) {
	blk := snp.NewIDBlock(snp.Digest(sha512.Sum384([]byte("x"))), 0x30000)
	blk.FamilyID[0], blk.ImageID[15], blk.GuestSVN = 1, 2, 3
	idKey, authorKey := readKey(t, "id-key.pem"), readKey(t, "author-key.pem")
	for _, author := range []*ecdsa.PrivateKey{nil, authorKey} {
		a, err := snp.SignIDBlock(blk, idKey, author)
		if err != nil {
			t.Fatal(err)
		}
		hdr := igvm.NewSNPIDBlock(0x1, blk, a)
		body, err := binary.Append(nil, binary.LittleEndian, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := igvm.BodySize(igvm.TypeSNPIDBlock); len(body) != n || n != 0x2b8 {
			t.Fatalf("size %#x", len(body))
		}
		// The public key struct has a reserved u32 after the curve.
		if body[0xf8] != 2 || !bytes.Equal(body[0xfc:0x100], []byte{0, 0, 0, 0}) {
			t.Errorf("ID public key header % x", body[0xf8:0x100])
		}
		wantEnabled := byte(0)
		if author != nil {
			wantEnabled = 1
		}
		if body[4] != wantEnabled {
			t.Errorf("author_key_enabled %d", body[4])
		}
		b2, a2 := hdr.IDBlock(blk.Policy), hdr.IDAuth()
		if hdr.CompatibilityMask != 1 || *b2 != *blk || *a2 != *a {
			t.Errorf("round trip: mask %d block %+v", hdr.CompatibilityMask, b2)
		}
		if err := a2.Verify(b2); err != nil {
			t.Error(err)
		}
		// The same keys in the AMD ID auth layout: qx starts 4 bytes after
		// the curve there, 8 in IGVM.
		auth := a.Marshal()
		if !bytes.Equal(auth[0x244:0x244+144], body[0x100:0x100+144]) {
			t.Error("ID key differs between ID auth and IGVM forms")
		}
	}
}
