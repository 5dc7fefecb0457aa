package snp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fuzzbound"
)

// RFC 6979 appendix A.2.6, P-384 with SHA-384, message "sample": checks
// that the deterministic signing we rely on is RFC 6979.
func TestRFC6979P384SHA384(t *testing.T) {
	unhex := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), unhex("6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := k.PublicKey.Bytes()
	if want := "04" + strings.ToLower("EC3A4E415B4E19A4568618029F427FA5DA9A8BC4AE92E02E06AAE5286B300C64DEF8F0EA9055866064A254515480BC13"+
		"8015D9B72D7D57244EA8EF9AC0C621896708A59367F9DFB9F54CA84B3F1C9DB1288B231C3AE0D4FE7344FD2533264720"); hex.EncodeToString(pub) != want {
		t.Fatalf("public key %x", pub)
	}
	sig, err := signDeterministic(k, []byte("sample"))
	if err != nil {
		t.Fatal(err)
	}
	wantR, _ := new(big.Int).SetString("94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46", 16)
	wantS, _ := new(big.Int).SetString("99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8", 16)
	if leInt(sig.R[:]).Cmp(wantR) != 0 || leInt(sig.S[:]).Cmp(wantS) != 0 {
		t.Errorf("r=%X s=%X, want RFC 6979 values", leInt(sig.R[:]), leInt(sig.S[:]))
	}
}

