package snp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// The SEV-SNP ID block and ID authentication information structure
// (SEV-SNP firmware ABI, SNP_LAUNCH_FINISH, tables "ID_BLOCK" and
// "ID_AUTHENTICATION_INFORMATION"). The firmware checks at launch that the
// ID block's digest and policy match the guest, and that the block is
// signed by the ID key (whose SHA-384 lands in the attestation report as
// ID_KEY_DIGEST), optionally itself signed by an author key. This file is
// the one owner of those structures and of their signature check: IGVM
// files carry the same values in their SNP_ID_BLOCK header (pkg/igvm
// converts), measurements sign them (pkg/measure), inspect verifies them.

// Sizes of the ID block structures.
const (
	DigestSize    = 48     // SHA-384
	IDBlockSize   = 0x60   // the 96-byte ID block
	IDAuthSize    = 0x1000 // the 4 KiB ID authentication information
	PublicKeySize = 0x404  // curve u32, qx[72], qy[72], reserved
	SignatureSize = 0x200  // r[72], s[72], reserved
	// ECDSAComponentSize is the size of r, s, qx and qy in the ABI:
	// little-endian, zero padded.
	ECDSAComponentSize = 72
)

// Algorithm and curve codes of the ID authentication structure.
const (
	AlgoNone            = 0 // no author key
	AlgoECDSAP384SHA384 = 1 // ECDSA P-384 with SHA-384
	CurveP384           = 2
)

// Digest is a 48-byte SEV-SNP launch digest (or a page contents hash, or a
// key digest): SHA-384.
type Digest [DigestSize]byte

// String returns the digest as lowercase hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as hex (for JSON).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a hex digest.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest decodes a 96-character hex digest (an optional 0x prefix is
// accepted).
func ParseDigest(s string) (Digest, error) {
	var d Digest
	t := strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(t)
	if err != nil {
		return d, fmt.Errorf("snp: digest %q: not hex", s)
	}
	if len(b) != DigestSize {
		return d, fmt.Errorf("snp: digest has %d bytes, want %d", len(b), DigestSize)
	}
	copy(d[:], b)
	return d, nil
}

// IDBlock is the 96-byte SNP ID block.
type IDBlock struct {
	Digest   Digest      // expected launch digest @0x00
	FamilyID [16]byte    // @0x30
	ImageID  [16]byte    // @0x40
	Version  uint32      // 1 @0x50
	GuestSVN uint32      // @0x54
	Policy   GuestPolicy // must equal the launch policy @0x58
}

// NewIDBlock returns the ID block for a digest and policy with zero family
// and image ids, version 1 and guest SVN 0 (what snp-create-id-block of
// sev-snp-measure writes, with its fixed policy 0x30000).
func NewIDBlock(d Digest, policy GuestPolicy) *IDBlock {
	return &IDBlock{Digest: d, Version: 1, Policy: policy}
}

// Marshal encodes the ID block (96 bytes).
func (b *IDBlock) Marshal() []byte {
	out := make([]byte, IDBlockSize)
	copy(out[0x00:], b.Digest[:])
	copy(out[0x30:], b.FamilyID[:])
	copy(out[0x40:], b.ImageID[:])
	binary.LittleEndian.PutUint32(out[0x50:], b.Version)
	binary.LittleEndian.PutUint32(out[0x54:], b.GuestSVN)
	binary.LittleEndian.PutUint64(out[0x58:], uint64(b.Policy))
	return out
}

// UnmarshalIDBlock decodes a 96-byte ID block.
func UnmarshalIDBlock(data []byte) (*IDBlock, error) {
	if len(data) != IDBlockSize {
		return nil, &IDFormatError{Msg: fmt.Sprintf("ID block of %d bytes, want %d", len(data), IDBlockSize)}
	}
	b := &IDBlock{
		Version:  binary.LittleEndian.Uint32(data[0x50:]),
		GuestSVN: binary.LittleEndian.Uint32(data[0x54:]),
		Policy:   GuestPolicy(binary.LittleEndian.Uint64(data[0x58:])),
	}
	copy(b.Digest[:], data[0x00:])
	copy(b.FamilyID[:], data[0x30:])
	copy(b.ImageID[:], data[0x40:])
	return b, nil
}

// Signature is an ECDSA signature as the ABI stores it: r and s
// little-endian, each zero padded to 72 bytes (then reserved bytes up to
// SignatureSize).
type Signature struct {
	R, S [ECDSAComponentSize]byte
}

