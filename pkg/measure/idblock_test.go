package measure

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// goldenIDAuthSHA256 is the SHA-256 of our deterministic ID auth for
// devidb01 (RFC 6979 signatures with id-key.pem and author-key.pem).
const goldenIDAuthSHA256 = "e210588c33a8369297b3811784c3216bc4b7f1a540982cb22050ae70e9d87e06"

type idBlockVector struct {
	Name                  string   `json:"name"`
	FromCase              string   `json:"from_case"`
	MeasurementHex        string   `json:"measurement_hex"`
	IDKey                 string   `json:"idkey"`
	AuthorKey             string   `json:"authorkey"`
	ExpectedIDBlock       string   `json:"expected_id_block_b64"`
	ExpectedIDKeyHash     string   `json:"expected_id_key_hash_b64"`
	ExpectedAuthorKeyHash string   `json:"expected_author_key_hash_b64"`
	SignatureRegions      [][2]int `json:"id_auth_signature_regions"`
	ExpectedIDAuthMasked  string   `json:"expected_id_auth_masked_b64"`
	SampleIDAuth          string   `json:"sample_id_auth_b64"`
}

func idbReadKey(t *testing.T, name string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ovmfTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseP384PrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func idbB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIDBlockVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(ovmfTestdata, "idblock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []idBlockVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	cases := map[string]ovmfCase{}
	for _, c := range loadOVMFCases(t, "cases.json") {
		cases[c.Name] = c
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			d, err := ParseDigest(v.MeasurementHex)
			if err != nil {
				t.Fatal(err)
			}
			// The signed digest is the one we measure for the case it came from.
			c, ok := cases[v.FromCase]
			if !ok {
				t.Fatalf("no case %s", v.FromCase)
			}
			fw, err := ReadOVMF(filepath.Join(ovmfTestdata, c.OVMF))
			if err != nil {
				t.Fatal(err)
			}
			m, err := MeasureOVMF(fw, c.config(t))
			if err != nil {
				t.Fatal(err)
			}
			if m.Digest != d {
				t.Fatalf("measured %s, ID block vector signs %s", m.Digest, d)
			}

			blk := NewIDBlock(m.Digest, 0x30000)
			if got, want := blk.Marshal(), idbB64(t, v.ExpectedIDBlock); !bytes.Equal(got, want) {
				t.Errorf("ID block\n got %x\nwant %x", got, want)
			}
			idKey, authorKey := idbReadKey(t, v.IDKey), idbReadKey(t, v.AuthorKey)
			auth, err := SignIDBlock(blk, idKey, authorKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := auth.Verify(blk); err != nil {
				t.Fatal(err)
			}
			ikh, _ := auth.IDKeyDigest()
			akh, _ := auth.AuthorKeyDigest()
			if got := base64.StdEncoding.EncodeToString(ikh[:]); got != v.ExpectedIDKeyHash {
				t.Errorf("id key hash %s, want %s", got, v.ExpectedIDKeyHash)
			}
			if got := base64.StdEncoding.EncodeToString(akh[:]); got != v.ExpectedAuthorKeyHash {
				t.Errorf("author key hash %s, want %s", got, v.ExpectedAuthorKeyHash)
			}
			out, err := auth.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			masked := append([]byte(nil), out...)
			for _, r := range v.SignatureRegions {
				clear(masked[r[0]:r[1]])
			}
			if want := idbB64(t, v.ExpectedIDAuthMasked); !bytes.Equal(masked, want) {
				t.Errorf("masked ID auth differs from the vector")
			}
			// Golden: RFC 6979 signatures with the vector keys pin the whole structure.
			if got, want := fmt.Sprintf("%x", sha256.Sum256(out)), goldenIDAuthSHA256; got != want {
				t.Errorf("ID auth sha256 %s, want %s", got, want)
			}
			// Deterministic: signing again gives identical bytes.
			auth2, _ := SignIDBlock(blk, idKey, authorKey)
			out2, _ := auth2.Marshal()
			if !bytes.Equal(out, out2) {
				t.Error("two signatures of the same block differ")
			}
			// The reference tool's (randomized) sample verifies with our parser.
			sample, err := UnmarshalIDAuth(idbB64(t, v.SampleIDAuth))
			if err != nil {
				t.Fatal(err)
			}
			if err := sample.Verify(blk); err != nil {
				t.Errorf("reference sample: %v", err)
			}
			back, err := UnmarshalIDAuth(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := back.Verify(blk); err != nil {
				t.Error(err)
			}
			// A changed block does not verify.
			bad := *blk
			bad.GuestSVN = 1
			if back.Verify(&bad) == nil {
				t.Error("signature verifies over a different block")
			}
		})
	}
}

// RFC 6979 appendix A.2.6, P-384 with SHA-384, message "sample": checks
// that the deterministic signing we rely on is RFC 6979.
func TestRFC6979P384SHA384(t *testing.T) {
	hexInt := func(s string) *big.Int { v, _ := new(big.Int).SetString(s, 16); return v }
	k := &ecdsa.PrivateKey{
		D: hexInt("6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D896D5724E4C70A825F872C9EA60D2EDF5"),
		PublicKey: ecdsa.PublicKey{Curve: elliptic.P384(),
			X: hexInt("EC3A4E415B4E19A4568618029F427FA5DA9A8BC4AE92E02E06AAE5286B300C64DEF8F0EA9055866064A254515480BC13"),
			Y: hexInt("8015D9B72D7D57244EA8EF9AC0C621896708A59367F9DFB9F54CA84B3F1C9DB1288B231C3AE0D4FE7344FD2533264720")},
	}
	sig, err := signDeterministic(k, []byte("sample"))
	if err != nil {
		t.Fatal(err)
	}
	wantR := hexInt("94EDBB92A5ECB8AAD4736E56C691916B3F88140666CE9FA73D64C4EA95AD133C81A648152E44ACF96E36DD1E80FABE46")
	wantS := hexInt("99EF4AEB15F178CEA1FE40DB2603138F130E740A19624526203B6351D0A3A94FA329C145786E679E7B82C71A38628AC8")
	if sig.R.Cmp(wantR) != 0 || sig.S.Cmp(wantS) != 0 {
		t.Errorf("r=%X s=%X, want RFC 6979 values", sig.R, sig.S)
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
	if a.AuthorKey != nil {
		t.Error("key-less mode has an author key")
	}
	out, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Recreated from the block alone: identical bytes.
	b, _ := KeylessIDAuth(NewIDBlock(d, 0x30000))
	out2, _ := b.Marshal()
	if !bytes.Equal(out, out2) {
		t.Error("key-less ID auth is not reproducible")
	}
	// Fixed signature, key depends on the block.
	other, _ := KeylessIDAuth(NewIDBlock(d, 0x3001f))
	if other.BlockSig.R.Cmp(a.BlockSig.R) != 0 || other.BlockSig.S.Cmp(a.BlockSig.S) != 0 {
		t.Error("signature is not fixed")
	}
	if other.IDKey.Equal(a.IDKey) {
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
	kd, _ := a.IDKeyDigest()
	if want := "5ec22fbd75a81ae867ea0d5abe3837aa1478c36c9e33f85e90820fda38be0bb06a0ee8cfe4038afd92ac4a6f2bcecc72"; kd.String() != want {
		t.Errorf("key-less ID key digest %s, want %s", kd, want)
	}
}

func TestIGVMSNPIDBlock(t *testing.T) {
	blk := NewIDBlock(Digest(sha512.Sum384([]byte("x"))), 0x30000)
	blk.FamilyID[0], blk.ImageID[15], blk.GuestSVN = 1, 2, 3
	idKey, authorKey := idbReadKey(t, "id-key.pem"), idbReadKey(t, "author-key.pem")
	for _, author := range []*ecdsa.PrivateKey{nil, authorKey} {
		a, err := SignIDBlock(blk, idKey, author)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := IGVMSNPIDBlock(0x1, blk, a)
		if err != nil {
			t.Fatal(err)
		}
		body, err := binary.Append(nil, binary.LittleEndian, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) != IGVMSNPIDBlockSize {
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
		mask, b2, a2, err := ParseIGVMSNPIDBlock(hdr, blk.Policy)
		if err != nil {
			t.Fatal(err)
		}
		if mask != 1 || *b2 != *blk {
			t.Errorf("round trip: mask %d block %+v", mask, b2)
		}
		if err := a2.Verify(b2); err != nil {
			t.Error(err)
		}
		// The same keys in the AMD ID auth layout: qx starts 4 bytes after
		// the curve there, 8 in IGVM.
		auth, _ := a.Marshal()
		if !bytes.Equal(auth[0x244:0x244+144], body[0x100:0x100+144]) {
			t.Error("ID key differs between ID auth and IGVM forms")
		}
	}
	if _, _, _, err := parseIGVMSNPIDBlockBytes(make([]byte, 10), 0); err == nil {
		t.Error("short body accepted")
	}
}

func TestIDBlockRoundTrip(t *testing.T) {
	blk := &IDBlock{Version: 1, GuestSVN: 7, Policy: snp.GuestPolicy(0x3001f)}
	blk.Digest[0], blk.FamilyID[1], blk.ImageID[2] = 9, 8, 7
	back, err := UnmarshalIDBlock(blk.Marshal())
	if err != nil || *back != *blk {
		t.Fatalf("%v %+v", err, back)
	}
	if _, err := UnmarshalIDBlock(make([]byte, 95)); err == nil {
		t.Error("short block accepted")
	}
}

func TestParseKeyErrors(t *testing.T) {
	for name, data := range map[string]string{
		"no pem":    "hello",
		"wrong pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"bad sec1":  "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
	} {
		if _, err := ParseP384PrivateKeyPEM([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignIDBlock(NewIDBlock(Digest{}, 0x30000), k, nil); err == nil {
		t.Error("P-256 key accepted")
	}
}

// FuzzIDAuthParse feeds arbitrary bytes to the ID auth and IGVM ID block
// decoders: they must return an error or a structure that re-encodes.
func FuzzIDAuthParse(f *testing.F) {
	blk := NewIDBlock(Digest{1}, 0x30000)
	a, err := KeylessIDAuth(blk)
	if err != nil {
		f.Fatal(err)
	}
	auth, _ := a.Marshal()
	f.Add(auth)
	hdr, _ := IGVMSNPIDBlock(1, blk, a)
	body, _ := binary.Append(nil, binary.LittleEndian, hdr)
	f.Add(append(body, make([]byte, IDAuthSize-len(body))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < IDAuthSize {
			data = append(data, make([]byte, IDAuthSize-len(data))...)
		}
		data = data[:IDAuthSize]
		if a, err := UnmarshalIDAuth(data); err == nil {
			if _, err := a.Marshal(); err != nil {
				t.Fatalf("decoded ID auth does not re-encode: %v", err)
			}
			_ = a.Verify(blk)
		}
		if _, b, a, err := parseIGVMSNPIDBlockBytes(data[:IGVMSNPIDBlockSize], 0x30000); err == nil {
			if _, err := IGVMSNPIDBlock(1, b, a); err != nil {
				t.Fatalf("decoded IGVM ID block does not re-encode: %v", err)
			}
			_ = a.Verify(b)
		}
	})
}
