package measure

import (
	"cmp"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// Profile names a hypervisor loader whose way of measuring an IGVM file the
// digest follows.
type Profile string

// Profiles.
const (
	// ProfileMSHV is cloud-hypervisor on Microsoft's hypervisor (the Azure
	// path), the model igvm-tooling's igvmgen measures: measured items
	// sorted by GPA; a page without file data is NORMAL over a zero page;
	// one UNMEASURED page per parameter-area insert; SECRETS and CPUID pages
	// typed; shared pages not measured; the file's own VMSA at the GPA of
	// its VP context. The vCPU count does not matter.
	ProfileMSHV Profile = "mshv"
	// ProfileKVM is QEMU (>= 10.1, -object igvm-cfg) on Linux KVM (host
	// >= 6.11), as their sources define it (docs/kvm-measurement.md; not
	// yet checked against an attestation report): pages in the order
	// QEMU's IGVM loader queues them (runs of consecutive PAGE_DATA
	// directives are handed over when the run ends, a parameter insert at
	// once, so an insert after an open run comes first); a page without
	// file data is a NORMAL page of zeros; one UNMEASURED page per page of
	// an inserted parameter area; then one VMSA per vCPU at KVMVMSAGPA,
	// built by KVM from the registers QEMU set: vCPU 0 from the file's VP
	// context, transformed as KVM rebuilds it (see Result.VMSAChanges),
	// vCPUs without a context from QEMU's reset state (ResetVMSA). A file
	// QEMU or KVM would refuse is a *KVMCheckError.
	ProfileKVM Profile = "kvm"
)

// Profiles lists the supported profiles.
var Profiles = []Profile{ProfileMSHV, ProfileKVM}

// ParseProfile checks a profile name.
func ParseProfile(s string) (Profile, error) {
	for _, p := range Profiles {
		if string(p) == strings.ToLower(s) {
			return p, nil
		}
	}
	return "", fmt.Errorf("measure: unknown profile %q (want mshv or kvm)", s)
}

// Options select how an IGVM file is measured.
type Options struct {
	Profile Profile
	// VCPUs is the number of vCPUs (1 to MaxVCPUs; 0 means 1). Only the kvm
	// profile depends on it.
	VCPUs int
	// CPU is the vCPU model; kvm needs it for more than one vCPU (its
	// signature is in the APs' RDX).
	CPU *CPUModel
	// GuestFeatures overrides the SEV features of the guest (the kvm
	// profile's VMSAs); nil takes them from the file's VMSA, as QEMU passes
	// them to KVM_SEV_INIT2.
	GuestFeatures *uint64
	// HostKernel is the host kernel for kvm (zero: DefaultHostKernel).
	HostKernel HostKernel
	// SkipKVMChecks computes a kvm digest even when the file breaks the
	// rules that let KVM launch it as written (see KVMCheckError).
	SkipKVMChecks bool
	// Explain records the measured regions (Result.Regions).
	Explain bool
}

// Region is a run of measured pages: contiguous GPAs, one page type and one
// meaning, with the digest after its last page.
type Region struct {
	GPA      hexnum.Uint64 `json:"gpa"`
	Pages    uint64        `json:"pages"`
	Type     snp.PageType  `json:"-"`
	TypeName string        `json:"type"`
	What     string        `json:"what"`
	Digest   Digest        `json:"digest_after"`
}

// End is the GPA after the region's last page.
func (r Region) End() uint64 { return uint64(r.GPA) + r.Pages*snp.PageSize }

// Result is the measurement of an IGVM file under one profile.
type Result struct {
	Profile Profile `json:"profile"`
	Digest  Digest  `json:"digest"`
	VCPUs   int     `json:"vcpus"`
	// CPU and CPUSignature are the vCPU model (kvm with APs only).
	CPU          string        `json:"cpu,omitempty"`
	CPUSignature hexnum.Uint64 `json:"cpu_signature,omitempty"`
	// GuestFeatures are the sev_features of the KVM-built VMSAs (kvm).
	GuestFeatures hexnum.Uint64 `json:"guest_features,omitempty"`
	HostKernel    string        `json:"host_kernel,omitempty"`
	// Policy is the file's SEV-SNP guest policy.
	Policy snp.GuestPolicy `json:"policy"`
	// OneVCPUDigest is the kvm digest with one vCPU and APVMSAHash the
	// contents hash of every AP's VMSA page: digest(N) is OneVCPUDigest
	// extended by N-1 VMSA pages at KVMVMSAGPA with that hash (ExtendVCPUs).
	OneVCPUDigest *Digest `json:"one_vcpu_digest,omitempty"`
	APVMSAHash    *Digest `json:"ap_vmsa_sha384,omitempty"`
	// Pages is the number of PAGE_INFO records in the chain.
	Pages uint64 `json:"pages"`
	// IDBlockDigest is the launch digest the file's SNP_ID_BLOCK expects,
	// if it has one.
	IDBlockDigest *Digest `json:"id_block_digest,omitempty"`
	// Hypothetical is set when Options.SkipKVMChecks computed a kvm digest
	// although QEMU or KVM would refuse the launch; KVMChecksSkipped lists
	// the rules broken (those of KVMCheckError). No attestation report can
	// carry such a digest.
	Hypothetical     bool           `json:"hypothetical,omitempty"`
	KVMChecksSkipped []KVMViolation `json:"kvm_checks_skipped,omitempty"`
	// VMSAChanges are the fields of vCPU 0's VMSA that KVM measures with
	// other values than the file's VP context holds (kvm), in offset order.
	// A file laid out for KVM has none.
	VMSAChanges []VMSAChange `json:"bsp_vmsa_changes,omitempty"`
	// Warnings are differences between the file and what the loader
	// measures that the digest already accounts for.
	Warnings []string `json:"warnings,omitempty"`
	Regions  []Region `json:"regions,omitempty"`
}

// KVMCheckError lists the QEMU and KVM acceptance rules a file breaks
// (docs/kvm-measurement.md section 7): QEMU or KVM would stop before the
// launch, so no attestation report can carry its kvm digest.
// Options.SkipKVMChecks measures such a file anyway, marking the result
// hypothetical.
type KVMCheckError struct {
	Violations []KVMViolation
}

// Error lists the violations, separated by semicolons.
func (e *KVMCheckError) Error() string {
	s := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		s[i] = v.String()
	}
	return "measure: kvm: QEMU/KVM would refuse this launch: " + strings.Join(s, "; ")
}