// PublicKey is an ECDSA public key as the ABI stores it: the curve, then
// qx and qy little-endian, zero padded to 72 bytes (then reserved bytes up
// to PublicKeySize).
type PublicKey struct {
	Curve  uint32
	QX, QY [ECDSAComponentSize]byte
}

// NewPublicKey encodes a P-384 public key.
func NewPublicKey(pub *ecdsa.PublicKey) (PublicKey, error) {
	if err := checkP384(pub); err != nil {
		return PublicKey{}, err
	}
	raw, err := pub.Bytes() // 0x04 || X || Y, 48 bytes each
	if err != nil {
		return PublicKey{}, fmt.Errorf("snp: public key: %w", err)
	}
	k := PublicKey{Curve: CurveP384}
	putLE(k.QX[:], raw[1:49])
	putLE(k.QY[:], raw[49:97])
	return k, nil
}

// ECDSA decodes the key: curve P-384 and a point on it.
func (k PublicKey) ECDSA() (*ecdsa.PublicKey, error) {
	if k.Curve != CurveP384 {
		return nil, fmt.Errorf("curve %d, want %d (P-384)", k.Curve, CurveP384)
	}
	x, okX := getLE48(k.QX[:])
	y, okY := getLE48(k.QY[:])
	if !okX || !okY {
		return nil, errors.New("public key coordinate wider than 384 bits")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), slices.Concat([]byte{4}, x, y))
	if err != nil {
		return nil, errors.New("public key is not a point on P-384")
	}
	return pub, nil
}

// Marshal encodes the key in its PublicKeySize-byte ABI form.
func (k PublicKey) Marshal() []byte {
	out := make([]byte, PublicKeySize)
	binary.LittleEndian.PutUint32(out, k.Curve)
	copy(out[4:], k.QX[:])
	copy(out[4+ECDSAComponentSize:], k.QY[:])
	return out
}

// Digest is SHA-384 of the key's ABI form: what attestation reports carry
// as ID_KEY_DIGEST and AUTHOR_KEY_DIGEST.
func (k PublicKey) Digest() Digest { return sha512.Sum384(k.Marshal()) }

// IDAuth is the ID authentication information: the ID block signed by the
// ID key and, with an author key, the ID key signed by the author key.
type IDAuth struct {
	IDKeyAlgorithm     uint32    // @0x000, AlgoECDSAP384SHA384
	AuthorKeyAlgorithm uint32    // @0x004, AlgoNone without an author key
	BlockSignature     Signature // @0x040, over the ID block, by IDKey
	IDKey              PublicKey // @0x240
	IDKeySignature     Signature // @0x680, over IDKey's ABI form, by AuthorKey
	AuthorKey          PublicKey // @0x880
}

// HasAuthorKey reports whether the ID key is signed by an author key.
func (a *IDAuth) HasAuthorKey() bool { return a.AuthorKeyAlgorithm != AlgoNone }

// Marshal encodes the 4 KiB ID authentication structure; reserved bytes
// are zero.
func (a *IDAuth) Marshal() []byte {
	out := make([]byte, IDAuthSize)
	binary.LittleEndian.PutUint32(out[0:], a.IDKeyAlgorithm)
	binary.LittleEndian.PutUint32(out[4:], a.AuthorKeyAlgorithm)
	putSignature(out[0x40:], a.BlockSignature)
	copy(out[0x240:], a.IDKey.Marshal())
	if a.HasAuthorKey() {
		putSignature(out[0x680:], a.IDKeySignature)
		copy(out[0x880:], a.AuthorKey.Marshal())
	}
	return out
}

