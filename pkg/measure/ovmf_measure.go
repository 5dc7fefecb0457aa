package measure

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// GUIDs of QEMU's SEV hash table (target/i386/sev.c), which OVMF checks
// before it boots the kernel it was given.
var (
	guidSEVHashTableHeader = mustGUID("9438d606-4f22-4cc9-b479-a793d411fd21")
	guidSEVKernelEntry     = mustGUID("4de79437-abd2-427f-b835-d5b172d2045b")
	guidSEVInitrdEntry     = mustGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
	guidSEVCmdlineEntry    = mustGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
)

// SHA256 is a SHA-256 digest, lowercase hex in JSON.
type SHA256 [sha256.Size]byte

// String returns the digest as lowercase hex.
func (d SHA256) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as hex.
func (d SHA256) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a hex digest.
func (d *SHA256) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil || len(v) != sha256.Size {
		return fmt.Errorf("measure: SHA-256 %q: want 64 hex digits", b)
	}
	copy(d[:], v)
	return nil
}

// KernelHashes are the SHA-256 digests QEMU puts in the kernel-hashes page
// for a direct boot with -kernel, -initrd and -append.
type KernelHashes struct {
	Kernel  SHA256 `json:"kernel_sha256"`
	Initrd  SHA256 `json:"initrd_sha256"`  // SHA-256 of the empty string when there is no initrd
	Cmdline SHA256 `json:"cmdline_sha256"` // SHA-256 of the command line and one NUL byte
}

// HashKernel computes the kernel hashes. kernel is hashed as is (no bzImage
// parsing); a nil initrd hashes like an empty file; the command line is
// hashed with its terminating NUL (an empty command line is a single NUL).
// It stops with ctx's error soon after ctx is cancelled.
func HashKernel(ctx context.Context, kernel, initrd io.Reader, cmdline string) (KernelHashes, error) {
	var kh KernelHashes
	h := sha256.New()
	if kernel == nil {
		return kh, errors.New("measure: kernel hashes without a kernel")
	}
	if err := copyCtx(ctx, h, kernel); err != nil {
		return KernelHashes{}, fmt.Errorf("measure: hashing kernel: %w", err)
	}
	h.Sum(kh.Kernel[:0])
	h.Reset()
	if initrd != nil {
		if err := copyCtx(ctx, h, initrd); err != nil {
			return KernelHashes{}, fmt.Errorf("measure: hashing initrd: %w", err)
		}
	}
	h.Sum(kh.Initrd[:0])
	h.Reset()
	h.Write([]byte(cmdline))
	h.Write([]byte{0})
	h.Sum(kh.Cmdline[:0])
	return kh, nil
}

// Table returns the SEV hash table exactly as QEMU builds it: header GUID,
// u16 length, then the command line, initrd and kernel entries (GUID, u16
// length 50, SHA-256), zero padded to a multiple of 16 bytes.
func (kh KernelHashes) Table() []byte {
	const entry = 16 + 2 + 32
	const n = 16 + 2 + 3*entry
	t := make([]byte, (n+15)&^15)
	copy(t, guidSEVHashTableHeader[:])
	binary.LittleEndian.PutUint16(t[16:], n)
	off := 18
	for _, e := range []struct {
		guid [16]byte
		hash [32]byte
	}{{guidSEVCmdlineEntry, kh.Cmdline}, {guidSEVInitrdEntry, kh.Initrd}, {guidSEVKernelEntry, kh.Kernel}} {
		copy(t[off:], e.guid[:])
		binary.LittleEndian.PutUint16(t[off+16:], entry)
		copy(t[off+18:], e.hash[:])
		off += entry
	}
	return t
}

// page returns the 4 KiB kernel-hashes page with the table at offset.
func (kh KernelHashes) page(offset int) ([]byte, error) {
	t := kh.Table()
	if offset < 0 || offset+len(t) > snp.PageSize {
		return nil, fmt.Errorf("measure: SEV hash table at page offset %#x does not fit in the page", offset)
	}
	p := make([]byte, snp.PageSize)
	copy(p[offset:], t)
	return p, nil
}

