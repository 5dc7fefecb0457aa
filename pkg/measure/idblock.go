package measure

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// The SEV-SNP ID block and ID authentication information structure
// (SEV-SNP firmware ABI, SNP_LAUNCH_FINISH, tables "ID_BLOCK" and
// "ID_AUTHENTICATION_INFORMATION"). The firmware checks at launch that the
// ID block's digest and policy match the guest, and that the block is
// signed by the ID key (whose SHA-384 lands in the attestation report as
// ID_KEY_DIGEST), optionally itself signed by an author key.

// Sizes of the ID block structures.
const (
	IDBlockSize        = 0x60   // 96-byte ID block
	IDAuthSize         = 0x1000 // 4 KiB ID authentication information
	IDPublicKeySize    = 0x404  // AMD public key area: curve u32, qx[72], qy[72], reserved
	idSignatureSize    = 0x200  // r[72], s[72], reserved
	idComponentSize    = 72     // r, s, qx, qy: little-endian, zero padded
	IGVMSNPIDBlockSize = 0x2b8  // body of the IGVM SNP_ID_BLOCK header (type 0x30B)
)

// Algorithm and curve codes of the ID authentication structure.
const (
	IDAlgoNone         = 0 // no author key
	IDAlgoECDSAP384SHA = 1 // ECDSA P-384 with SHA-384
	curveP384          = 2
)

// IGVMHeaderSNPIDBlock is the IGVM header type of IGVM_VHS_SNP_ID_BLOCK.
const IGVMHeaderSNPIDBlock = 0x30B

// IDBlock is the 96-byte SNP ID block.
type IDBlock struct {
	Digest   Digest          // expected launch digest  @0x00
	FamilyID [16]byte        // @0x30
	ImageID  [16]byte        // @0x40
	Version  uint32          // must be 1              @0x50
	GuestSVN uint32          // @0x54
	Policy   snp.GuestPolicy // must equal the launch policy @0x58
}

// NewIDBlock returns the ID block for a digest and policy with zero family
// and image ids, version 1 and guest SVN 0 (what snp-create-id-block of
// sev-snp-measure writes, with its fixed policy 0x30000).
func NewIDBlock(d Digest, policy snp.GuestPolicy) *IDBlock {
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
		return nil, fmt.Errorf("measure: ID block of %d bytes, want %d", len(data), IDBlockSize)
	}
	b := &IDBlock{
		Version:  binary.LittleEndian.Uint32(data[0x50:]),
		GuestSVN: binary.LittleEndian.Uint32(data[0x54:]),
		Policy:   snp.GuestPolicy(binary.LittleEndian.Uint64(data[0x58:])),
	}
	copy(b.Digest[:], data[0x00:])
	copy(b.FamilyID[:], data[0x30:])
	copy(b.ImageID[:], data[0x40:])
	return b, nil
}

// IDSignature is an ECDSA P-384 signature.
type IDSignature struct{ R, S *big.Int }

// IDAuth is the ID authentication information: the ID block signed by the
// ID key, and optionally the ID key signed by an author key.
type IDAuth struct {
	BlockSig  IDSignature      // over the ID block, by IDKey
	IDKey     *ecdsa.PublicKey // P-384
	IDKeySig  IDSignature      // over the ID key area, by AuthorKey (zero without one)
	AuthorKey *ecdsa.PublicKey // nil: no author key
}

// Marshal encodes the 4 KiB ID authentication structure: id_key_algo u32
// @0, auth_key_algo u32 @4, block signature @0x40, ID key @0x240, ID key
// signature @0x680, author key @0x880; everything else zero.
func (a *IDAuth) Marshal() ([]byte, error) {
	out := make([]byte, IDAuthSize)
	binary.LittleEndian.PutUint32(out[0:], IDAlgoECDSAP384SHA)
	if err := putSignature(out[0x40:], a.BlockSig); err != nil {
		return nil, fmt.Errorf("measure: ID block signature: %w", err)
	}
	if err := putPublicKey(out[0x240:], a.IDKey); err != nil {
		return nil, fmt.Errorf("measure: ID key: %w", err)
	}
	if a.AuthorKey != nil {
		binary.LittleEndian.PutUint32(out[4:], IDAlgoECDSAP384SHA)
		if err := putSignature(out[0x680:], a.IDKeySig); err != nil {
			return nil, fmt.Errorf("measure: ID key signature: %w", err)
		}
		if err := putPublicKey(out[0x880:], a.AuthorKey); err != nil {
			return nil, fmt.Errorf("measure: author key: %w", err)
		}
	}
	return out, nil
}