// UnmarshalIDAuth decodes a 4 KiB ID authentication structure and checks
// it (see Check); it does not verify the signatures (see Verify).
func UnmarshalIDAuth(data []byte) (*IDAuth, error) {
	if len(data) != IDAuthSize {
		return nil, &IDFormatError{Msg: fmt.Sprintf("ID auth of %d bytes, want %d", len(data), IDAuthSize)}
	}
	a := &IDAuth{
		IDKeyAlgorithm:     binary.LittleEndian.Uint32(data[0:]),
		AuthorKeyAlgorithm: binary.LittleEndian.Uint32(data[4:]),
		BlockSignature:     getSignature(data[0x40:]),
		IDKey:              getPublicKey(data[0x240:]),
	}
	if a.HasAuthorKey() {
		a.IDKeySignature = getSignature(data[0x680:])
		a.AuthorKey = getPublicKey(data[0x880:])
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	return a, nil
}

// IDFormatError reports an ID block or ID authentication structure the
// firmware would not accept: a wrong size, algorithm or curve, or a key
// that is not a point on P-384.
type IDFormatError struct {
	Field string // "id_key_algo", "id_key", ... or "" for the structure
	Msg   string
}

func (e *IDFormatError) Error() string {
	if e.Field == "" {
		return "snp: " + e.Msg
	}
	return "snp: ID auth " + e.Field + ": " + e.Msg
}

// ErrSignature is wrapped by Verify's error when a signature does not
// verify.
var ErrSignature = errors.New("signature does not verify")

// Check reports what the firmware would refuse in the structure itself:
// the algorithms (ECDSA P-384 with SHA-384, the author's also none) and
// the keys (curve P-384, points on it).
func (a *IDAuth) Check() error {
	if a.IDKeyAlgorithm != AlgoECDSAP384SHA384 {
		return &IDFormatError{Field: "id_key_algo", Msg: fmt.Sprintf("%d, want %d (ECDSA P-384 SHA-384)", a.IDKeyAlgorithm, AlgoECDSAP384SHA384)}
	}
	if _, err := a.IDKey.ECDSA(); err != nil {
		return &IDFormatError{Field: "id_key", Msg: err.Error()}
	}
	switch a.AuthorKeyAlgorithm {
	case AlgoNone:
	case AlgoECDSAP384SHA384:
		if _, err := a.AuthorKey.ECDSA(); err != nil {
			return &IDFormatError{Field: "author_key", Msg: err.Error()}
		}
	default:
		return &IDFormatError{Field: "auth_key_algo", Msg: fmt.Sprintf("%d, want 0 or 1", a.AuthorKeyAlgorithm)}
	}
	return nil
}

// Verify checks the structure (Check), the ID block signature and, with an
// author key, the ID key signature. A signature that does not verify gives
// an error wrapping ErrSignature.
func (a *IDAuth) Verify(b *IDBlock) error {
	if err := a.Check(); err != nil {
		return err
	}
	id, _ := a.IDKey.ECDSA()
	if !verify(id, b.Marshal(), a.BlockSignature) {
		return fmt.Errorf("snp: ID block %w with the ID key", ErrSignature)
	}
	if a.HasAuthorKey() {
		author, _ := a.AuthorKey.ECDSA()
		if !verify(author, a.IDKey.Marshal(), a.IDKeySignature) {
			return fmt.Errorf("snp: ID key %w with the author key", ErrSignature)
		}
	}
	return nil
}

// IDKeyDigest is what the attestation report carries as ID_KEY_DIGEST.
func (a *IDAuth) IDKeyDigest() Digest { return a.IDKey.Digest() }

// AuthorKeyDigest is the report's AUTHOR_KEY_DIGEST (zero without an
// author key).
func (a *IDAuth) AuthorKeyDigest() Digest {
	if !a.HasAuthorKey() {
		return Digest{}
	}
	return a.AuthorKey.Digest()
}

func verify(pub *ecdsa.PublicKey, msg []byte, sig Signature) bool {
	h := sha512.Sum384(msg)
	r, s := leInt(sig.R[:]), leInt(sig.S[:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// SignIDBlock signs the ID block with idKey, and idKey's public key with
// authorKey when it is not nil. Signatures are deterministic (RFC 6979 with
// SHA-384), so the same block and keys always give the same bytes. Both
// keys must be P-384.
func SignIDBlock(b *IDBlock, idKey, authorKey *ecdsa.PrivateKey) (*IDAuth, error) {
	if idKey == nil {
		return nil, errors.New("snp: no ID key")
	}
	a := &IDAuth{IDKeyAlgorithm: AlgoECDSAP384SHA384}
	var err error
	if a.IDKey, err = NewPublicKey(&idKey.PublicKey); err != nil {
		return nil, fmt.Errorf("snp: ID key: %w", err)
	}
	if a.BlockSignature, err = signDeterministic(idKey, b.Marshal()); err != nil {
		return nil, fmt.Errorf("snp: signing the ID block: %w", err)
	}
	if authorKey != nil {
		a.AuthorKeyAlgorithm = AlgoECDSAP384SHA384
		if a.AuthorKey, err = NewPublicKey(&authorKey.PublicKey); err != nil {
			return nil, fmt.Errorf("snp: author key: %w", err)
		}
		if a.IDKeySignature, err = signDeterministic(authorKey, a.IDKey.Marshal()); err != nil {
			return nil, fmt.Errorf("snp: signing the ID key: %w", err)
		}
	}
	return a, nil
}

// ecdsaSig is the ASN.1 form crypto/ecdsa signs into.
type ecdsaSig struct{ R, S *big.Int }

func signDeterministic(k *ecdsa.PrivateKey, msg []byte) (Signature, error) {
	h := sha512.Sum384(msg)
	// A nil rand makes crypto/ecdsa sign deterministically (RFC 6979)
	// with the given hash function.
	der, err := k.Sign(nil, h[:], crypto.SHA384)
	if err != nil {
		return Signature{}, err
	}
	var rs ecdsaSig
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		return Signature{}, err
	}
	var sig Signature
	putBigLE(sig.R[:], rs.R)
	putBigLE(sig.S[:], rs.S)
	return sig, nil
}

// KeylessIDAuth signs the ID block without any secret: the signature is a
// fixed (r, s) pair and the ID public key is the one recovered from it and
// the block's SHA-384 (ECDSA public key recovery), Q = r⁻¹(s·R − e·G) where
// R is the fixed point with x = r and even y. Nobody knows the private key
// (R's discrete logarithm is unknown: its x coordinate is derived from a
// hash), yet anyone can recreate the identical ID authentication structure
// from the ID block alone. There is no author key.
func KeylessIDAuth(b *IDBlock) (*IDAuth, error) {
	// The point arithmetic below is on public values only (a fixed point
	// and a message hash), so the constant-time concerns behind the
	// deprecation of crypto/elliptic's low-level API do not apply, and
	// crypto/ecdh offers no point addition.
	c := elliptic.P384()
	params := c.Params()
	R := keylessR()
	r, s := new(big.Int).Set(R.x), keylessS()
	h := sha512.Sum384(b.Marshal())
	e := new(big.Int).SetBytes(h[:]) // P-384's order is 384 bits: no truncation
	// sR - eG = sR + (n - e mod n)G
	sRx, sRy := c.ScalarMult(R.x, R.y, s.Bytes()) //lint:ignore SA1019 public values, see above
	negE := new(big.Int).Sub(params.N, new(big.Int).Mod(e, params.N))
	negE.Mod(negE, params.N)
	px, py := sRx, sRy
	if negE.Sign() != 0 {
		eGx, eGy := c.ScalarBaseMult(negE.Bytes()) //lint:ignore SA1019 public values, see above
		px, py = c.Add(sRx, sRy, eGx, eGy)         //lint:ignore SA1019 public values, see above
	}
	rInv := new(big.Int).ModInverse(r, params.N)
	qx, qy := c.ScalarMult(px, py, rInv.Bytes()) //lint:ignore SA1019 public values, see above
	if qx.Sign() == 0 && qy.Sign() == 0 {
		return nil, errors.New("snp: key-less ID block: recovered key is the point at infinity")
	}
	a := &IDAuth{IDKeyAlgorithm: AlgoECDSAP384SHA384, IDKey: PublicKey{Curve: CurveP384}}
	putBigLE(a.BlockSignature.R[:], r)
	putBigLE(a.BlockSignature.S[:], s)
	putBigLE(a.IDKey.QX[:], qx)
	putBigLE(a.IDKey.QY[:], qy)
	if err := a.Verify(b); err != nil {
		return nil, fmt.Errorf("snp: key-less ID block: %w", err)
	}
	return a, nil
}

type point struct{ x, y *big.Int }

// keylessLabel seeds the fixed signature of KeylessIDAuth. Changing it
// changes every key-less ID block.
const keylessLabel = "imagebuilder SEV-SNP key-less ID block v1"

// keylessR returns the first point whose x coordinate is
// SHA-384(label || " R" || counter u32 BE) for counter = 0, 1, ... that is
// on P-384 and below the group order, with the even y.
func keylessR() point {
	params := elliptic.P384().Params()
	for i := uint32(0); ; i++ {
		h := sha512.Sum384(binary.BigEndian.AppendUint32([]byte(keylessLabel+" R"), i))
		x := new(big.Int).SetBytes(h[:])
		if x.Cmp(params.N) >= 0 || x.Sign() == 0 {
			continue
		}
		// y² = x³ - 3x + b
		y2 := new(big.Int).Exp(x, big.NewInt(3), params.P)
		y2.Sub(y2, new(big.Int).Mul(big.NewInt(3), x))
		y2.Add(y2, params.B)
		y2.Mod(y2, params.P)
		y := new(big.Int).ModSqrt(y2, params.P)
		if y == nil {
			continue
		}
		if y.Bit(0) == 1 {
			y.Sub(params.P, y)
		}
		return point{x, y}
	}
}

// keylessS returns SHA-384(label || " S") reduced modulo the group order.
func keylessS() *big.Int {
	h := sha512.Sum384([]byte(keylessLabel + " S"))
	s := new(big.Int).SetBytes(h[:])
	return s.Mod(s, elliptic.P384().Params().N) // nonzero for this label (checked by tests)
}

// oidSecp384r1 names P-384 in an "EC PARAMETERS" PEM block (RFC 5480).
var oidSecp384r1 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}

// ParsePrivateKeyPEM parses a P-384 private key in PEM, either SEC1 ("EC
// PRIVATE KEY") or PKCS #8 ("PRIVATE KEY"). An "EC PARAMETERS" block
// before it, as `openssl ecparam -name secp384r1 -genkey` writes, is
// skipped once checked to name P-384.
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	rest := data
	for {
		blk, next := pem.Decode(rest)
		if blk == nil {
			if len(rest) == len(data) {
				return nil, errors.New("snp: no PEM block in the key file")
			}
			return nil, errors.New("snp: no private key PEM block in the key file (only EC PARAMETERS)")
		}
		rest = next
		var k *ecdsa.PrivateKey
		switch blk.Type {
		case "EC PARAMETERS":
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(blk.Bytes, &oid); err != nil {
				return nil, fmt.Errorf("snp: EC PARAMETERS: not a named curve: %w", err)
			}
			if !oid.Equal(oidSecp384r1) {
				return nil, fmt.Errorf("snp: EC PARAMETERS name curve %v, want secp384r1 (%v): SEV-SNP ID keys are ECDSA P-384", oid, oidSecp384r1)
			}
			continue
		case "EC PRIVATE KEY":
			var err error
			if k, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
				return nil, fmt.Errorf("snp: EC private key: %w", err)
			}
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("snp: PKCS #8 private key: %w", err)
			}
			var ok bool
			if k, ok = key.(*ecdsa.PrivateKey); !ok {
				return nil, fmt.Errorf("snp: key is a %T, want an ECDSA P-384 key", key)
			}
		default:
			return nil, fmt.Errorf("snp: PEM block %q, want \"EC PRIVATE KEY\" or \"PRIVATE KEY\"", blk.Type)
		}
		if err := checkP384(&k.PublicKey); err != nil {
			return nil, err
		}
		return k, nil
	}
}