// copyCtx copies r to w (io.Copy, so a reader that can write itself out
// does), stopping with ctx's error at the first write after ctx is
// cancelled.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) error {
	_, err := io.Copy(ctxio.Writer(ctx, w), r)
	return err
}

// OVMFConfig describes an OVMF launch to measure.
type OVMFConfig struct {
	VCPUs         int     // number of vCPUs, 1..MaxVCPUs
	VCPUSig       uint32  // CPUID(1).EAX of the vCPU model; QEMU only (ec2 and gce use fixed values)
	GuestFeatures uint64  // SEV features in the VMSA: 0x1 (SNP), 0x21 adds debug-swap
	VMM           VMMType // QEMU, ec2 or gce
	// Kernel, when not nil, are the hashes of a -kernel/-initrd/-append
	// direct boot; the firmware must have an SNP_KERNEL_HASHES section.
	Kernel *KernelHashes
	// OVMFHash, when not nil, is the digest after the firmware pages
	// (OVMFHash of the same firmware, `snp:ovmf-hash`); the firmware
	// bytes are then not measured again.
	OVMFHash *Digest
	// Explain records the measured regions (OVMFMeasurement.Regions).
	Explain bool
}

// OVMFMeasurement is the result of MeasureOVMF: the digest and the inputs
// it depends on.
type OVMFMeasurement struct {
	Digest   Digest `json:"digest"`    // the SEV-SNP launch digest
	OVMFHash Digest `json:"ovmf_hash"` // the digest after the firmware pages only
	VCPUs    int    `json:"vcpus,omitempty"`
	// CPUSignature is the vCPU's CPUID(1).EAX (QEMU only).
	CPUSignature  hexnum.Uint64 `json:"cpu_signature,omitempty"`
	GuestFeatures hexnum.Uint64 `json:"guest_features,omitempty"`
	VMMType       string        `json:"vmm_type,omitempty"`
	KernelHashes  *KernelHashes `json:"kernel_hashes,omitempty"`
	// Warnings are things the user should know (a firmware that cannot
	// boot SNP).
	Warnings []string `json:"warnings,omitempty"`
	// Regions is what was measured, in order (with OVMFConfig.Explain).
	Regions []Region `json:"regions,omitempty"`
}

// ErrNoKernelHashesSection is returned when a kernel is given but the
// firmware has no SNP_KERNEL_HASHES section to put its hashes in.
var ErrNoKernelHashesSection = errors.New("measure: kernel specified but the OVMF SEV metadata has no SNP_KERNEL_HASHES section (only AmdSev builds of OVMF support measured direct boot)")

// WarnVMSAChanged begins the warning that KVM measures vCPU 0's VMSA with
// other values than the file holds; the names of the fields follow
// (Result.VMSAChanges has each, with both values).
const WarnVMSAChanged = "KVM measures vCPU 0's VMSA with other values than the file holds in"

// WarnNoSEVMetadata is the warning for a firmware without SEV metadata.
const WarnNoSEVMetadata = "OVMF has no SEV metadata: it does not pre-validate guest memory and cannot boot an SEV-SNP guest; the digest is computed anyway, as sev-snp-measure does"

// OVMFHash returns the digest after only the firmware pages have been
// measured, which `--snp-ovmf-hash` can later start from.
func OVMFHash(ctx context.Context, fw *OVMF) (Digest, error) {
	c := NewChain(Digest{})
	if err := addFirmware(ctx, c, fw); err != nil {
		return Digest{}, err
	}
	return c.Digest(), nil
}

// addFirmware measures the firmware pages, looking at ctx every MiB.
func addFirmware(ctx context.Context, c *Chain, fw *OVMF) error {
	data := fw.Data()
	for off := 0; off < len(data); off += 1 << 20 {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+1<<20, len(data))
		if err := c.AddRange(fw.GPA()+uint64(off), snp.PageNormal, data[off:end]); err != nil {
			return err
		}
	}
	return nil
}

