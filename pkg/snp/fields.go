package snp

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"sort"
)

// vmsaNames are the kernel's names (struct sev_es_save_area) of the VMSA
// fields whose Go name does not simply lower-case to it.
var vmsaNames = map[string]string{
	"VMPL0SSP": "vmpl0_ssp", "VMPL1SSP": "vmpl1_ssp", "VMPL2SSP": "vmpl2_ssp", "VMPL3SSP": "vmpl3_ssp",
	"UCET": "u_cet", "DR0AddrMask": "dr0_addr_mask", "DR1AddrMask": "dr1_addr_mask",
	"DR2AddrMask": "dr2_addr_mask", "DR3AddrMask": "dr3_addr_mask", "SCET": "s_cet",
	"ISSTAddr": "isst_addr", "KernelGSBase": "kernel_gs_base", "SysenterCS": "sysenter_cs",
	"SysenterESP": "sysenter_esp", "SysenterEIP": "sysenter_eip", "GPAT": "g_pat",
	"DebugCtl": "dbgctl", "BrFrom": "br_from", "BrTo": "br_to", "LastExcpFrom": "last_excp_from",
	"LastExcpTo": "last_excp_to", "TSCAux": "tsc_aux", "GuestExitInfo1": "guest_exit_info_1",
	"GuestExitInfo2": "guest_exit_info_2", "GuestExitIntInfo": "guest_exit_int_info",
	"GuestNRIP": "guest_nrip", "SEVFeatures": "sev_features", "VIntrCtrl": "vintr_ctrl",
	"GuestExitCode": "guest_exit_code", "VirtualTOM": "virtual_tom", "TLBID": "tlb_id",
	"PCPUID": "pcpu_id", "EventInj": "event_inj", "X87DP": "x87_dp", "X87FTW": "x87_ftw",
	"X87FSW": "x87_fsw", "X87FCW": "x87_fcw", "X87FOP": "x87_fop", "X87DS": "x87_ds",
	"X87CS": "x87_cs", "X87RIP": "x87_rip", "FPRegX87": "fpreg_x87", "FPRegXMM": "fpreg_xmm",
}

// Field is a named byte range of a structure.
type Field struct {
	Name   string
	Offset int
	Size   int
}

// vmsaFields is the VMSA page as byte ranges, in offset order.
var vmsaFields = func() []Field {
	var out []Field
	var walk func(t reflect.Type, prefix string, base int)
	walk = func(t reflect.Type, prefix string, base int) {
		off := base
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			size := binary.Size(reflect.New(f.Type).Elem().Interface())
			name := vmsaNames[f.Name]
			if name == "" {
				name = toLower(f.Name)
			}
			switch {
			case f.Name == "_":
				name = "reserved"
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, prefix+name+".", off)
				off += size
				continue
			}
			out = append(out, Field{prefix + name, off, size})
			off += size
		}
	}
	walk(reflect.TypeOf(VMSA{}), "", 0)
	end := out[len(out)-1].Offset + out[len(out)-1].Size
	// Beyond the struct: the YMM high halves up to the 0x670-byte save
	// area, then the rest of the page, which must be zero.
	out = append(out, Field{"fpreg_ymm", end, 0x670 - end}, Field{"reserved", 0x670, PageSize - 0x670})
	return out
}()

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// VMSAField returns the field of a VMSA page that holds byte offset off,
// in the kernel's spelling (struct sev_es_save_area: "rip", "sev_features",
// "cs.attrib", "reserved" for padding); ok is false outside the page.
func VMSAField(off int) (f Field, ok bool) {
	if off < 0 || off >= PageSize {
		return Field{}, false
	}
	i := sort.Search(len(vmsaFields), func(i int) bool { return vmsaFields[i].Offset+vmsaFields[i].Size > off })
	return vmsaFields[i], true
}

// CPUID page layout (SEV-SNP firmware ABI, "CPUID page"; Linux struct
// snp_cpuid_table): a count, 12 reserved bytes, then up to 64 entries of
// 48 bytes.
const (
	CPUIDPageHeaderSize = 16
	CPUIDEntrySize      = 48
	CPUIDMaxEntries     = 64
)

var cpuidEntryFields = []Field{
	{"eax_in", 0, 4}, {"ecx_in", 4, 4}, {"xcr0_in", 8, 8}, {"xss_in", 16, 8},
	{"eax", 24, 4}, {"ebx", 28, 4}, {"ecx", 32, 4}, {"edx", 36, 4}, {"reserved", 40, 8},
}

// CPUIDPageField returns the field of a CPUID page that holds byte offset
// off: "count", "reserved", or "entries[N].NAME" (eax_in, ecx_in, xcr0_in,
// xss_in, eax, ebx, ecx, edx, reserved); ok is false outside the page.
func CPUIDPageField(off int) (f Field, ok bool) {
	switch {
	case off < 0 || off >= PageSize:
		return Field{}, false
	case off < 4:
		return Field{"count", 0, 4}, true
	case off < CPUIDPageHeaderSize:
		return Field{"reserved", 4, CPUIDPageHeaderSize - 4}, true
	}
	e := (off - CPUIDPageHeaderSize) / CPUIDEntrySize
	if e >= CPUIDMaxEntries {
		end := CPUIDPageHeaderSize + CPUIDMaxEntries*CPUIDEntrySize
		return Field{"reserved", end, PageSize - end}, true
	}
	base := CPUIDPageHeaderSize + e*CPUIDEntrySize
	in := off - base
	for _, x := range cpuidEntryFields {
		if in < x.Offset+x.Size {
			return Field{fmt.Sprintf("entries[%d].%s", e, x.Name), base + x.Offset, x.Size}, true
		}
	}
	return Field{}, false // unreachable: the fields cover the entry
}

// sevFeatureNames name the bits of the VMSA's sev_features (AMD APM vol. 2,
// "SEV_FEATURES").
var sevFeatureNames = []string{
	0: "SNP_ACTIVE", 1: "VTOM", 2: "REFLECT_VC", 3: "RESTRICTED_INJECTION",
	4: "ALTERNATE_INJECTION", 5: "DEBUG_SWAP", 6: "PREVENT_HOST_IBS", 7: "BTB_ISOLATION",
	8: "VMPL_SSS", 9: "SECURE_TSC", 10: "VMGEXIT_PARAMETER", 12: "IBS_VIRTUALIZATION",
	14: "VMSA_REG_PROT", 15: "SMT_PROTECTION",
}

// SEVFeatureNames names the bits set in a VMSA's sev_features, lowest
// first ("SNP_ACTIVE", "DEBUG_SWAP", ...; "BIT11" for a bit without a
// name). It never returns nil.
func SEVFeatureNames(v uint64) []string {
	out := []string{}
	for b := 0; b < 64; b++ {
		if v&(1<<b) == 0 {
			continue
		}
		if b < len(sevFeatureNames) && sevFeatureNames[b] != "" {
			out = append(out, sevFeatureNames[b])
		} else {
			out = append(out, fmt.Sprintf("BIT%d", b))
		}
	}
	return out
}