func checkP384(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.Curve == nil || pub.Curve.Params().Name != "P-384" {
		return errors.New("snp: key is not on P-384 (SEV-SNP ID keys are ECDSA P-384)")
	}
	return nil
}

// putLE writes the big-endian bytes be into dst little-endian (dst is at
// least as long).
func putLE(dst, be []byte) {
	clear(dst)
	for i, c := range be {
		dst[len(be)-1-i] = c
	}
}

// putBigLE writes v little-endian into dst, zero padded.
func putBigLE(dst []byte, v *big.Int) { putLE(dst, v.FillBytes(make([]byte, len(dst)))) }

// leInt decodes a little-endian integer.
func leInt(b []byte) *big.Int {
	be := slices.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

// getLE48 returns the big-endian 48-byte form of a little-endian 72-byte
// coordinate, and false if it does not fit in 48 bytes.
func getLE48(le []byte) ([]byte, bool) {
	for _, c := range le[48:] {
		if c != 0 {
			return nil, false
		}
	}
	be := slices.Clone(le[:48])
	slices.Reverse(be)
	return be, true
}

func putSignature(dst []byte, s Signature) {
	copy(dst, s.R[:])
	copy(dst[ECDSAComponentSize:], s.S[:])
}

func getSignature(src []byte) Signature {
	var s Signature
	copy(s.R[:], src)
	copy(s.S[:], src[ECDSAComponentSize:])
	return s
}

func getPublicKey(src []byte) PublicKey {
	k := PublicKey{Curve: binary.LittleEndian.Uint32(src)}
	copy(k.QX[:], src[4:])
	copy(k.QY[:], src[4+ECDSAComponentSize:])
	return k
}