// MeasureOVMF computes the SEV-SNP launch digest of an OVMF guest the way
// sev-snp-measure 0.0.13 does (`--mode snp`): the firmware pages (NORMAL,
// ending at 4 GiB), then the SEV metadata sections in table order
// (SNP_SEC_MEM as ZERO pages, or UNMEASURED under gce; SECRETS; CPUID,
// moved after all other sections under ec2; the kernel-hashes page as
// NORMAL when a kernel is given, else ZERO; SVSM_CAA as ZERO), then one
// VMSA per vCPU (the boot processor at the reset vector, the others at the
// AP entry point of the SEV-ES reset block).
//
// It stops with ctx's error soon after ctx is cancelled.
func MeasureOVMF(ctx context.Context, fw *OVMF, cfg OVMFConfig) (*OVMFMeasurement, error) {
	if cfg.VCPUs < 1 || cfg.VCPUs > MaxVCPUs {
		return nil, fmt.Errorf("measure: %d vCPUs: want 1 to %d", cfg.VCPUs, MaxVCPUs)
	}
	switch cfg.VMM {
	case VMMQEMU, VMMEC2, VMMGCE:
	default:
		return nil, fmt.Errorf("measure: unknown VMM type %v", cfg.VMM)
	}
	if cfg.Kernel != nil && !fw.HasSection(SectionSNPKernelHashes) {
		return nil, ErrNoKernelHashesSection
	}
	apEIP, err := fw.ResetEIP()
	if err != nil {
		return nil, err
	}
	if apEIP == 0 && cfg.VCPUs > 1 {
		return nil, errors.New("measure: OVMF SEV-ES reset block gives AP entry point 0, so it cannot start more than one vCPU")
	}
	m := &OVMFMeasurement{VCPUs: cfg.VCPUs, GuestFeatures: hexnum.Uint64(cfg.GuestFeatures), VMMType: cfg.VMM.String()}
	if cfg.VMM == VMMQEMU {
		m.CPUSignature = hexnum.Uint64(cfg.VCPUSig)
	}
	if cfg.Kernel != nil {
		kh := *cfg.Kernel
		m.KernelHashes = &kh
	}
	if !fw.HasSEVMetadata() {
		m.Warnings = append(m.Warnings, WarnNoSEVMetadata)
	}
	var c *Chain
	if cfg.OVMFHash != nil {
		c = NewChain(*cfg.OVMFHash)
		m.OVMFHash = *cfg.OVMFHash
	} else {
		c = NewChain(Digest{})
		if err := addFirmware(ctx, c, fw); err != nil {
			return nil, err
		}
		m.OVMFHash = c.Digest()
		m.Regions = append(m.Regions, Region{GPA: hexnum.Uint64(fw.GPA()), Pages: uint64(len(fw.Data())) / snp.PageSize, Type: snp.PageNormal, What: "firmware", Digest: c.Digest()})
	}
	add := func(s OVMFSection, t snp.PageType, what string) error {
		n := uint64(s.Size) / snp.PageSize
		if t == snp.PageSecrets || t == snp.PageCPUID {
			n = 1 // sev-snp-measure adds exactly one page for these
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.AddPages(uint64(s.GPA), t, n); err != nil {
			return err
		}
		m.Regions = append(m.Regions, Region{GPA: hexnum.Uint64(s.GPA), Pages: n, Type: t, What: what, Digest: c.Digest()})
		return nil
	}
	for _, s := range fw.Sections() {
		var err error
		switch s.Type {
		case SectionSNPSecMem:
			if cfg.VMM == VMMGCE {
				err = add(s, snp.PageUnmeasured, "firmware section SNP_SEC_MEM")
			} else {
				err = add(s, snp.PageZero, "firmware section SNP_SEC_MEM")
			}
		case SectionSNPSecrets:
			err = add(s, snp.PageSecrets, "firmware section SNP_SECRETS")
		case SectionCPUID:
			if cfg.VMM != VMMEC2 {
				err = add(s, snp.PageCPUID, "firmware section CPUID")
			}
		case SectionSNPKernelHashes:
			err = measureKernelHashes(c, m, fw, s, cfg.Kernel)
		case SectionSVSMCAA:
			err = add(s, snp.PageZero, "firmware section SVSM_CAA")
		default:
			err = fmt.Errorf("measure: OVMF SEV metadata: unknown section type %#x", uint32(s.Type))
		}
		if err != nil {
			return nil, err
		}
	}
	if cfg.VMM == VMMEC2 {
		for _, s := range fw.Sections() {
			if s.Type == SectionCPUID {
				if err := add(s, snp.PageCPUID, "firmware section CPUID (ec2: last)"); err != nil {
					return nil, err
				}
			}
		}
	}
	bsp := ovmfVMSA(bspResetEIP, cfg.GuestFeatures, cfg.VCPUSig, cfg.VMM).Marshal()
	if err := c.AddPage(KVMVMSAGPA, snp.PageVMSA, bsp); err != nil {
		return nil, err
	}
	m.Regions = append(m.Regions, Region{GPA: KVMVMSAGPA, Pages: 1, Type: snp.PageVMSA, What: "VMSA of vCPU 0 (BSP)", Digest: c.Digest()})
	if cfg.VCPUs > 1 {
		apHash, err := PageHash(ovmfVMSA(apEIP, cfg.GuestFeatures, cfg.VCPUSig, cfg.VMM).Marshal())
		if err != nil {
			return nil, err
		}
		for i := 1; i < cfg.VCPUs; i++ {
			if err := c.AddPageHash(KVMVMSAGPA, snp.PageVMSA, apHash); err != nil {
				return nil, err
			}
		}
		what := fmt.Sprintf("VMSAs of vCPUs 1..%d (APs, entry %#x)", cfg.VCPUs-1, apEIP)
		if cfg.VCPUs == 2 {
			what = fmt.Sprintf("VMSA of vCPU 1 (AP, entry %#x)", apEIP)
		}
		m.Regions = append(m.Regions, Region{GPA: KVMVMSAGPA, Pages: uint64(cfg.VCPUs - 1), Type: snp.PageVMSA,
			What: what, Digest: c.Digest()})
	}
	for i := range m.Regions {
		m.Regions[i].TypeName = m.Regions[i].Type.String()
	}
	if !cfg.Explain {
		m.Regions = nil
	}
	m.Digest = c.Digest()
	return m, nil
}

func measureKernelHashes(c *Chain, m *OVMFMeasurement, fw *OVMF, s OVMFSection, kh *KernelHashes) error {
	n := uint64(s.Size) / snp.PageSize
	if kh == nil {
		if err := c.AddPages(uint64(s.GPA), snp.PageZero, n); err != nil {
			return err
		}
		m.Regions = append(m.Regions, Region{GPA: hexnum.Uint64(s.GPA), Pages: n, Type: snp.PageZero, What: "firmware section SNP_KERNEL_HASHES (no kernel)", Digest: c.Digest()})
		return nil
	}
	tableGPA, err := fw.KernelHashesGPA()
	if err != nil {
		return err
	}
	if s.Size != snp.PageSize {
		return fmt.Errorf("measure: OVMF SNP_KERNEL_HASHES section is %#x bytes, want one page", s.Size)
	}
	page, err := kh.page(int(tableGPA & (snp.PageSize - 1)))
	if err != nil {
		return err
	}
	if err := c.AddPage(uint64(s.GPA), snp.PageNormal, page); err != nil {
		return err
	}
	m.Regions = append(m.Regions, Region{GPA: hexnum.Uint64(s.GPA), Pages: 1, Type: snp.PageNormal, What: "kernel hashes (SHA-256 of kernel, initrd, cmdline)", Digest: c.Digest()})
	return nil
}