// UnmarshalIDAuth decodes a 4 KiB ID authentication structure. It checks
// the algorithms and that the keys are points on P-384, not the signatures
// (see Verify).
func UnmarshalIDAuth(data []byte) (*IDAuth, error) {
	if len(data) != IDAuthSize {
		return nil, fmt.Errorf("measure: ID auth of %d bytes, want %d", len(data), IDAuthSize)
	}
	if algo := binary.LittleEndian.Uint32(data); algo != IDAlgoECDSAP384SHA {
		return nil, fmt.Errorf("measure: ID auth: id_key_algo %d, want %d (ECDSA P-384 SHA-384)", algo, IDAlgoECDSAP384SHA)
	}
	a := &IDAuth{BlockSig: getSignature(data[0x40:])}
	var err error
	if a.IDKey, err = getPublicKey(data[0x240:]); err != nil {
		return nil, fmt.Errorf("measure: ID auth: ID key: %w", err)
	}
	switch algo := binary.LittleEndian.Uint32(data[4:]); algo {
	case IDAlgoNone:
	case IDAlgoECDSAP384SHA:
		a.IDKeySig = getSignature(data[0x680:])
		if a.AuthorKey, err = getPublicKey(data[0x880:]); err != nil {
			return nil, fmt.Errorf("measure: ID auth: author key: %w", err)
		}
	default:
		return nil, fmt.Errorf("measure: ID auth: auth_key_algo %d, want 0 or 1", algo)
	}
	return a, nil
}

// Verify checks the ID block signature and, with an author key, the ID
// key signature.
func (a *IDAuth) Verify(b *IDBlock) error {
	h := sha512.Sum384(b.Marshal())
	if !ecdsa.Verify(a.IDKey, h[:], a.BlockSig.R, a.BlockSig.S) {
		return errors.New("measure: ID block signature does not verify with the ID key")
	}
	if a.AuthorKey != nil {
		area, err := MarshalIDPublicKey(a.IDKey)
		if err != nil {
			return err
		}
		h := sha512.Sum384(area)
		if !ecdsa.Verify(a.AuthorKey, h[:], a.IDKeySig.R, a.IDKeySig.S) {
			return errors.New("measure: ID key signature does not verify with the author key")
		}
	}
	return nil
}

// IDKeyDigest is what the attestation report carries as ID_KEY_DIGEST:
// SHA-384 of the ID key's 0x404-byte public key area.
func (a *IDAuth) IDKeyDigest() (Digest, error) { return PublicKeyDigest(a.IDKey) }

// AuthorKeyDigest is the report's AUTHOR_KEY_DIGEST (zero without an
// author key).
func (a *IDAuth) AuthorKeyDigest() (Digest, error) {
	if a.AuthorKey == nil {
		return Digest{}, nil
	}
	return PublicKeyDigest(a.AuthorKey)
}

// PublicKeyDigest returns SHA-384 of the AMD public key area of pub.
func PublicKeyDigest(pub *ecdsa.PublicKey) (Digest, error) {
	area, err := MarshalIDPublicKey(pub)
	if err != nil {
		return Digest{}, err
	}
	return sha512.Sum384(area), nil
}

// MarshalIDPublicKey encodes a P-384 public key in the 0x404-byte AMD
// layout: curve u32 = 2, qx[72], qy[72] (little-endian, zero padded), then
// zeros.
func MarshalIDPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	out := make([]byte, IDPublicKeySize)
	if err := putPublicKey(out, pub); err != nil {
		return nil, err
	}
	return out, nil
}

