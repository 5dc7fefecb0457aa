// Package measure computes the launch digest that the AMD SEV-SNP firmware
// reports for a guest: the PAGE_INFO chain of SNP_LAUNCH_UPDATE (this file),
// the digest an IGVM file gets under each hypervisor's loader (profiles mshv
// and kvm), the digest of an OVMF boot with kernel hashes, ID blocks and
// reference values. It reads IGVM files through pkg/igvm and never writes
// images itself.
package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// Digest is a 48-byte SEV-SNP launch digest (or a page contents hash): an
// alias of snp.Digest, the one definition; snp.ParseDigest parses it.
type Digest = snp.Digest

// pageInfoSize is the size of the PAGE_INFO record (SEV-SNP firmware ABI,
// "PAGE_INFO structure"), which is also the value of its LENGTH field.
const pageInfoSize = 0x70

// Chain is a launch digest being extended page by page, exactly as the
// SNP firmware does on SNP_LAUNCH_UPDATE: for every 4 KiB page,
// digest = SHA-384(PAGE_INFO), where PAGE_INFO is
//
//	0x00 current digest [48]
//	0x30 contents       [48]  SHA-384 of the page for NORMAL and VMSA, zero otherwise
//	0x60 length u16 = 0x70
//	0x62 page type u8
//	0x63 IMI page u8 = 0
//	0x64 VMPL3/2/1 permissions, reserved: 4 bytes of zero at launch
//	0x68 GPA u64
//
// The zero value is not usable; call NewChain. A Chain is not safe for
// concurrent use.
type Chain struct {
	digest Digest
	pages  uint64
	info   [pageInfoSize]byte
	page   hash.Hash // SHA-384 of page contents
	rec    hash.Hash // SHA-384 of PAGE_INFO
	sum    []byte
	h      Digest // scratch for page hashes
}

// NewChain starts a chain at start: the zero Digest for a fresh launch, or
// a given digest to continue one (for example to add AP VMSAs to a known
// 1-vCPU digest).
func NewChain(start Digest) *Chain {
	return &Chain{digest: start, page: sha512.New384(), rec: sha512.New384(), sum: make([]byte, 0, snp.DigestSize)}
}

// Digest returns the current launch digest.
func (c *Chain) Digest() Digest { return c.digest }

// Pages returns the number of pages added so far.
func (c *Chain) Pages() uint64 { return c.pages }

// PageHash returns the SHA-384 contents hash of a page as PAGE_INFO records
// it for NORMAL and VMSA pages. contents shorter than a page are padded with
// zeros to 4 KiB (a nil contents is a zero page); longer contents are an
// error.
func PageHash(contents []byte) (Digest, error) {
	var d Digest
	if len(contents) > snp.PageSize {
		return d, fmt.Errorf("measure: page contents of %d bytes, more than %d", len(contents), snp.PageSize)
	}
	h := sha512.New384()
	h.Write(contents)
	if n := snp.PageSize - len(contents); n > 0 {
		h.Write(zeroPage[:n])
	}
	h.Sum(d[:0])
	return d, nil
}

var zeroPage [snp.PageSize]byte

// AddPage extends the chain with one 4 KiB page at gpa. For NORMAL and VMSA
// pages the contents are hashed (padded with zeros to 4 KiB; nil is a zero
// page); for ZERO, UNMEASURED, SECRETS and CPUID pages contents are ignored
// and the record holds 48 zero bytes. It returns an error for contents
// longer than a page, a GPA that is not page aligned or an unknown page type.
func (c *Chain) AddPage(gpa uint64, t snp.PageType, contents []byte) error {
	h := &c.h
	*h = Digest{}
	switch t {
	case snp.PageNormal, snp.PageVMSA:
		if len(contents) > snp.PageSize {
			return fmt.Errorf("measure: page at %#x: contents of %d bytes, more than %d", gpa, len(contents), snp.PageSize)
		}
		c.page.Reset()
		c.page.Write(contents)
		if n := snp.PageSize - len(contents); n > 0 {
			c.page.Write(zeroPage[:n])
		}
		c.page.Sum(h[:0])
	case snp.PageZero, snp.PageUnmeasured, snp.PageSecrets, snp.PageCPUID:
	default:
		return fmt.Errorf("measure: page at %#x: unknown page type %v", gpa, t)
	}
	return c.AddPageHash(gpa, t, *h)
}

// AddPageHash extends the chain with one page whose contents hash is
// already known (the SHA-384 of the 4 KiB page for NORMAL and VMSA; it must
// be zero for the other types, as the firmware records it).
func (c *Chain) AddPageHash(gpa uint64, t snp.PageType, contents Digest) error {
	if gpa%snp.PageSize != 0 {
		return fmt.Errorf("measure: page GPA %#x is not 4 KiB aligned", gpa)
	}
	switch t {
	case snp.PageNormal, snp.PageVMSA:
	case snp.PageZero, snp.PageUnmeasured, snp.PageSecrets, snp.PageCPUID:
		if contents != (Digest{}) {
			return fmt.Errorf("measure: page at %#x: %v page with a non-zero contents hash", gpa, t)
		}
	default:
		return fmt.Errorf("measure: page at %#x: unknown page type %v", gpa, t)
	}
	b := c.info[:]
	copy(b[0x00:0x30], c.digest[:])
	copy(b[0x30:0x60], contents[:])
	binary.LittleEndian.PutUint16(b[0x60:], pageInfoSize)
	b[0x62] = byte(t)
	b[0x63] = 0 // IMI page
	clear(b[0x64:0x68])
	binary.LittleEndian.PutUint64(b[0x68:], gpa)
	c.rec.Reset()
	c.rec.Write(b)
	c.digest = Digest(c.rec.Sum(c.sum[:0]))
	c.pages++
	return nil
}

// AddRange extends the chain with the pages of data starting at gpa, all
// of type t; the last page is padded with zeros. For types other than
// NORMAL and VMSA, data only gives the length.
func (c *Chain) AddRange(gpa uint64, t snp.PageType, data []byte) error {
	for off := 0; off < len(data); off += snp.PageSize {
		end := min(off+snp.PageSize, len(data))
		if err := c.AddPage(gpa+uint64(off), t, data[off:end]); err != nil {
			return err
		}
	}
	return nil
}

// AddPages extends the chain with n pages of type t starting at gpa whose
// contents are zero (NORMAL over zeros, or ZERO/UNMEASURED/SECRETS/CPUID).
func (c *Chain) AddPages(gpa uint64, t snp.PageType, n uint64) error {
	var h Digest
	if t == snp.PageNormal || t == snp.PageVMSA {
		h = zeroPageHash
	}
	for i := uint64(0); i < n; i++ {
		if err := c.AddPageHash(gpa+i*snp.PageSize, t, h); err != nil {
			return err
		}
	}
	return nil
}

// zeroPageHash is SHA-384 of a 4 KiB page of zeros.
var zeroPageHash = Digest(sha512.Sum384(zeroPage[:]))
