// Package igvm reads, validates and writes IGVM files (Independent Guest
// Virtual Machine format, microsoft/igvm igvm_defs), the file format
// cloud-hypervisor loads to start an SEV-SNP guest.
//
// # Format
//
// A file is a 24-byte FixedHeader, a section of variable headers and file
// data. Each variable header is a type (HeaderType), a body length and the
// body, padded to 8 bytes. This package has one Go struct per body, with
// the exact little-endian layout of the specification, each implementing
// Header: SupportedPlatform (platform section); GuestPolicy,
// RelocatableRegion, PageTableRelocation (initialization section);
// ParameterArea, PageData, ParameterInsert, VPContext, RequiredMemory,
// VPCountParameter, SRAT, MADT, MMIORanges, SNPIDBlock, MemoryMap,
// ErrorRange, CommandLine, SLIT, PPTT, VBSMeasurement, DeviceTree,
// EnvironmentInfo (directive section). A header of an unknown type with
// the optional bit (bit 31) set is kept as Unknown; any other unknown type
// is an error. The checksum is CRC-32/IEEE over the fixed header (with the
// checksum field zero) followed by the variable header section; file data
// is not covered. A file_offset is absolute and 0 means "no data" (zeros).
//
// # Reading
//
// Open reads only the fixed header and the variable header section, checks
// them and returns a File; file data is read on demand with File.Data or
// File.DataReader, so a large file is never read whole. The checks follow
// the reference Rust parser (microsoft/igvm igvm/src/lib.rs) and a few
// more: file size equal to total_file_size, file data present after the
// headers, magic, version 1, CRC, every header inside the section with the
// exact body length of its type, sections in order (platform →
// initialization → directive), at least one platform and no platform type
// or mask twice, one bit per platform mask, highest_vtl 0 or 2, platform
// version 1, compatibility masks made only of declared platform bits, a
// VP_CONTEXT mask equal to exactly one platform's mask, 4 KiB-aligned GPAs
// (2 MiB for 2 MiB pages), known page data types and flags, zero reserved
// fields, page-multiple sizes, file data inside [end of headers, end of
// file), parameter areas allocated once, at most MaxParameterAreaBytes of
// them in all, used only before their insert and
// inserted once, parameter byte offsets inside their area, relocation
// regions well-formed and not overlapping, at most one page-table
// relocation region per platform and no parameter insert inside it, and
// (reading one page per VP_CONTEXT) an SEV-SNP VMSA page zero after its
// 0x670-byte save area. Padding bytes
// between headers are not checked (igvmgen pads with ASCII '0'). The first
// violation is returned as a *FormatError naming the header index, type
// and file offset.
//
// File.Memory gives a view of guest memory by GPA over the PAGE_DATA
// directives (Memory.ReadAt reads across pages, only the pages asked for);
// File.ParameterArea finds a parameter area by index; DataSize, HasData and
// ParameterOf describe a header's data and parameter location.
//
// # Writing
//
// A Builder takes headers in order, each with an optional data source
// (an *io.SectionReader; Bytes wraps a []byte), and Write (or WriteTo,
// without a context) writes a canonical file: headers padded with zeros,
// file data right after the headers, identical contents stored once,
// all-zero pages as file_offset 0. It applies the same validation as Open
// and writes sequentially (w may be a pipe). Builder.CopyFile re-encodes
// a File: reading and writing a valid file keeps its headers (other than
// file offsets) and every page's contents. Data sources are read twice
// (hash, then copy) through small buffers: a 64 MiB initrd given as page
// sections of its file is never held in memory. ReplaceIDBlock rewrites a
// file with its SNP_ID_BLOCK replaced (or removed); SNPIDBlock converts to
// and from the SEV-SNP ABI structures of pkg/snp, which sign and verify
// them.
//
// # Example
//
//	var b igvm.Builder
//	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
//	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
//	b.Add(&igvm.PageData{GPA: 0x100000, CompatibilityMask: 1}, igvm.Bytes(page))
//	b.Add(&igvm.VPContext{GPA: 0x803000, CompatibilityMask: 1}, igvm.Bytes(vmsa.Marshal()))
//	_, err := b.WriteTo(w)
//
//	f, err := igvm.Open(file, size)
//	for _, h := range f.Directives() {
//		if p, ok := h.(*igvm.PageData); ok {
//			data, err := f.Data(p) // 4 KiB, zeros when FileOffset is 0
//		}
//	}
package igvm