// SignIDBlock signs the ID block with idKey, and idKey's public key area
// with authorKey when it is not nil. Signatures are deterministic (RFC
// 6979 with SHA-384), so the same block and keys always give the same
// bytes. Both keys must be P-384.
func SignIDBlock(b *IDBlock, idKey, authorKey *ecdsa.PrivateKey) (*IDAuth, error) {
	if err := checkP384(&idKey.PublicKey); err != nil {
		return nil, fmt.Errorf("measure: ID key: %w", err)
	}
	a := &IDAuth{IDKey: &idKey.PublicKey}
	var err error
	if a.BlockSig, err = signDeterministic(idKey, b.Marshal()); err != nil {
		return nil, fmt.Errorf("measure: signing ID block: %w", err)
	}
	if authorKey != nil {
		if err := checkP384(&authorKey.PublicKey); err != nil {
			return nil, fmt.Errorf("measure: author key: %w", err)
		}
		area, err := MarshalIDPublicKey(&idKey.PublicKey)
		if err != nil {
			return nil, err
		}
		if a.IDKeySig, err = signDeterministic(authorKey, area); err != nil {
			return nil, fmt.Errorf("measure: signing ID key: %w", err)
		}
		a.AuthorKey = &authorKey.PublicKey
	}
	return a, nil
}

func signDeterministic(k *ecdsa.PrivateKey, msg []byte) (IDSignature, error) {
	h := sha512.Sum384(msg)
	// A nil rand makes crypto/ecdsa sign deterministically (RFC 6979)
	// with the given hash function.
	der, err := k.Sign(nil, h[:], crypto.SHA384)
	if err != nil {
		return IDSignature{}, err
	}
	var sig IDSignature
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return IDSignature{}, err
	}
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
	c := elliptic.P384()
	params := c.Params()
	R := keylessR()
	r, s := new(big.Int).Set(R.x), keylessS()
	h := sha512.Sum384(b.Marshal())
	e := new(big.Int).SetBytes(h[:]) // P-384 order is 384 bits: no truncation
	// sR - eG = sR + (n - e mod n)G
	sRx, sRy := c.ScalarMult(R.x, R.y, s.Bytes())
	negE := new(big.Int).Sub(params.N, new(big.Int).Mod(e, params.N))
	negE.Mod(negE, params.N)
	eGx, eGy := c.ScalarBaseMult(negE.Bytes())
	var px, py *big.Int
	switch {
	case negE.Sign() == 0:
		px, py = sRx, sRy
	default:
		px, py = c.Add(sRx, sRy, eGx, eGy)
	}
	rInv := new(big.Int).ModInverse(r, params.N)
	qx, qy := c.ScalarMult(px, py, rInv.Bytes())
	if qx.Sign() == 0 && qy.Sign() == 0 {
		return nil, errors.New("measure: key-less ID block: recovered key is the point at infinity")
	}
	a := &IDAuth{
		BlockSig: IDSignature{R: r, S: s},
		IDKey:    &ecdsa.PublicKey{Curve: c, X: qx, Y: qy},
	}
	if err := a.Verify(b); err != nil {
		return nil, fmt.Errorf("measure: key-less ID block: %w", err)
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

// IGVMSNPIDBlock builds the IGVM SNP_ID_BLOCK header (type 0x30B,
// IGVM_VHS_SNP_ID_BLOCK) whose 0x2B8-byte body is: compatibility mask u32, author_key_enabled
// u8, 3 reserved, ld[48], family_id[16], image_id[16], version u32,
// guest_svn u32, id_key_algorithm u32, author_key_algorithm u32, ID block
// signature (r[72], s[72]), ID public key (curve u32, reserved u32, qx[72],
// qy[72]), author signature, author public key. The policy is not part of
// it: IGVM carries it in the GUEST_POLICY header (0x101).
func IGVMSNPIDBlock(compatMask uint32, b *IDBlock, a *IDAuth) (*igvm.SNPIDBlock, error) {
	body, err := igvmSNPIDBlockBytes(compatMask, b, a)
	if err != nil {
		return nil, err
	}
	h := new(igvm.SNPIDBlock)
	if _, err := binary.Decode(body, binary.LittleEndian, h); err != nil {
		return nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK: %w", err)
	}
	return h, nil
}

func igvmSNPIDBlockBytes(compatMask uint32, b *IDBlock, a *IDAuth) ([]byte, error) {
	out := make([]byte, IGVMSNPIDBlockSize)
	binary.LittleEndian.PutUint32(out[0:], compatMask)
	copy(out[8:], b.Digest[:])
	copy(out[0x38:], b.FamilyID[:])
	copy(out[0x48:], b.ImageID[:])
	binary.LittleEndian.PutUint32(out[0x58:], b.Version)
	binary.LittleEndian.PutUint32(out[0x5c:], b.GuestSVN)
	binary.LittleEndian.PutUint32(out[0x60:], IDAlgoECDSAP384SHA)
	if err := putSignature(out[0x68:], a.BlockSig); err != nil {
		return nil, fmt.Errorf("measure: ID block signature: %w", err)
	}
	if err := putIGVMPublicKey(out[0xf8:], a.IDKey); err != nil {
		return nil, fmt.Errorf("measure: ID key: %w", err)
	}
	if a.AuthorKey != nil {
		out[4] = 1
		binary.LittleEndian.PutUint32(out[0x64:], IDAlgoECDSAP384SHA)
		if err := putSignature(out[0x190:], a.IDKeySig); err != nil {
			return nil, fmt.Errorf("measure: ID key signature: %w", err)
		}
		if err := putIGVMPublicKey(out[0x220:], a.AuthorKey); err != nil {
			return nil, fmt.Errorf("measure: author key: %w", err)
		}
	}
	return out, nil
}

// ParseIGVMSNPIDBlock decodes an IGVM SNP_ID_BLOCK header into the ID
// block and ID authentication it stands for; the ID block gets the given
// policy (from the file's GUEST_POLICY header). It checks the algorithms and
// keys, not the signatures (IDAuth.Verify does).
func ParseIGVMSNPIDBlock(h *igvm.SNPIDBlock, policy snp.GuestPolicy) (compatMask uint32, b *IDBlock, a *IDAuth, err error) {
	body, err := binary.Append(nil, binary.LittleEndian, h)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK: %w", err)
	}
	return parseIGVMSNPIDBlockBytes(body, policy)
}

