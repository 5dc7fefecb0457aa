package measure

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// IGVMSignOptions say how to make the ID block of an IGVM file.
type IGVMSignOptions struct {
	// Measure selects the profile (and for kvm the vCPUs and CPU model)
	// whose launch digest the ID block carries: the firmware refuses the
	// launch if it differs from what the loader measures.
	Measure Options
	// IDKey signs the ID block (P-384, RFC 6979). Nil selects the key-less
	// mode (snp.KeylessIDAuth): a fixed signature and a recovered key.
	IDKey *ecdsa.PrivateKey
	// AuthorKey, if not nil, signs the ID key (needs IDKey).
	AuthorKey *ecdsa.PrivateKey
	FamilyID  [16]byte
	ImageID   [16]byte
	GuestSVN  uint32
}

// SignedIGVM is the ID block made for an IGVM file, and the summary of it
// that "igvm sign" prints (the JSON fields).
type SignedIGVM struct {
	Profile     Profile         `json:"profile"`
	VCPUs       int             `json:"vcpus"`
	CPU         string          `json:"cpu,omitempty"`
	Digest      Digest          `json:"digest"`
	Policy      snp.GuestPolicy `json:"policy"`
	FamilyID    hexBytes        `json:"family_id"`
	ImageID     hexBytes        `json:"image_id"`
	GuestSVN    uint32          `json:"guest_svn"`
	Keyless     bool            `json:"keyless"`
	IDKeyDigest Digest          `json:"id_key_digest"`
	// AuthorKeyDigest is set with an author key.
	AuthorKeyDigest *Digest `json:"author_key_digest,omitempty"`

	Header      *igvm.SNPIDBlock `json:"-"` // the SNP_ID_BLOCK header to put in the file
	Block       *snp.IDBlock     `json:"-"` // the ID block it stands for (with the file's policy)
	Auth        *snp.IDAuth      `json:"-"`
	Measurement *Result          `json:"-"` // the measurement whose digest the block carries

	file *igvm.File
	mask uint32
}

// hexBytes is a byte string shown as lowercase hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%x", []byte(h)), nil }

// SignIGVM measures f and builds its SNP_ID_BLOCK header: the launch
// digest under o.Measure, the policy of the file's GUEST_POLICY header for
// SEV-SNP, and the signatures. It does not change f; WriteIGVM writes the
// file with the new header.
func SignIGVM(ctx context.Context, f *igvm.File, o IGVMSignOptions) (*SignedIGVM, error) {
	if o.IDKey == nil && o.AuthorKey != nil {
		return nil, errors.New("measure: an author key needs an ID key (the key-less mode has no author)")
	}
	mask, err := SNPPlatform(f)
	if err != nil {
		return nil, err
	}
	hasPolicy := false
	for _, h := range f.Initialization() {
		if p, ok := h.(*igvm.GuestPolicy); ok && p.CompatibilityMask&mask != 0 {
			hasPolicy = true
		}
	}
	if !hasPolicy {
		return nil, errors.New("measure: the IGVM file has no GUEST_POLICY header for SEV-SNP; the ID block must carry the launch policy")
	}
	res, err := MeasureIGVM(ctx, f, o.Measure)
	if err != nil {
		return nil, err
	}
	if err := res.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("measure: the file's guest policy: %w", err)
	}
	blk := &snp.IDBlock{Digest: res.Digest, FamilyID: o.FamilyID, ImageID: o.ImageID, Version: 1, GuestSVN: o.GuestSVN, Policy: res.Policy}
	var auth *snp.IDAuth
	if o.IDKey == nil {
		auth, err = snp.KeylessIDAuth(blk)
	} else {
		auth, err = snp.SignIDBlock(blk, o.IDKey, o.AuthorKey)
	}
	if err != nil {
		return nil, err
	}
	s := &SignedIGVM{
		Profile: res.Profile, VCPUs: res.VCPUs, CPU: res.CPU,
		Digest: res.Digest, Policy: res.Policy,
		FamilyID: o.FamilyID[:], ImageID: o.ImageID[:], GuestSVN: o.GuestSVN,
		Keyless: o.IDKey == nil, IDKeyDigest: auth.IDKeyDigest(),
		Header: igvm.NewSNPIDBlock(mask, blk, auth), Block: blk, Auth: auth, Measurement: res,
		file: f, mask: mask,
	}
	if auth.HasAuthorKey() {
		d := auth.AuthorKeyDigest()
		s.AuthorKeyDigest = &d
	}
	return s, nil
}

// IGVM returns a Builder holding the signed file: every header of the file
// SignIGVM measured, in order, except its SNP_ID_BLOCK headers for SEV-SNP,
// then the new SNP_ID_BLOCK. The file's data is read when the Builder
// writes.
func (s *SignedIGVM) IGVM() *igvm.Builder {
	return igvm.ReplaceIDBlock(s.file, s.mask, s.Header)
}

// WriteIGVM writes the signed file to w (see IGVM) and returns the number
// of bytes written.
func (s *SignedIGVM) WriteIGVM(ctx context.Context, w io.Writer) (int64, error) {
	return s.IGVM().Write(ctx, w)
}

// VerifyIGVMIDBlock checks the SNP_ID_BLOCK of f: that its signatures
// verify and that its digest equals the launch digest under opts. It
// returns the ID block and authentication it found.
func VerifyIGVMIDBlock(ctx context.Context, f *igvm.File, opts Options) (*snp.IDBlock, *snp.IDAuth, error) {
	mask, err := SNPPlatform(f)
	if err != nil {
		return nil, nil, err
	}
	var hdr *igvm.SNPIDBlock
	for _, h := range f.Directives() {
		if x, ok := h.(*igvm.SNPIDBlock); ok && x.CompatibilityMask&mask != 0 {
			if hdr != nil {
				return nil, nil, errors.New("measure: the IGVM file has more than one SNP_ID_BLOCK for SEV-SNP")
			}
			hdr = x
		}
	}
	if hdr == nil {
		return nil, nil, errors.New("measure: the IGVM file has no SNP_ID_BLOCK for SEV-SNP")
	}
	res, err := MeasureIGVM(ctx, f, opts)
	if err != nil {
		return nil, nil, err
	}
	blk, auth := hdr.IDBlock(res.Policy), hdr.IDAuth()
	if err := auth.Verify(blk); err != nil {
		return nil, nil, err
	}
	if blk.Digest != res.Digest {
		return nil, nil, fmt.Errorf("measure: the ID block carries digest %s but the file measures %s under %s", blk.Digest, res.Digest, opts.Profile)
	}
	return blk, auth, nil
}
