package podvm

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// IDBlockSchema names the format of the id-block-TARGET.json files.
const IDBlockSchema = "imagebuilder.podvm.id-block/v1"

// IDBlocks is an id-block-TARGET.json file: a target's SNP ID blocks,
// one per launch digest (per CPU model and vCPU count for qemu-ovmf), each
// with its ID authentication structure, base64-encoded as QEMU's
// sev-snp-guest id-block and id-auth properties and Kata's snp_id_block
// and snp_id_auth take them.
type IDBlocks struct {
	Schema   string `json:"schema"`
	Target   string `json:"target"`
	Platform string `json:"platform"`
	// Policy is the guest policy every block carries: the target's
	// launch policy (the firmware refuses a block with another).
	Policy   snp.GuestPolicy `json:"policy"`
	FamilyID string          `json:"family_id"`
	ImageID  string          `json:"image_id"`
	GuestSVN uint32          `json:"guest_svn"`
	// Keyless says the blocks are signed without a key (a fixed
	// signature, the ID key recovered from it).
	Keyless bool `json:"keyless"`
	// IDKeyDigest and AuthorKeyDigest are what attestation reports carry
	// as ID_KEY_DIGEST and AUTHOR_KEY_DIGEST; AuthorKeyEnabled is QEMU's
	// author-key-enabled.
	IDKeyDigest      snp.Digest  `json:"id_key_digest"`
	AuthorKeyDigest  *snp.Digest `json:"author_key_digest,omitempty"`
	AuthorKeyEnabled bool        `json:"author_key_enabled"`
	// InIGVM says the block is also in podvm.igvm (SNP_ID_BLOCK), where
	// cloud-hypervisor reads it (igvm-mshv).
	InIGVM bool           `json:"in_igvm"`
	Blocks []IDBlockEntry `json:"blocks"`
}

// IDBlockEntry is one ID block.
type IDBlockEntry struct {
	// CPU, Product and VCPUs say which launch the block is for (qemu-ovmf);
	// empty where the digest does not depend on them.
	CPU     string     `json:"cpu,omitempty"`
	Product string     `json:"product,omitempty"`
	VCPUs   int        `json:"vcpus,omitempty"`
	Digest  snp.Digest `json:"digest"`
	// IDBlock is the 96-byte ID block and IDAuth the 4096-byte ID
	// authentication structure, standard base64.
	IDBlock string `json:"snp_id_block"`
	IDAuth  string `json:"snp_id_auth"`
}

// idBlockStage is the ID block stage's outcome.
type idBlockStage struct {
	Files []IDBlocks `json:"files"`
	// IGVMDigest is the digest of the block put into podvm.igvm.
	IGVMDigest *snp.Digest `json:"igvm_digest,omitempty"`
	signed     *stageFile
}

const stageIDBlock = "idblock"

func (b *builder) idBlocks(ctx context.Context, ig *igvmStage, ms *measureStage) (*idBlockStage, error) {
	id := b.cfg.Spec.IDBlock
	if id == nil {
		return &idBlockStage{}, nil
	}
	mj, err := CanonicalJSON(ms.Targets)
	if err != nil {
		return nil, &StageError{Stage: stageIDBlock, Err: err}
	}
	msum := sha256.Sum256(mj)
	inputs := map[string]string{"measurements": "sha256:" + hex.EncodeToString(msum[:])}
	for field, sum := range b.pre.keySHA256s {
		inputs[field] = "sha256:" + sum
	}
	var files []string
	sign := b.signsIGVM()
	if sign {
		inputs["igvm"] = "sha256:" + ig.file.SHA256
		files = []string{FileIGVM}
	}
	config := struct {
		IDBlock IDBlock  `json:"idBlock"`
		Targets []Target `json:"targets"`
	}{*id, b.cfg.Spec.Measurements.Targets}
	st := &idBlockStage{}
	out, err := b.runStage(ctx, stageRun{name: stageIDBlock, config: config, inputs: inputs, files: files,
		publish: map[string]string{FileIGVM: FileIGVM}, result: st,
		run: func(ctx context.Context, out map[string]*os.File, t ProgressTask) error {
			var mshv *IDBlockEntry
			for i, tm := range ms.Targets {
				field := fmt.Sprintf("spec.measurements.targets[%d]", i)
				fail := func(err error) error {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return &StageError{Stage: stageIDBlock, Field: field, Input: tm.Name, Err: trimPkg(err, "measure: ")}
				}
				doc := IDBlocks{Schema: IDBlockSchema, Target: tm.Name, Platform: tm.Platform, Policy: tm.Policy,
					FamilyID: hex.EncodeToString(id.FamilyID[:]), ImageID: hex.EncodeToString(id.ImageID[:]),
					GuestSVN: id.SVN, Keyless: b.pre.idKey == nil}
				switch tm.Platform {
				case PlatformIGVMMSHV:
					doc.InIGVM = true
					if mshv == nil {
						f, err := igvm.Open(ig.file, ig.file.Size)
						if err != nil {
							return fail(err)
						}
						s, err := measure.SignIGVM(ctx, f, measure.IGVMSignOptions{Measure: measure.Options{Profile: measure.ProfileMSHV},
							IDKey: b.pre.idKey, AuthorKey: b.pre.authorKey, FamilyID: id.FamilyID, ImageID: id.ImageID, GuestSVN: id.SVN})
						if err != nil {
							return fail(err)
						}
						if _, err := s.WriteIGVM(ctx, progressWriter{out[FileIGVM], t}); err != nil {
							return fail(err)
						}
						e := blockEntry(s.Block, s.Auth)
						mshv = &e
						d := s.Digest
						st.IGVMDigest = &d
					}
					doc.Blocks = []IDBlockEntry{*mshv}
				default:
					for _, d := range tm.Digests {
						blk := &snp.IDBlock{Digest: d.Digest, FamilyID: id.FamilyID, ImageID: id.ImageID, Version: 1, GuestSVN: id.SVN, Policy: tm.Policy}
						var auth *snp.IDAuth
						var err error
						if b.pre.idKey == nil {
							auth, err = snp.KeylessIDAuth(blk)
						} else {
							auth, err = snp.SignIDBlock(blk, b.pre.idKey, b.pre.authorKey)
						}
						if err != nil {
							return fail(err)
						}
						e := blockEntry(blk, auth)
						e.CPU, e.Product, e.VCPUs = d.CPU, d.Product, d.VCPUs
						doc.Blocks = append(doc.Blocks, e)
					}
				}
				auth, err := authOf(doc.Blocks[0])
				if err != nil {
					return fail(err)
				}
				doc.IDKeyDigest = auth.IDKeyDigest()
				if auth.HasAuthorKey() {
					d := auth.AuthorKeyDigest()
					doc.AuthorKeyDigest, doc.AuthorKeyEnabled = &d, true
				}
				st.Files = append(st.Files, doc)
			}
			return nil
		}})
	if err != nil {
		return nil, err
	}
	st.signed = out[FileIGVM]
	return st, nil
}

func blockEntry(blk *snp.IDBlock, auth *snp.IDAuth) IDBlockEntry {
	return IDBlockEntry{Digest: blk.Digest, IDBlock: base64.StdEncoding.EncodeToString(blk.Marshal()),
		IDAuth: base64.StdEncoding.EncodeToString(auth.Marshal())}
}

func authOf(e IDBlockEntry) (*snp.IDAuth, error) {
	b, err := base64.StdEncoding.DecodeString(e.IDAuth)
	if err != nil {
		return nil, err
	}
	return snp.UnmarshalIDAuth(b)
}
