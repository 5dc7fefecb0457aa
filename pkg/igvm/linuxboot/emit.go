package linuxboot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// compatMask is the compatibility mask of the one (SEV-SNP) platform.
const compatMask = 1

// IGVM returns an igvm.Builder holding the image as igvmgen lays out its
// headers: SUPPORTED_PLATFORM (SEV-SNP, VTL 0), GUEST_POLICY, then one
// directive per page in ascending GPA order, with PARAMETER_AREA,
// VP_COUNT_PARAMETER, MEMORY_MAP and PARAMETER_INSERT at the parameter page
// and VP_CONTEXT at the VMSA page (LayoutKVM has no parameter page, and its
// VMSA page, at KVMVMSAGPA, is the last). No SNP_ID_BLOCK is added; a
// caller that signs the image appends one. Page data is referenced, not
// copied.
func (img *Image) IGVM() *igvm.Builder {
	b := &igvm.Builder{}
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: compatMask, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: uint64(img.Policy), CompatibilityMask: compatMask}, nil)
	for _, p := range img.Pages {
		switch p.Kind {
		case PageNormal:
			b.AddBytes(&igvm.PageData{GPA: p.GPA, CompatibilityMask: compatMask, DataType: igvm.DataNormal}, p.Data)
		case PageCPUID:
			b.AddBytes(&igvm.PageData{GPA: p.GPA, CompatibilityMask: compatMask, DataType: igvm.DataCPUID}, p.Data)
		case PageSecrets:
			b.Add(&igvm.PageData{GPA: p.GPA, CompatibilityMask: compatMask, DataType: igvm.DataSecrets}, nil)
		case PageParameter:
			b.Add(&igvm.ParameterArea{NumberOfBytes: pageSize, ParameterAreaIndex: 0}, nil)
			b.Add(&igvm.VPCountParameter{ParameterAreaIndex: 0, ByteOffset: ParamVPCountOffset}, nil)
			b.Add(&igvm.MemoryMap{ParameterAreaIndex: 0, ByteOffset: ParamMemoryMapOffset}, nil)
			b.Add(&igvm.ParameterInsert{GPA: p.GPA, CompatibilityMask: compatMask, ParameterAreaIndex: 0}, nil)
		case PageVMSA:
			b.AddBytes(&igvm.VPContext{GPA: p.GPA, CompatibilityMask: compatMask, VPIndex: 0}, p.Data)
		}
	}
	return b
}

// WriteTo writes the image as a canonical IGVM file (see IGVM).
func (img *Image) WriteTo(w io.Writer) (int64, error) {
	return img.IGVM().WriteTo(w)
}

// Result describes an IGVM file Write wrote: what "imagebuilder igvm
// build --json" prints. Addresses and registers are hex numbers in JSON.
type Result struct {
	Layout       LayoutKind             `json:"layout"`
	Size         int64                  `json:"size"`
	SHA256       string                 `json:"sha256"`
	Pages        int                    `json:"pages"`
	Policy       snp.GuestPolicy        `json:"policy"`
	BootProtocol string                 `json:"boot_protocol"`
	PrefAddress  hexnum.Uint64          `json:"pref_address"`
	InitSize     hexnum.Uint64          `json:"init_size"`
	KernelEntry  hexnum.Uint64          `json:"kernel_entry"`
	PayloadBytes int                    `json:"payload_bytes"`
	BootParams   hexnum.Uint64          `json:"boot_params"`
	Cmdline      hexnum.Uint64          `json:"cmdline_gpa"`
	CmdlineBytes int                    `json:"cmdline_bytes"`
	Ramdisk      hexnum.Uint64          `json:"ramdisk_gpa"`
	RamdiskSize  uint64                 `json:"ramdisk_size"`
	CCBlob       hexnum.Uint64          `json:"cc_blob"`
	End          hexnum.Uint64          `json:"end"`
	ACPIEnd      hexnum.Uint64          `json:"acpi_end"`
	E820         []bootparams.E820Entry `json:"e820"`
	// ACPITables lists where each table was placed, when the ACPI pages
	// were built from tables.
	ACPITables []ACPITable `json:"acpi_tables,omitempty"`
	VMSA       Registers   `json:"vmsa"`
	// VMSAGPA is where the VP context of vCPU 0 is.
	VMSAGPA hexnum.Uint64 `json:"vmsa_gpa"`
}

// Registers are the initial registers of vCPU 0 that the layout sets.
type Registers struct {
	RIP         hexnum.Uint64 `json:"rip"`
	RSP         hexnum.Uint64 `json:"rsp"`
	RSI         hexnum.Uint64 `json:"rsi"`
	CR0         hexnum.Uint64 `json:"cr0"`
	CR3         hexnum.Uint64 `json:"cr3"`
	CR4         hexnum.Uint64 `json:"cr4"`
	EFER        hexnum.Uint64 `json:"efer"`
	SEVFeatures hexnum.Uint64 `json:"sev_features"`
}

// Write writes the image as a canonical IGVM file to w, sequentially (w
// may be a pipe), and describes what it wrote. It stops with ctx's error
// soon after ctx is cancelled (w then holds a partial file).
func (img *Image) Write(ctx context.Context, w io.Writer) (*Result, error) {
	h := sha256.New()
	n, err := img.IGVM().Write(ctx, io.MultiWriter(w, h))
	if err != nil {
		return nil, err
	}
	L, v := &img.Layout, &img.VMSA
	r := &Result{
		Layout: L.Kind, VMSAGPA: hexnum.Uint64(L.VMSA),
		Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Pages: len(img.Pages), Policy: img.Policy,
		BootProtocol: img.kernel.Protocol(), PrefAddress: hexnum.Uint64(img.kernel.PrefAddress), InitSize: hexnum.Uint64(img.kernel.InitSize),
		KernelEntry: hexnum.Uint64(L.KernelEntry), PayloadBytes: L.PayloadBytes,
		BootParams: hexnum.Uint64(L.BootParams), Cmdline: hexnum.Uint64(L.Cmdline), CmdlineBytes: L.CmdlineBytes,
		Ramdisk: hexnum.Uint64(L.Ramdisk), RamdiskSize: L.RamdiskSize, CCBlob: hexnum.Uint64(L.CCBlob),
		End: hexnum.Uint64(L.End), ACPIEnd: hexnum.Uint64(L.ACPIEnd), E820: L.E820, ACPITables: img.acpiTables,
		VMSA: Registers{
			RIP: hexnum.Uint64(v.RIP), RSP: hexnum.Uint64(v.RSP), RSI: hexnum.Uint64(v.RSI),
			CR0: hexnum.Uint64(v.CR0), CR3: hexnum.Uint64(v.CR3), CR4: hexnum.Uint64(v.CR4),
			EFER: hexnum.Uint64(v.EFER), SEVFeatures: hexnum.Uint64(v.SEVFeatures),
		},
	}
	return r, nil
}