// SNPPlatform returns the compatibility mask of the file's SEV-SNP
// platform, or an error if the file does not support SEV-SNP.
func SNPPlatform(f *igvm.File) (uint32, error) {
	for _, h := range f.Platforms() {
		if p, ok := h.(*igvm.SupportedPlatform); ok && p.PlatformType == igvm.PlatformSEVSNP {
			return p.CompatibilityMask, nil
		}
	}
	var names []string
	for _, h := range f.Platforms() {
		if p, ok := h.(*igvm.SupportedPlatform); ok {
			names = append(names, igvm.PlatformName(p.PlatformType))
		}
	}
	return 0, fmt.Errorf("measure: the IGVM file has no SEV-SNP platform (it supports %s)", strings.Join(names, ", "))
}

// item is one measured directive, in the order the profile measures it.
type item struct {
	gpa  uint64
	hdr  igvm.Header
	size uint64 // parameter area size for inserts
}

// MeasureIGVMFile opens the IGVM file in r and measures it (see MeasureIGVM).
func MeasureIGVMFile(ctx context.Context, r io.ReaderAt, size int64, opts Options) (*Result, error) {
	f, err := igvm.Open(r, size)
	if err != nil {
		return nil, err
	}
	return MeasureIGVM(ctx, f, opts)
}