func TestKeylessIDAuth(t *testing.T) {
	d := Digest(sha512.Sum384([]byte("some launch")))
	blk := NewIDBlock(d, 0x30000)
	a, err := KeylessIDAuth(blk)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(blk); err != nil {
		t.Fatal(err)
	}
	if a.HasAuthorKey() {
		t.Error("key-less mode has an author key")
	}
	out := a.Marshal()
	// Recreated from the block alone: identical bytes.
	b, _ := KeylessIDAuth(NewIDBlock(d, 0x30000))
	if !bytes.Equal(out, b.Marshal()) {
		t.Error("key-less ID auth is not reproducible")
	}
	// Fixed signature, key depends on the block.
	other, _ := KeylessIDAuth(NewIDBlock(d, 0x3001f))
	if other.BlockSignature != a.BlockSignature {
		t.Error("signature is not fixed")
	}
	if other.IDKey == a.IDKey {
		t.Error("different blocks recover the same key")
	}
	if keylessS().Sign() == 0 {
		t.Error("s is zero")
	}
	// The structure round-trips and the key is on the curve.
	back, err := UnmarshalIDAuth(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(blk); err != nil {
		t.Fatal(err)
	}
	// Golden: pins the label, the fixed (r, s) and the recovery, so a
	// change that would alter every published key-less ID block fails here.
	if want := "5ec22fbd75a81ae867ea0d5abe3837aa1478c36c9e33f85e90820fda38be0bb06a0ee8cfe4038afd92ac4a6f2bcecc72"; a.IDKeyDigest().String() != want {
		t.Errorf("key-less ID key digest %s, want %s", a.IDKeyDigest(), want)
	}
	// A changed block does not verify, with an error that says so.
	bad := *blk
	bad.GuestSVN = 1
	if err := a.Verify(&bad); !errors.Is(err, ErrSignature) {
		t.Errorf("changed block: %v, want ErrSignature", err)
	}
}

func TestIDBlockRoundTrip(t *testing.T) {
	blk := &IDBlock{Version: 1, GuestSVN: 7, Policy: GuestPolicy(0x3001f)}
	blk.Digest[0], blk.FamilyID[1], blk.ImageID[2] = 9, 8, 7
	back, err := UnmarshalIDBlock(blk.Marshal())
	if err != nil || *back != *blk {
		t.Fatalf("%v %+v", err, back)
	}
	var fe *IDFormatError
	if _, err := UnmarshalIDBlock(make([]byte, 95)); !errors.As(err, &fe) {
		t.Errorf("short block: %v", err)
	}
	if _, err := UnmarshalIDAuth(make([]byte, IDAuthSize)); !errors.As(err, &fe) || fe.Field != "id_key_algo" {
		t.Errorf("zero ID auth: %v", err)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for name, data := range map[string]string{
		"no pem":       "hello",
		"wrong pem":    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"bad sec1":     "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
		"params only":  "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n",
		"P-256 params": "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
	} {
		if _, err := ParsePrivateKeyPEM([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignIDBlock(NewIDBlock(Digest{}, 0x30000), k, nil); err == nil {
		t.Error("P-256 key accepted")
	}
}

// `openssl ecparam -name secp384r1 -genkey -out k.pem` writes an "EC
// PARAMETERS" block before the key; the README told users to make their ID
// key that way and the parser used to stop at the first block. The key is
// made by openssl when it is installed, and in Go the same way otherwise.
func TestParseKeyWithECParameters(t *testing.T) {
	var data []byte
	if openssl, err := exec.LookPath("openssl"); err == nil {
		p := filepath.Join(t.TempDir(), "k.pem")
		if out, err := exec.Command(openssl, "ecparam", "-name", "secp384r1", "-genkey", "-out", p).CombinedOutput(); err != nil {
			t.Fatalf("openssl: %v: %s", err, out)
		}
		if data, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		params := []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22} // OID secp384r1
		data = append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	if !strings.HasPrefix(string(data), "-----BEGIN EC PARAMETERS-----") {
		t.Fatalf("key file does not start with EC PARAMETERS: %.60q", data)
	}
	k, err := ParsePrivateKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := SignIDBlock(NewIDBlock(Digest{1}, 0x30000), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(NewIDBlock(Digest{1}, 0x30000)); err != nil {
		t.Fatal(err)
	}
	// A parameters block naming another curve is refused even before a
	// P-384 key.
	p256 := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	if _, err := ParsePrivateKeyPEM(append(p256, data...)); err == nil || !strings.Contains(err.Error(), "secp384r1") {
		t.Errorf("P-256 parameters: %v", err)
	}
}

// FuzzIDAuth decodes fuzzed ID authentication structures and ID blocks.
// Signatures cannot be repaired without the key, so besides the raw
// structure the target re-signs the fuzzed ID block (key-less, and with a
// fixed key): mutations of the block then reach the code behind a valid
// signature (verification, key recovery, the author key path). Memory
// stays proportional to the input.
func FuzzIDAuth(f *testing.F) {
	blk := NewIDBlock(Digest{1}, 0x30000)
	a, err := KeylessIDAuth(blk)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blk.Marshal(), a.Marshal(), true)
	f.Add(make([]byte, IDBlockSize), make([]byte, 16), false)
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), bytes.Repeat([]byte{7}, 48))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, blockBytes, authBytes []byte, author bool) {
		block := make([]byte, IDBlockSize)
		copy(block, blockBytes)
		auth := make([]byte, IDAuthSize)
		copy(auth, authBytes)
		fuzzbound.Check(t, append(block, auth...), 4, 1<<20, func() {
			b, err := UnmarshalIDBlock(block)
			if err != nil {
				t.Fatal(err)
			}
			if a, err := UnmarshalIDAuth(auth); err == nil {
				if !bytes.Equal(a.Marshal()[:8], auth[:8]) {
					t.Fatal("decoded ID auth does not re-encode its algorithms")
				}
				_ = a.Verify(b)
			} else {
				var fe *IDFormatError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not an IDFormatError", err)
				}
			}
			k, err := KeylessIDAuth(b)
			if err != nil {
				t.Fatalf("key-less signing of %x: %v", block, err)
			}
			var authorKey *ecdsa.PrivateKey
			if author {
				authorKey = key
			}
			s, err := SignIDBlock(b, key, authorKey)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range []*IDAuth{k, s} {
				back, err := UnmarshalIDAuth(x.Marshal())
				if err != nil || *back != *x {
					t.Fatalf("round trip: %v", err)
				}
				if err := back.Verify(b); err != nil {
					t.Fatalf("fresh signature: %v", err)
				}
			}
		})
	})
}
