package measure

import (
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// IGVMSignOptions say how to make the ID block of an IGVM file.
type IGVMSignOptions struct {
	// Measure selects the profile (and for kvm the vCPUs and CPU model)
	// whose launch digest the ID block carries: the firmware refuses the
	// launch if it differs from what the loader measures.
	Measure Options
	// IDKey signs the ID block (P-384, RFC 6979). Nil selects the key-less
	// mode (KeylessIDAuth): a fixed signature and a recovered key.
	IDKey *ecdsa.PrivateKey
	// AuthorKey, if not nil, signs the ID key (needs IDKey).
	AuthorKey *ecdsa.PrivateKey
	FamilyID  [16]byte
	ImageID   [16]byte
	GuestSVN  uint32
}

// SignedIGVM is the ID block made for an IGVM file.
type SignedIGVM struct {
	Header      *igvm.SNPIDBlock // the SNP_ID_BLOCK header to put in the file
	Block       *IDBlock         // the ID block it stands for (with the file's policy)
	Auth        *IDAuth
	Measurement *Result // the measurement whose digest the block carries
}

// SignIGVM measures f and builds its SNP_ID_BLOCK header: the launch
// digest under o.Measure, the policy of the file's GUEST_POLICY header for
// SEV-SNP, and the signatures. It does not change f; the caller writes a
// new file with the header (replacing any SNP_ID_BLOCK f has) through
// igvm.Builder.
func SignIGVM(f *igvm.File, o IGVMSignOptions) (*SignedIGVM, error) {
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
	res, err := MeasureIGVM(f, o.Measure)
	if err != nil {
		return nil, err
	}
	if err := res.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("measure: the file's guest policy: %w", err)
	}
	blk := &IDBlock{Digest: res.Digest, FamilyID: o.FamilyID, ImageID: o.ImageID, Version: 1, GuestSVN: o.GuestSVN, Policy: res.Policy}
	var auth *IDAuth
	if o.IDKey == nil {
		auth, err = KeylessIDAuth(blk)
	} else {
		auth, err = SignIDBlock(blk, o.IDKey, o.AuthorKey)
	}
	if err != nil {
		return nil, err
	}
	hdr, err := IGVMSNPIDBlock(mask, blk, auth)
	if err != nil {
		return nil, err
	}
	return &SignedIGVM{Header: hdr, Block: blk, Auth: auth, Measurement: res}, nil
}

// VerifyIGVMIDBlock checks the SNP_ID_BLOCK of f: that its signatures
// verify and that its digest equals the launch digest under opts. It
// returns the ID block and authentication it found.
func VerifyIGVMIDBlock(f *igvm.File, opts Options) (*IDBlock, *IDAuth, error) {
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
	res, err := MeasureIGVM(f, opts)
	if err != nil {
		return nil, nil, err
	}
	_, blk, auth, err := ParseIGVMSNPIDBlock(hdr, res.Policy)
	if err != nil {
		return nil, nil, err
	}
	if err := auth.Verify(blk); err != nil {
		return nil, nil, err
	}
	if blk.Digest != res.Digest {
		return nil, nil, fmt.Errorf("measure: the ID block carries digest %s but the file measures %s under %s", blk.Digest, res.Digest, opts.Profile)
	}
	return blk, auth, nil
}
