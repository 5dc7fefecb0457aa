package measure

import (
	"cmp"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
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
	// ProfileKVM is cloud-hypervisor or QEMU on KVM (QEMU backends/igvm.c,
	// coconut-svsm igvmmeasure --native-zero): pages in directive order; a
	// page without file data is ZERO; one UNMEASURED page per page of an
	// inserted parameter area; then one VMSA per vCPU at KVMVMSAGPA, built
	// by KVM (vCPU 0 from the file's VP context, the other vCPUs from their
	// reset state, see ResetVMSA).
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
	// KVMChecksSkipped lists the rules of KVMCheckError the file breaks,
	// when Options.SkipKVMChecks computed the kvm digest anyway: the digest
	// is then hypothetical (KVM would refuse the file, or its author meant
	// another measurement).
	KVMChecksSkipped []string `json:"kvm_checks_skipped,omitempty"`
	// Warnings are differences between the file and what the loader
	// measures that the digest already accounts for.
	Warnings []string `json:"warnings,omitempty"`
	Regions  []Region `json:"regions,omitempty"`
}

// KVMCheckError lists why KVM would not measure (or launch) the file as its
// author meant: the checks of coconut-svsm igvmmeasure --check-kvm.
type KVMCheckError struct {
	Reasons []string
}

// Error lists the reasons, separated by semicolons.
func (e *KVMCheckError) Error() string {
	return "measure: kvm: " + strings.Join(e.Reasons, "; ")
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
	if opts.VCPUs == 0 {
		opts.VCPUs = 1
	}
	if opts.VCPUs < 1 || opts.VCPUs > MaxVCPUs {
		return nil, fmt.Errorf("measure: %d vCPUs: want 1 to %d", opts.VCPUs, MaxVCPUs)
	}
	if opts.HostKernel == (HostKernel{}) {
		opts.HostKernel = DefaultHostKernel
	}
	mask, err := SNPPlatform(f)
	if err != nil {
		return nil, err
	}
	res := &Result{Profile: opts.Profile, VCPUs: opts.VCPUs}
	for _, h := range f.Initialization() {
		if p, ok := h.(*igvm.GuestPolicy); ok && p.CompatibilityMask&mask != 0 {
			res.Policy = snp.GuestPolicy(p.Policy)
		}
	}
	m := &measurer{ctx: ctx, f: f, opts: opts, res: res, chain: NewChain(Digest{}), buf: make([]byte, snp.PageSize), run: make([]byte, 0, maxRun*snp.PageSize)}
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
	res.Digest = m.chain.Digest()
	res.Pages = m.chain.Pages()
	return res, nil
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
			if err := m.pageData(x, false); err != nil {
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

func (m *measurer) kvm(mask uint32) error {
	items, err := m.directives(mask)
	if err != nil {
		return err
	}
	host := m.opts.HostKernel
	m.res.HostKernel = host.String()
	var reasons []string
	contexts := map[uint16]*igvm.VPContext{}
	var nctx int
	orderBad := false
	m.items = items
	m.pool = newHashPool(m.f, items, false)
	for i, it := range items {
		m.next = i + 1
		switch x := it.hdr.(type) {
		case *igvm.PageData:
			if nctx > 0 && !orderBad {
				orderBad = true
				reasons = append(reasons, fmt.Sprintf("page directive at %#x follows the VMSA: KVM measures VMSAs at launch finish, after every page, so the VMSA must be the last page directive", x.GPA))
			}
			if err := m.pageData(x, true); err != nil {
				return err
			}
		case *igvm.ParameterInsert:
			if nctx > 0 && !orderBad {
				orderBad = true
				reasons = append(reasons, fmt.Sprintf("parameter insert at %#x follows the VMSA: KVM measures VMSAs at launch finish, after every page, so the VMSA must be the last page directive", x.GPA))
			}
			pages := (it.size + snp.PageSize - 1) / snp.PageSize
			for i := uint64(0); i < pages; i++ {
				if err := m.add(x.GPA+i*snp.PageSize, snp.PageUnmeasured, Digest{}, "IGVM parameter area"); err != nil {
					return err
				}
			}
		case *igvm.VPContext:
			nctx++
			if nctx == 2 {
				reasons = append(reasons, "more than one VMSA: QEMU/KVM only takes the initial state of the first vCPU from the file")
			}
			if x.GPA != KVMVMSAGPA {
				reasons = append(reasons, fmt.Sprintf("VMSA at GPA %#x: KVM always measures VMSAs at %#x, so the file must place it there", x.GPA, uint64(KVMVMSAGPA)))
			}
			if _, dup := contexts[x.VPIndex]; !dup {
				contexts[x.VPIndex] = x
			}
		}
	}
	bsp, ok := contexts[0]
	if !ok {
		return fmt.Errorf("measure: kvm: the IGVM file has no VP context for vCPU 0 (SNP platform mask %#x)", mask)
	}
	page, v, err := m.fileVMSA(bsp)
	if err != nil {
		return err
	}
	if v.CR0 != 0x30 && v.CR0 != 0x31 {
		reasons = append(reasons, fmt.Sprintf("VMSA CR0 is %#x: KVM sets the initial CR0 itself (0x31 protected mode, or 0x30 real mode, without paging), so the file's VMSA must hold that value", v.CR0))
	}
	if len(reasons) > 0 && !m.opts.SkipKVMChecks {
		return &KVMCheckError{Reasons: reasons}
	}
	m.res.KVMChecksSkipped = reasons
	features := v.SEVFeatures
	if m.opts.GuestFeatures != nil {
		features = *m.opts.GuestFeatures
	}
	if features&FeatureSNPActive == 0 {
		return fmt.Errorf("measure: kvm: guest SEV features %#x lack SNP_ACTIVE (bit 0)", features)
	}
	m.res.GuestFeatures = hexnum.Uint64(host.EffectiveFeatures(features))
	kvmPage := m.kvmVMSA(page, v, features)

	if err := m.add(KVMVMSAGPA, snp.PageVMSA, Digest(sha512.Sum384(kvmPage)), "VMSA of vCPU 0 (from the file)"); err != nil {
		return err
	}
	m.flush()
	one := m.chain.Digest()
	m.res.OneVCPUDigest = &one
	// Every AP without a VP context in the file starts from the same reset
	// state, so its VMSA hash is computed once.
	var ap *Digest
	resetHash := func() (Digest, error) {
		if ap == nil {
			if m.opts.CPU == nil {
				return Digest{}, errors.New("measure: kvm: more than one vCPU needs the CPU model (its signature is in every AP's VMSA)")
			}
			d := Digest(sha512.Sum384(ResetVMSA(0xfffffff0, *m.opts.CPU, features, host).Marshal()))
			ap = &d
		}
		return *ap, nil
	}
	if len(contexts) == 1 && m.opts.CPU != nil {
		m.res.CPU, m.res.CPUSignature = m.opts.CPU.Name, hexnum.Uint64(m.opts.CPU.Signature)
		h, _ := resetHash()
		m.res.APVMSAHash = &h
	}
	for i := 1; i < m.opts.VCPUs; i++ {
		var h Digest
		var what string
		if ctx, ok := contexts[uint16(i)]; ok {
			p, pv, err := m.fileVMSA(ctx)
			if err != nil {
				return err
			}
			h, what = Digest(sha512.Sum384(m.kvmVMSA(p, pv, features))), fmt.Sprintf("VMSA of vCPU %d (from the file)", i)
		} else {
			if h, err = resetHash(); err != nil {
				return err
			}
			what = fmt.Sprintf("VMSA of vCPU %d (reset state)", i)
		}
		if err := m.add(KVMVMSAGPA, snp.PageVMSA, h, what); err != nil {
			return err
		}
	}
	return nil
}

// kvmVMSA returns the VMSA page KVM measures for a vCPU whose registers
// QEMU set from the file's VMSA page: the same bytes, with the fields
// kvm_amd writes itself (HostKernel.applyKVM). Differences from the file
// are reported as warnings.
func (m *measurer) kvmVMSA(page []byte, v *snp.VMSA, features uint64) []byte {
	out := append([]byte(nil), page...)
	w := *v
	m.opts.HostKernel.applyKVM(&w, features)
	if w.SEVFeatures != v.SEVFeatures {
		m.res.Warnings = append(m.res.Warnings, fmt.Sprintf("KVM measures sev_features %#x, the file's VMSA has %#x", w.SEVFeatures, v.SEVFeatures))
		binary.LittleEndian.PutUint64(out[0x3b0:], w.SEVFeatures)
	}
	if w.MXCSR != v.MXCSR || w.X87FCW != v.X87FCW {
		m.res.Warnings = append(m.res.Warnings, fmt.Sprintf("host kernel %s (KVM_SEV_INIT2) measures MXCSR %#x and FCW %#x, the file's VMSA has %#x and %#x", m.opts.HostKernel, w.MXCSR, w.X87FCW, v.MXCSR, v.X87FCW))
		binary.LittleEndian.PutUint32(out[0x408:], w.MXCSR)
		binary.LittleEndian.PutUint16(out[0x410:], w.X87FCW)
	}
	return out
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

// pageData measures a PAGE_DATA directive (4 KiB or 2 MiB).
func (m *measurer) pageData(x *igvm.PageData, nativeZero bool) error {
	n := x.PageSize() / snp.PageSize
	var t snp.PageType
	switch {
	case x.DataType == igvm.DataSecrets:
		t = snp.PageSecrets
	case x.DataType == igvm.DataCPUID || x.DataType == igvm.DataCPUIDXF:
		t = snp.PageCPUID
	case x.Flags&igvm.PageFlagUnmeasured != 0:
		t = snp.PageUnmeasured
	case !igvm.HasData(x) && nativeZero:
		t = snp.PageZero
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
