package measure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// resign writes the signed file (SignedIGVM.WriteIGVM, as "imagebuilder
// igvm sign" does) and reopens the result.
func resign(t *testing.T, s *SignedIGVM) *igvm.File {
	t.Helper()
	var out bytes.Buffer
	if _, err := s.WriteIGVM(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	nf, err := igvm.Parse(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return nf
}

func TestSignIGVM(t *testing.T) {
	data, err := os.ReadFile("../../testdata/igvm/d03_clh_empty_cpio.igvm")
	if err != nil {
		t.Fatal(err)
	}
	f, err := igvm.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	idKey, authorKey := idbReadKey(t, "id-key.pem"), idbReadKey(t, "author-key.pem")
	for _, tc := range []struct {
		name     string
		id, auth bool
		profile  Profile
	}{
		{"mshv keyless", false, false, ProfileMSHV},
		{"mshv id key", true, false, ProfileMSHV},
		{"mshv id and author keys", true, true, ProfileMSHV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := IGVMSignOptions{Measure: Options{Profile: tc.profile}, GuestSVN: 2}
			o.FamilyID[0] = 0xfa
			if tc.id {
				o.IDKey = idKey
			}
			if tc.auth {
				o.AuthorKey = authorKey
			}
			s, err := SignIGVM(context.Background(), f, o)
			if err != nil {
				t.Fatal(err)
			}
			nf := resign(t, s)
			blk, auth, err := VerifyIGVMIDBlock(context.Background(), nf, o.Measure)
			if err != nil {
				t.Fatal(err)
			}
			if *blk != *s.Block {
				t.Errorf("ID block read back %+v, want %+v", blk, s.Block)
			}
			if auth.HasAuthorKey() != tc.auth {
				t.Errorf("author key present: %v", auth.HasAuthorKey())
			}
			// Signing the signed file again gives the same header:
			// the ID block does not enter the digest and signing is deterministic.
			s2, err := SignIGVM(context.Background(), nf, o)
			if err != nil {
				t.Fatal(err)
			}
			if *s2.Header != *s.Header {
				t.Error("re-signing changed the header")
			}
			// The digest in the ID block is the measured one.
			res, err := MeasureIGVM(context.Background(), nf, o.Measure)
			if err != nil {
				t.Fatal(err)
			}
			if res.IDBlockDigest == nil || *res.IDBlockDigest != res.Digest {
				t.Errorf("ID block digest %v, measured %s", res.IDBlockDigest, res.Digest)
			}
		})
	}
	// Golden headers: the SHA-256 of the SNP_ID_BLOCK body for d03 (mshv,
	// policy 0x3001f), key-less and with the vector's ID key.
	for _, g := range []struct {
		key  *ecdsa.PrivateKey
		want string
	}{{nil, "638196401bc79c81ac6d374d14661a5ee6fec389a16d4bf86b384cc99df42369"}, {idKey, "45d111e12242976b8e79b3295720d20c3b1cc751ca29cc7af5c4370298f4671b"}} {
		s, err := SignIGVM(context.Background(), f, IGVMSignOptions{Measure: Options{Profile: ProfileMSHV}, IDKey: g.key})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := binary.Append(nil, binary.LittleEndian, s.Header)
		if got := fmt.Sprintf("%x", sha256.Sum256(body)); got != g.want {
			t.Errorf("header sha256 %s, want %s", got, g.want)
		}
	}
	// The vector's own ID block (from igvm-tooling) is for another digest or
	// key; a wrong profile is caught.
	s, err := SignIGVM(context.Background(), f, IGVMSignOptions{Measure: Options{Profile: ProfileMSHV}})
	if err != nil {
		t.Fatal(err)
	}
	nf := resign(t, s)
	if _, _, err := VerifyIGVMIDBlock(context.Background(), nf, Options{Profile: ProfileKVM, SkipKVMChecks: true}); err == nil || !strings.Contains(err.Error(), "measures") {
		t.Errorf("kvm check of an mshv ID block: %v", err)
	}
	if _, err := SignIGVM(context.Background(), f, IGVMSignOptions{Measure: Options{Profile: ProfileMSHV}, AuthorKey: authorKey}); err == nil {
		t.Error("author key without ID key accepted")
	}
}

// igvmgen signed every igvm-tooling vector with -sign_deterministic true
// and the key inputs/signkey-p384.pem (python-ecdsa's RFC 6979 signing).
// SignIGVM with the same key and the ID block fields igvmgen chose (read
// from each file) must rebuild the file's SNP_ID_BLOCK byte for byte: an
// independent check of the digest, the RFC 6979 nonces, the signature and
// public key layout, and the compatibility mask.
func TestSignIGVMMatchesIgvmgen(t *testing.T) {
	pem, err := os.ReadFile("../../testdata/measure/igvm-signkey-p384.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := snp.ParsePrivateKeyPEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range vectorCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			f := openVector(t, c)
			var orig *igvm.SNPIDBlock
			for _, h := range f.Directives() {
				if x, ok := h.(*igvm.SNPIDBlock); ok {
					orig = x
				}
			}
			if orig == nil {
				t.Fatal("vector has no SNP_ID_BLOCK")
			}
			for run := 0; run < 2; run++ { // deterministic: same bytes twice
				s, err := SignIGVM(context.Background(), f, IGVMSignOptions{
					Measure:  Options{Profile: ProfileMSHV},
					IDKey:    key,
					FamilyID: orig.FamilyID, ImageID: orig.ImageID, GuestSVN: orig.GuestSVN,
				})
				if err != nil {
					t.Fatal(err)
				}
				got, _ := binary.Append(nil, binary.LittleEndian, s.Header)
				want, _ := binary.Append(nil, binary.LittleEndian, orig)
				if string(got) != string(want) {
					t.Fatalf("run %d: SNP_ID_BLOCK differs from igvmgen's (first difference at byte %d)", run, firstDiff(got, want))
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