// MeasureIGVM computes the launch digest of an IGVM file under a profile.
// Page contents are streamed from the file. The work is proportional to
// the file: its pages, and its parameter areas, which igvm.Open bounds. It
// stops with ctx's error soon after ctx is cancelled.
func MeasureIGVM(ctx context.Context, f *igvm.File, opts Options) (*Result, error) {
	m, mask, err := newMeasurer(ctx, f, opts)
	if err != nil {
		return nil, err
	}
	defer func() { m.pool.stop() }()
	if opts.Explain {
		m.labels = newLabeler(f, mask)
	}
	switch opts.Profile {
	case ProfileMSHV:
		err = m.mshv(mask)
	case ProfileKVM:
		err = m.kvm(mask)
	default:
		err = fmt.Errorf("measure: unknown profile %q (want mshv or kvm)", opts.Profile)
	}
	if err != nil {
		return nil, err
	}
	m.flush()
	m.res.Digest = m.chain.Digest()
	m.res.Pages = m.chain.Pages()
	return m.res, nil
}

// newMeasurer checks opts (filling in the defaults) and starts the
// measurement of f: the SEV-SNP platform's mask and the policy.
func newMeasurer(ctx context.Context, f *igvm.File, opts Options) (*measurer, uint32, error) {
	if opts.VCPUs == 0 {
		opts.VCPUs = 1
	}
	if opts.VCPUs < 1 || opts.VCPUs > MaxVCPUs {
		return nil, 0, fmt.Errorf("measure: %d vCPUs: want 1 to %d", opts.VCPUs, MaxVCPUs)
	}
	if opts.HostKernel == (HostKernel{}) {
		opts.HostKernel = DefaultHostKernel
	}
	mask, err := SNPPlatform(f)
	if err != nil {
		return nil, 0, err
	}
	res := &Result{Profile: opts.Profile, VCPUs: opts.VCPUs}
	for _, h := range f.Initialization() {
		if p, ok := h.(*igvm.GuestPolicy); ok && p.CompatibilityMask&mask != 0 {
			res.Policy = snp.GuestPolicy(p.Policy)
		}
	}
	m := &measurer{ctx: ctx, f: f, opts: opts, res: res, chain: NewChain(Digest{}), buf: make([]byte, snp.PageSize), run: make([]byte, 0, maxRun*snp.PageSize)}
	return m, mask, nil
}

type measurer struct {
	ctx   context.Context
	f     *igvm.File
	opts  Options
	res   *Result
	chain *Chain
	buf   []byte
	// Read-ahead of the page data of consecutive directives whose file
	// data is contiguous: run holds file bytes [runOff, runOff+len(run)).
	items  []item
	next   int // index in items of the directive being measured + 1
	run    []byte
	runOff int64
	labels *labeler
	cur    *Region
	// pool hashes page contents ahead of the chain (nil: sequentially).
	pool *hashPool
}

// directives returns the directives that apply to the SNP platform, with
// the sizes of inserted parameter areas.
func (m *measurer) directives(mask uint32) ([]item, error) {
	areas := map[uint32]uint64{}
	items := make([]item, 0, len(m.f.Directives()))
	for _, h := range m.f.Directives() {
		switch x := h.(type) {
		case *igvm.ParameterArea:
			areas[x.ParameterAreaIndex] = x.NumberOfBytes
		case *igvm.PageData:
			if x.CompatibilityMask&mask != 0 {
				items = append(items, item{gpa: x.GPA, hdr: h})
			}
		case *igvm.ParameterInsert:
			if x.CompatibilityMask&mask != 0 {
				size, ok := areas[x.ParameterAreaIndex]
				if !ok {
					return nil, fmt.Errorf("measure: parameter insert at %#x names unknown parameter area %d", x.GPA, x.ParameterAreaIndex)
				}
				items = append(items, item{gpa: x.GPA, hdr: h, size: size})
			}
		case *igvm.VPContext:
			if x.CompatibilityMask&mask != 0 {
				items = append(items, item{gpa: x.GPA, hdr: h})
			}
		case *igvm.SNPIDBlock:
			if x.CompatibilityMask&mask != 0 {
				d := Digest(x.LD)
				m.res.IDBlockDigest = &d
			}
		}
	}
	return items, nil
}

