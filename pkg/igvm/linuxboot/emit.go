package linuxboot

import (
	"io"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// compatMask is the compatibility mask of the one (SEV-SNP) platform.
const compatMask = 1

// IGVM returns an igvm.Builder holding the image as igvmgen lays out its
// headers: SUPPORTED_PLATFORM (SEV-SNP, VTL 0), GUEST_POLICY, then one
// directive per page in ascending GPA order, with PARAMETER_AREA,
// VP_COUNT_PARAMETER, MEMORY_MAP and PARAMETER_INSERT at the parameter page
// and VP_CONTEXT at the VMSA page. No SNP_ID_BLOCK is added; a caller that
// signs the image appends one. Page data is referenced, not copied.
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