func parseIGVMSNPIDBlockBytes(body []byte, policy snp.GuestPolicy) (compatMask uint32, b *IDBlock, a *IDAuth, err error) {
	if len(body) < IGVMSNPIDBlockSize {
		return 0, nil, nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK of %d bytes, want %d", len(body), IGVMSNPIDBlockSize)
	}
	compatMask = binary.LittleEndian.Uint32(body)
	b = &IDBlock{
		Version:  binary.LittleEndian.Uint32(body[0x58:]),
		GuestSVN: binary.LittleEndian.Uint32(body[0x5c:]),
		Policy:   policy,
	}
	copy(b.Digest[:], body[8:])
	copy(b.FamilyID[:], body[0x38:])
	copy(b.ImageID[:], body[0x48:])
	if algo := binary.LittleEndian.Uint32(body[0x60:]); algo != IDAlgoECDSAP384SHA {
		return 0, nil, nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK: id_key_algorithm %d, want 1", algo)
	}
	a = &IDAuth{BlockSig: getSignature(body[0x68:])}
	if a.IDKey, err = getIGVMPublicKey(body[0xf8:]); err != nil {
		return 0, nil, nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK: ID key: %w", err)
	}
	if body[4] != 0 {
		a.IDKeySig = getSignature(body[0x190:])
		if a.AuthorKey, err = getIGVMPublicKey(body[0x220:]); err != nil {
			return 0, nil, nil, fmt.Errorf("measure: IGVM SNP_ID_BLOCK: author key: %w", err)
		}
	}
	return compatMask, b, a, nil
}