func (m *measurer) mshv(mask uint32) error {
	items, err := m.directives(mask)
	if err != nil {
		return err
	}
	// Files are usually written in GPA order already (igvmgen's are):
	// checking is cheaper than sorting 16,000 items.
	byGPA := func(a, b item) int { return cmp.Compare(a.gpa, b.gpa) }
	if !slices.IsSortedFunc(items, byGPA) {
		slices.SortStableFunc(items, byGPA)
	}
	m.items = items
	m.pool = newHashPool(m.f, items, true)
	for i, it := range items {
		m.next = i + 1
		switch x := it.hdr.(type) {
		case *igvm.PageData:
			if x.Flags&igvm.PageFlagShared != 0 {
				continue // host-visible: not part of the launch
			}
			if err := m.pageData(x); err != nil {
				return err
			}
		case *igvm.ParameterInsert:
			if err := m.add(x.GPA, snp.PageUnmeasured, Digest{}, "IGVM parameter area"); err != nil {
				return err
			}
		case *igvm.VPContext:
			page, err := m.vmsaPage(x)
			if err != nil {
				return err
			}
			if err := m.add(x.GPA, snp.PageVMSA, Digest(sha512.Sum384(page)), fmt.Sprintf("VMSA of vCPU %d", x.VPIndex)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fileVMSA reads and decodes a VP context's VMSA page.
func (m *measurer) fileVMSA(x *igvm.VPContext) ([]byte, *snp.VMSA, error) {
	page, err := m.vmsaPage(x)
	if err != nil {
		return nil, nil, err
	}
	v, err := snp.UnmarshalVMSA(page)
	if err != nil {
		return nil, nil, fmt.Errorf("measure: VMSA of vCPU %d: %w", x.VPIndex, err)
	}
	return page, v, nil
}

// vmsaPage reads a VP context's VMSA page.
func (m *measurer) vmsaPage(x *igvm.VPContext) ([]byte, error) {
	page := make([]byte, snp.PageSize)
	if _, err := io.ReadFull(m.f.DataReader(x), page); err != nil {
		return nil, fmt.Errorf("measure: read VMSA of vCPU %d: %w", x.VPIndex, err)
	}
	return page, nil
}

// pageData measures a PAGE_DATA directive (4 KiB or 2 MiB, one PAGE_INFO
// per 4 KiB): SECRETS and CPUID pages by their type, a page with the
// unmeasured flag as UNMEASURED, a page without file data as a NORMAL page
// of zeros (both profiles: igvm_defs calls it "a normal private page with
// zeros"), any other as NORMAL over its data.
func (m *measurer) pageData(x *igvm.PageData) error {
	n := x.PageSize() / snp.PageSize
	var t snp.PageType
	switch {
	case x.DataType == igvm.DataSecrets:
		t = snp.PageSecrets
	case x.DataType == igvm.DataCPUID || x.DataType == igvm.DataCPUIDXF:
		t = snp.PageCPUID
	case x.Flags&igvm.PageFlagUnmeasured != 0:
		t = snp.PageUnmeasured
	case !igvm.HasData(x):
		for i := uint64(0); i < n; i++ {
			if err := m.add(x.GPA+i*snp.PageSize, snp.PageNormal, zeroPageHash, noData); err != nil {
				return err
			}
		}
		return nil
	case m.pool != nil:
		for i := uint64(0); i < n; i++ {
			gpa := x.GPA + i*snp.PageSize
			h, err := m.pool.next(gpa)
			if err != nil {
				return err
			}
			if err := m.add(gpa, snp.PageNormal, h, ""); err != nil {
				return err
			}
		}
		return nil
	default:
		if n == 1 {
			page, err := m.readPage(x)
			if err != nil {
				return err
			}
			return m.addPage(x.GPA, page)
		}
		r := m.f.DataReader(x)
		for i := uint64(0); i < n; i++ {
			if _, err := io.ReadFull(r, m.buf); err != nil {
				return fmt.Errorf("measure: read page data at %#x: %w", x.GPA+i*snp.PageSize, err)
			}
			if err := m.addPage(x.GPA+i*snp.PageSize, m.buf); err != nil {
				return err
			}
		}
		return nil
	}
	what := ""
	if !igvm.HasData(x) {
		what = noData
	}
	for i := uint64(0); i < n; i++ {
		if err := m.add(x.GPA+i*snp.PageSize, t, Digest{}, what); err != nil {
			return err
		}
	}
	return nil
}

// maxRun bounds the read-ahead (256 KiB).
const maxRun = 64

// readPage returns the 4 KiB file data of a PAGE_DATA directive, reading
// ahead the data of the directives that follow it when their file data is
// contiguous, so a large file costs one read per 256 KiB, not per page.
func (m *measurer) readPage(x *igvm.PageData) ([]byte, error) {
	if off := int64(x.FileOffset); off >= m.runOff && off+snp.PageSize <= m.runOff+int64(len(m.run)) {
		return m.run[off-m.runOff : off-m.runOff+snp.PageSize], nil
	}
	off := int64(x.FileOffset)
	end := off + snp.PageSize
	for i := m.next; i < len(m.items) && end-off < maxRun*snp.PageSize; i++ {
		y, ok := m.items[i].hdr.(*igvm.PageData)
		if !ok || !igvm.HasData(y) || y.PageSize() != snp.PageSize || int64(y.FileOffset) != end {
			break
		}
		end += snp.PageSize
	}
	m.run = m.run[:end-off]
	if _, err := m.f.ReadAt(m.run, off); err != nil {
		m.run = m.run[:0]
		return nil, fmt.Errorf("measure: read page data at %#x: %w", x.GPA, err)
	}
	m.runOff = off
	return m.run[:snp.PageSize], nil
}

// ctxCheckPages is the number of pages measured between two looks at the
// context (about 1 ms of work).
const ctxCheckPages = 1024

// addPage measures a NORMAL page with contents.
func (m *measurer) addPage(gpa uint64, page []byte) error {
	if err := m.chain.AddPage(gpa, snp.PageNormal, page); err != nil {
		return err
	}
	m.note(gpa, snp.PageNormal, "")
	return m.checkCtx()
}

// add extends the chain with a page whose contents hash is known.
func (m *measurer) add(gpa uint64, t snp.PageType, h Digest, what string) error {
	if err := m.chain.AddPageHash(gpa, t, h); err != nil {
		return err
	}
	m.note(gpa, t, what)
	return m.checkCtx()
}

// checkCtx returns the context's error every ctxCheckPages pages.
func (m *measurer) checkCtx() error {
	if m.chain.Pages()%ctxCheckPages == 0 {
		return m.ctx.Err()
	}
	return nil
}

// noData marks a page without file data for the labeler.
const noData = "\x00"

// note extends the current explain region or starts a new one.
func (m *measurer) note(gpa uint64, t snp.PageType, what string) {
	if m.labels == nil {
		return
	}
	if what == "" || what == noData {
		what = m.labels.label(gpa, t, what != noData)
	}
	if c := m.cur; c != nil && c.Type == t && c.What == what && c.End() == gpa {
		c.Pages++
		c.Digest = m.chain.Digest()
		return
	}
	m.flush()
	m.cur = &Region{GPA: hexnum.Uint64(gpa), Pages: 1, Type: t, TypeName: t.String(), What: what, Digest: m.chain.Digest()}
}

func (m *measurer) flush() {
	if m.cur != nil {
		m.res.Regions = append(m.res.Regions, *m.cur)
		m.cur = nil
	}
}