// ParseP384PrivateKeyPEM parses a P-384 private key in PEM, either SEC1
// ("EC PRIVATE KEY", as openssl ecparam -genkey writes) or PKCS #8
// ("PRIVATE KEY").
func ParseP384PrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("measure: no PEM block in key file")
	}
	var k *ecdsa.PrivateKey
	switch blk.Type {
	case "EC PRIVATE KEY":
		var err error
		if k, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
			return nil, fmt.Errorf("measure: EC private key: %w", err)
		}
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("measure: PKCS #8 private key: %w", err)
		}
		var ok bool
		if k, ok = key.(*ecdsa.PrivateKey); !ok {
			return nil, fmt.Errorf("measure: key is a %T, want an ECDSA P-384 key", key)
		}
	default:
		return nil, fmt.Errorf("measure: PEM block %q, want \"EC PRIVATE KEY\" or \"PRIVATE KEY\"", blk.Type)
	}
	if err := checkP384(&k.PublicKey); err != nil {
		return nil, err
	}
	return k, nil
}

func checkP384(pub *ecdsa.PublicKey) error {
	if pub == nil || pub.Curve == nil || pub.Curve.Params().Name != "P-384" {
		return errors.New("measure: key is not on P-384 (SEV-SNP ID keys are ECDSA P-384)")
	}
	return nil
}

// putLE writes v as a little-endian number of idComponentSize bytes.
func putLE(dst []byte, v *big.Int) error {
	if v == nil || v.Sign() < 0 || v.BitLen() > 8*idComponentSize {
		return errors.New("value missing or out of range")
	}
	be := v.FillBytes(make([]byte, idComponentSize))
	for i := range idComponentSize {
		dst[i] = be[idComponentSize-1-i]
	}
	return nil
}

func getLE(src []byte) *big.Int {
	be := make([]byte, idComponentSize)
	for i := range idComponentSize {
		be[i] = src[idComponentSize-1-i]
	}
	return new(big.Int).SetBytes(be)
}

func putSignature(dst []byte, s IDSignature) error {
	if err := putLE(dst, s.R); err != nil {
		return fmt.Errorf("r: %w", err)
	}
	if err := putLE(dst[idComponentSize:], s.S); err != nil {
		return fmt.Errorf("s: %w", err)
	}
	return nil
}

func getSignature(src []byte) IDSignature {
	return IDSignature{R: getLE(src), S: getLE(src[idComponentSize:])}
}

func putPublicKey(dst []byte, pub *ecdsa.PublicKey) error {
	if err := checkP384(pub); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(dst, curveP384)
	if err := putLE(dst[4:], pub.X); err != nil {
		return fmt.Errorf("qx: %w", err)
	}
	return putLE(dst[4+idComponentSize:], pub.Y)
}

// putIGVMPublicKey writes the IGVM form, which has a reserved u32 after
// the curve.
func putIGVMPublicKey(dst []byte, pub *ecdsa.PublicKey) error {
	if err := checkP384(pub); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(dst, curveP384)
	if err := putLE(dst[8:], pub.X); err != nil {
		return fmt.Errorf("qx: %w", err)
	}
	return putLE(dst[8+idComponentSize:], pub.Y)
}

func getPublicKey(src []byte) (*ecdsa.PublicKey, error) {
	return decodePublicKey(binary.LittleEndian.Uint32(src), src[4:], src[4+idComponentSize:])
}

func getIGVMPublicKey(src []byte) (*ecdsa.PublicKey, error) {
	return decodePublicKey(binary.LittleEndian.Uint32(src), src[8:], src[8+idComponentSize:])
}

func decodePublicKey(curve uint32, qx, qy []byte) (*ecdsa.PublicKey, error) {
	if curve != curveP384 {
		return nil, fmt.Errorf("curve %d, want %d (P-384)", curve, curveP384)
	}
	x, y := getLE(qx), getLE(qy)
	if !elliptic.P384().IsOnCurve(x, y) {
		return nil, errors.New("public key is not a point on P-384")
	}
	return &ecdsa.PublicKey{Curve: elliptic.P384(), X: x, Y: y}, nil
}
