#!/usr/bin/env python3
"""Independent model of the SEV-SNP launch digest that QEMU (>= 10.1) + KVM
compute for an IGVM file, written from docs/kvm-measurement.md (which was
written from the QEMU and Linux sources), not from imagebuilder's Go code.
Standard library only.

  kvm_model.py FILE [--vcpus N] [--cpu MODEL] [--host-kernel X.Y]
               [--guest-features HEX] [--explain] [--json]
               [--hypothetical] [--flip RULES]

Exit status: 0 with a digest; 2 when the file breaks an acceptance rule
(docs/kvm-measurement.md section 7) and --hypothetical was not given; 1 on a
malformed file or bad arguments. With --hypothetical the digest of a refused
file is printed marked HYPOTHETICAL.

--flip takes a comma list of rule numbers 1-4 of issue 14 and applies the
*contrary* rule (the one the Go kvm profile used before issue 14), to show
which rules explain a difference: 1 = pages without data as SNP ZERO pages,
2 = plain directive order (no region grouping), 3 = the BSP VMSA taken from
the file as is (only sev_features and, per rule 4, the FPU fields set),
4 = on a pre-INIT2 host the BSP keeps the file's x87/SSE fields.
"""
import argparse
import binascii
import hashlib
import json
import signal
import struct
import sys

MODEL_VERSION = "2"

PAGE = 0x1000
VMSA_GPA = 0xFFFFFFFFF000
SEV_ES_SAVE_AREA_SIZE = 0x670  # sizeof(struct sev_es_save_area)
# Bounds for hostile files: sizes come from the file, so the model caps them.
MAX_MEASURED_PAGES = 1 << 20   # 4 GiB of launch updates
ZERO_PAGE_SHA384 = hashlib.sha384(bytes(PAGE)).digest()

# SNP page types (SNP firmware ABI, PAGE_INFO.PAGE_TYPE)
NORMAL, VMSA, ZERO, UNMEASURED, SECRETS, CPUID = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {NORMAL: "NORMAL", VMSA: "VMSA", ZERO: "ZERO",
              UNMEASURED: "UNMEASURED", SECRETS: "SECRETS", CPUID: "CPUID"}

# IGVM header types (igvm_defs)
T_PLATFORM, T_GUEST_POLICY = 0x001, 0x101
T_PARAM_AREA, T_PAGE_DATA, T_PARAM_INSERT, T_VP_CONTEXT = 0x301, 0x302, 0x303, 0x304
T_REQUIRED_MEMORY, T_VP_COUNT, T_SNP_ID_BLOCK = 0x305, 0x307, 0x30B
# MADT is 0x309 in igvm_defs (IGVM_VHT_MADT); model version 1 had 0x311,
# which is VBS_MEASUREMENT.
T_MEMORY_MAP, T_COMMAND_LINE, T_MADT, T_ENV_INFO = 0x30C, 0x30E, 0x309, 0x313
HEADER_SIZES = {T_PLATFORM: 16, T_GUEST_POLICY: 16, T_PARAM_AREA: 16,
                T_PAGE_DATA: 24, T_PARAM_INSERT: 16, T_VP_CONTEXT: 20,
                T_REQUIRED_MEMORY: 24, T_VP_COUNT: 8, T_SNP_ID_BLOCK: 696,
                T_MEMORY_MAP: 8, T_COMMAND_LINE: 8, T_MADT: 8, T_ENV_INFO: 8}
# Directive types QEMU's backends/igvm.c handles (handlers[]).
QEMU_HANDLED = {T_PAGE_DATA, T_VP_CONTEXT, T_PARAM_AREA, T_PARAM_INSERT,
                T_MEMORY_MAP, T_VP_COUNT, T_ENV_INFO, T_REQUIRED_MEMORY,
                T_SNP_ID_BLOCK, T_MADT}
PLATFORM_SEV_SNP = 2

# IGVM page data types
DT_NORMAL, DT_SECRETS, DT_CPUID_DATA, DT_CPUID_XF = 0, 1, 2, 3
FLAG_2MB, FLAG_UNMEASURED, FLAG_SHARED = 1, 2, 4

# CPUID(1).EAX of QEMU's models (family/model/stepping in builtin_x86_defs).
CPU_SIGNATURES = {
    "EPYC": 0x00800F12, "EPYC-v4": 0x00800F12,
    "EPYC-Milan": 0x00A00F11, "milan": 0x00A00F11,
    "EPYC-Genoa": 0x00A10F10, "genoa": 0x00A10F10,
}

SEV_FEAT_SNP_ACTIVE = 0x1
SEV_FEAT_DEBUG_SWAP = 0x20

# struct sev_es_save_area (arch/x86/include/asm/svm.h): name -> (offset, size)
SEGMENTS = ["es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr"]
FIELDS = {}
for _i, _n in enumerate(SEGMENTS):
    _o = _i * 0x10
    FIELDS[_n + ".selector"] = (_o, 2)
    FIELDS[_n + ".attrib"] = (_o + 2, 2)
    FIELDS[_n + ".limit"] = (_o + 4, 4)
    FIELDS[_n + ".base"] = (_o + 8, 8)
for _n, _o, _s in [
        ("vmpl0_ssp", 0xA0, 8), ("vmpl1_ssp", 0xA8, 8), ("vmpl2_ssp", 0xB0, 8),
        ("vmpl3_ssp", 0xB8, 8), ("u_cet", 0xC0, 8), ("vmpl", 0xCA, 1),
        ("cpl", 0xCB, 1), ("efer", 0xD0, 8), ("xss", 0x140, 8), ("cr4", 0x148, 8),
        ("cr3", 0x150, 8), ("cr0", 0x158, 8), ("dr7", 0x160, 8), ("dr6", 0x168, 8),
        ("rflags", 0x170, 8), ("rip", 0x178, 8), ("dr0", 0x180, 8), ("dr1", 0x188, 8),
        ("dr2", 0x190, 8), ("dr3", 0x198, 8), ("dr0_addr_mask", 0x1A0, 8),
        ("dr1_addr_mask", 0x1A8, 8), ("dr2_addr_mask", 0x1B0, 8),
        ("dr3_addr_mask", 0x1B8, 8), ("rsp", 0x1D8, 8), ("s_cet", 0x1E0, 8),
        ("ssp", 0x1E8, 8), ("isst_addr", 0x1F0, 8), ("rax", 0x1F8, 8),
        ("star", 0x200, 8), ("lstar", 0x208, 8), ("cstar", 0x210, 8),
        ("sfmask", 0x218, 8), ("kernel_gs_base", 0x220, 8), ("sysenter_cs", 0x228, 8),
        ("sysenter_esp", 0x230, 8), ("sysenter_eip", 0x238, 8), ("cr2", 0x240, 8),
        ("g_pat", 0x268, 8), ("dbgctl", 0x270, 8), ("br_from", 0x278, 8),
        ("br_to", 0x280, 8), ("last_excp_from", 0x288, 8), ("last_excp_to", 0x290, 8),
        ("pkru", 0x2E8, 4), ("tsc_aux", 0x2EC, 4), ("rcx", 0x308, 8), ("rdx", 0x310, 8),
        ("rbx", 0x318, 8), ("rbp", 0x328, 8), ("rsi", 0x330, 8), ("rdi", 0x338, 8),
        ("r8", 0x340, 8), ("r9", 0x348, 8), ("r10", 0x350, 8), ("r11", 0x358, 8),
        ("r12", 0x360, 8), ("r13", 0x368, 8), ("r14", 0x370, 8), ("r15", 0x378, 8),
        ("guest_exit_info_1", 0x390, 8), ("guest_exit_info_2", 0x398, 8),
        ("guest_exit_int_info", 0x3A0, 8), ("guest_nrip", 0x3A8, 8),
        ("sev_features", 0x3B0, 8), ("vintr_ctrl", 0x3B8, 8),
        ("guest_exit_code", 0x3C0, 8), ("virtual_tom", 0x3C8, 8), ("tlb_id", 0x3D0, 8),
        ("pcpu_id", 0x3D8, 8), ("event_inj", 0x3E0, 8), ("xcr0", 0x3E8, 8),
        ("x87_dp", 0x400, 8), ("mxcsr", 0x408, 4), ("x87_ftw", 0x40C, 2),
        ("x87_fsw", 0x40E, 2), ("x87_fcw", 0x410, 2), ("x87_fop", 0x412, 2),
        ("x87_ds", 0x414, 2), ("x87_cs", 0x416, 2), ("x87_rip", 0x418, 8),
        ("fpreg_x87", 0x420, 80), ("fpreg_xmm", 0x470, 256), ("fpreg_ymm", 0x570, 256)]:
    FIELDS[_n] = (_o, _s)
GPRS = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
# Fields QEMU's check_vmsa_supported clears before requiring the rest zero.
QEMU_SYNCED = set(n for n in FIELDS if n.split(".")[0] in SEGMENTS) | {
    "efer", "cr0", "cr3", "cr4", "xcr0", "dr6", "dr7", "rip", "rflags",
    "g_pat", "x87_fcw", "mxcsr", "sev_features"} | set(GPRS)
FPU_AREA = (0x400, SEV_ES_SAVE_AREA_SIZE)

EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE, EFER_SVME = 1, 1 << 8, 1 << 10, 1 << 11, 1 << 12
CR0_PE, CR0_ET, CR0_NW, CR0_CD, CR0_PG = 1, 1 << 4, 1 << 29, 1 << 30, 1 << 31
CR4_PAE, CR4_MCE = 1 << 5, 1 << 6
# CR4 bits every EPYC model accepts; others depend on CPUID (not modelled).
CR4_PLAIN = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | CR4_PAE | CR4_MCE | 0x80 | 0x100 | 0x200 | 0x400 | (1 << 16) | (1 << 18) | (1 << 20)
CR4_CPUID_DEPENDENT = (1 << 11) | (1 << 12) | (1 << 17) | (1 << 21) | (1 << 22) | (1 << 23) | (1 << 24) | (1 << 32)


class Malformed(Exception):
    pass


def u(buf, off, size):
    return int.from_bytes(buf[off:off + size], "little")


def put(buf, off, size, value):
    buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def field(buf, name):
    o, s = FIELDS[name]
    return u(buf, o, s) if s <= 8 else bytes(buf[o:o + s])


# ---------------------------------------------------------------- IGVM file

class Igvm:
    """The parts of an IGVM file QEMU reads (igvm_defs binary format)."""

    def __init__(self, data):
        self.data = data
        if len(data) < 24:
            raise Malformed("shorter than the 24-byte fixed header")
        magic, version, voff, vsize, total, checksum = struct.unpack_from("<6I", data, 0)
        if magic != 0x4D564749:
            raise Malformed("bad magic %#x" % magic)
        if version not in (1, 2):
            raise Malformed("unsupported format version %d" % version)
        if total != len(data):
            raise Malformed("total_file_size %d but the file has %d bytes" % (total, len(data)))
        if voff < 24 or voff + vsize > len(data) or voff + vsize == len(data):
            raise Malformed("variable headers at %d+%d do not end before the file data" % (voff, vsize))
        fixed = bytearray(data[:24 if version == 1 else 32])
        put(fixed, 20, 4, 0)
        crc = binascii.crc32(data[voff:voff + vsize], binascii.crc32(bytes(fixed)))
        if crc & 0xFFFFFFFF != checksum:
            raise Malformed("checksum %#x, computed %#x" % (checksum, crc))
        self.platforms, self.inits, self.directives = [], [], []
        pos, end, section = voff, voff + vsize, 0
        while pos < end:
            if pos + 8 > end:
                raise Malformed("truncated variable header at %d" % pos)
            typ, length = struct.unpack_from("<II", data, pos)
            typ &= 0x7FFFFFFF  # optional bit
            body = data[pos + 8:pos + 8 + length]
            if pos + 8 + length > end:
                raise Malformed("header type %#x at %d runs past the variable headers" % (typ, pos))
            want = HEADER_SIZES.get(typ)
            if want is not None and length != want:
                raise Malformed("header type %#x at %d has length %d, want %d" % (typ, pos, length, want))
            sec = 0 if typ <= 0x100 else 1 if typ <= 0x200 else 2
            if sec < section:
                raise Malformed("header type %#x at %d out of section order" % (typ, pos))
            section = sec
            (self.platforms, self.inits, self.directives)[sec].append((typ, body, pos))
            pos += 8 + ((length + 7) & ~7)

    def page_data(self, file_offset, size):
        if file_offset == 0:
            return None
        if file_offset + size > len(self.data):
            raise Malformed("page data at %d+%d beyond the file" % (file_offset, size))
        return self.data[file_offset:file_offset + size]


# ------------------------------------------------------ QEMU's IGVM loader

class Load:
    """The result of QEMU's qigvm_process_file for an SEV-SNP guest."""

    def __init__(self):
        self.updates = []      # (gpa, bytes-or-None, snp_type) in queue order, 4 KiB each
        self.vp_contexts = {}  # vp_index -> (gpa, vmsa bytes)
        self.violations = []   # (rule, detail)
        self.notes = []


def load(igvm, vcpus, flip):
    ld = Load()
    mask = 0
    for typ, body, _ in igvm.platforms:
        if typ == T_PLATFORM and body[5] == PLATFORM_SEV_SNP:
            mask = u(body, 0, 4)
    if not mask:
        raise Malformed("no SEV-SNP SUPPORTED_PLATFORM header")
    # qigvm_process_file hands every initialization header to qigvm_handler
    # too: only GUEST_POLICY has a handler there.
    for typ, _, pos in igvm.inits:
        if typ != T_GUEST_POLICY:
            ld.violations.append(("qemu:qigvm_handler", "initialization header type %#x (at byte %d) is not handled by QEMU" % (typ, pos)))
    areas = {}
    id_blocks = 0
    region = None  # dict(start_index, start_gpa, pages=[(gpa, data)], flags, dtype, mask, has_data, last_index, page_size)

    def queue(gpa, length, pages, snp_type):
        # One QEMU launch-update entry; KVM measures it page by page, ascending.
        # pages: None, or one bytes-or-None per 4 KiB (None = zeros).
        if len(ld.updates) + length // PAGE > MAX_MEASURED_PAGES:
            raise Malformed("more than %d pages of launch updates" % MAX_MEASURED_PAGES)
        for i, off in enumerate(range(0, length, PAGE)):
            ld.updates.append((gpa + off, None if pages is None else pages[i], snp_type))

    def flush():
        nonlocal region
        if region is None:
            return
        r, region = region, None
        size = len(r["pages"]) * r["page_size"]
        small = []  # the region as 4 KiB pages, zero-padded (qigvm_process_mem_region)
        for _, d in r["pages"]:
            for off in range(0, r["page_size"], PAGE):
                chunk = None if d is None else d[off:off + PAGE]
                small.append(chunk.ljust(PAGE, b"\0") if chunk else None)
        dtype, flags = r["dtype"], r["flags"]
        if dtype == DT_NORMAL:
            if flags & FLAG_UNMEASURED:
                t = UNMEASURED
            elif not r["has_data"]:
                t = ZERO if 1 in flip else NORMAL  # cgs_set_guest_state: ZERO -> launch_update_data (NORMAL)
            else:
                t = NORMAL
        elif dtype == DT_SECRETS:
            t = SECRETS
        elif dtype in (DT_CPUID_DATA, DT_CPUID_XF):
            t = CPUID
        else:
            ld.violations.append(("qemu:qigvm_type_to_cgs_type", "page data type %d at GPA %#x" % (dtype, r["start_gpa"])))
            return
        queue(r["start_gpa"], size, small if t == NORMAL else None, t)

    for index, (typ, body, pos) in enumerate(igvm.directives):
        if typ == T_PAGE_DATA:
            gpa, pmask, foff, flags, dtype, _ = struct.unpack_from("<QIIIHH", body)
            if not pmask & mask:
                continue
            psize = 0x200000 if flags & FLAG_2MB else PAGE
            if gpa % PAGE:
                raise Malformed("PAGE_DATA GPA %#x not page aligned" % gpa)
            data = igvm.page_data(foff, psize)
            has_data = data is not None
            if flags & FLAG_SHARED:
                ld.notes.append("shared flag on GPA %#x ignored by QEMU: measured as private" % gpa)
            if 2 in flip:
                # Contrary of rule 2: every PAGE_DATA on its own, in directive order.
                region = dict(start_gpa=gpa, pages=[(gpa, data)], flags=flags, dtype=dtype,
                              mask=pmask, has_data=has_data, last_index=index, page_size=psize)
                flush()
                continue
            if region is not None:
                same = (region["flags"] == flags and region["dtype"] == dtype and region["mask"] == pmask
                        and region["has_data"] == has_data
                        and region["start_gpa"] + len(region["pages"]) * region["page_size"] == gpa
                        and region["last_index"] == index - 1)
                if not same:
                    flush()
            if region is None:
                region = dict(start_gpa=gpa, pages=[], flags=flags, dtype=dtype, mask=pmask,
                              has_data=has_data, page_size=psize)
            region["pages"].append((gpa, data))
            region["last_index"] = index
        elif typ == T_PARAM_AREA:
            size, idx, foff = struct.unpack_from("<QII", body)
            if size % PAGE or size // PAGE > MAX_MEASURED_PAGES:
                raise Malformed("PARAMETER_AREA %d of %d bytes is not a multiple of 4 KiB or too large" % (idx, size))
            areas[idx] = size
        elif typ == T_PARAM_INSERT:
            gpa, pmask, idx = struct.unpack_from("<QII", body)
            if not pmask & mask:
                continue
            if idx not in areas:
                ld.notes.append("PARAMETER_INSERT of unknown area %d ignored (qigvm_find_param_entry)" % idx)
                continue
            if 2 in flip:
                flush()
            queue(gpa, areas[idx], None, UNMEASURED)
        elif typ == T_VP_CONTEXT:
            gpa, pmask, foff, vp, _ = struct.unpack_from("<QIIHH", body)
            if not pmask & mask:
                continue
            vmsa = igvm.page_data(foff, PAGE)
            if vmsa is None:
                raise Malformed("VP_CONTEXT for vp %d has no data" % vp)
            if vp >= vcpus:
                ld.violations.append(("qemu:sev_set_cpu_context", "VP_CONTEXT for vp_index %d but only %d vCPUs" % (vp, vcpus)))
                continue
            ld.vp_contexts[vp] = (gpa, vmsa)
        elif typ == T_SNP_ID_BLOCK:
            if u(body, 0, 4) & mask:
                id_blocks += 1
                if id_blocks > 1:
                    ld.violations.append(("qemu:qigvm_directive_snp_id_block", "more than one SNP_ID_BLOCK"))
        elif typ in (T_REQUIRED_MEMORY, T_VP_COUNT, T_MEMORY_MAP, T_ENV_INFO, T_MADT):
            pass  # not measured
        else:
            ld.violations.append(("qemu:qigvm_handler", "directive type %#x (at byte %d) is not handled by QEMU" % (typ, pos)))
    flush()
    return ld


# ------------------------------------------------- the VMSA KVM measures

def host_version(text):
    try:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise SystemExit("kvm_model: --host-kernel %r is not MAJOR.MINOR" % text)


def host_sev_features(host, file_features):
    """sev_features KVM writes into every VMSA (docs section 6)."""
    if host >= (6, 10):
        return file_features | SEV_FEAT_SNP_ACTIVE
    f = SEV_FEAT_SNP_ACTIVE
    if (6, 6) <= host < (6, 8):
        f |= SEV_FEAT_DEBUG_SWAP
    return f


def supported_sev_features(host):
    # KVM_X86_SEV_VMSA_FEATURES on 6.11 with kvm_amd.debug_swap (default on) + SNP_ACTIVE
    return SEV_FEAT_SNP_ACTIVE | SEV_FEAT_DEBUG_SWAP


def reset_state(signature):
    """QEMU's x86_cpu_reset_hold state as a VMSA-shaped page (pre-KVM)."""
    s = bytearray(PAGE)
    seg = lambda n, sel, base, lim, attr: (put(s, *FIELDS[n + ".selector"], sel), put(s, *FIELDS[n + ".base"], base),
                                           put(s, *FIELDS[n + ".limit"], lim), put(s, *FIELDS[n + ".attrib"], attr))
    seg("cs", 0xF000, 0xFFFF0000, 0xFFFF, 0x9B)
    for n in ("ds", "es", "ss", "fs", "gs"):
        seg(n, 0, 0, 0xFFFF, 0x93)
    seg("ldtr", 0, 0, 0xFFFF, 0x82)
    seg("tr", 0, 0, 0xFFFF, 0x8B)
    seg("gdtr", 0, 0, 0xFFFF, 0)
    seg("idtr", 0, 0, 0xFFFF, 0)
    for n, v in [("rip", 0xFFF0), ("rflags", 0x2), ("rdx", signature), ("cr0", 0x60000010),
                 ("dr6", 0xFFFF0FF0), ("dr7", 0x400), ("g_pat", 0x0007040600070406), ("xcr0", 1),
                 ("x87_fcw", 0x37F), ("mxcsr", 0x1F80)]:
        put(s, *FIELDS[n], v)
    return s


def qemu_check_vmsa(gpa, vmsa, host, violations):
    """check_vmsa_supported + check_sev_features (target/i386/sev.c)."""
    if gpa != VMSA_GPA:
        violations.append(("qemu:check_vmsa_supported", "VMSA GPA %#x, QEMU requires %#x" % (gpa, VMSA_GPA)))
    check = bytearray(vmsa[:SEV_ES_SAVE_AREA_SIZE])
    for n in QEMU_SYNCED:
        o, s = FIELDS[n]
        check[o:o + s] = bytes(s)
    if any(check):
        names = [n for n, (o, s) in sorted(FIELDS.items(), key=lambda kv: kv[1]) if n not in QEMU_SYNCED and any(check[o:o + s])]
        covered = set()
        for n in names:
            o, s = FIELDS[n]
            covered.update(range(o, o + s))
        loose = [i for i in range(SEV_ES_SAVE_AREA_SIZE) if check[i] and i not in covered]
        if loose:
            names.append("reserved bytes at %s" % ", ".join("%#x" % i for i in loose[:4]))
        violations.append(("qemu:check_vmsa_supported", "VMSA fields QEMU does not synchronise are non-zero: " + ", ".join(names)))
    feats = field(vmsa, "sev_features")
    if not feats & SEV_FEAT_SNP_ACTIVE:
        violations.append(("qemu:check_sev_features", "sev_features %#x lacks SNP_ACTIVE" % feats))
    if feats & ~supported_sev_features(host):
        violations.append(("qemu:check_sev_features", "sev_features %#x has bits KVM does not support (%#x)" % (feats, feats & ~supported_sev_features(host))))


def kvm_vmsa(src, host, sev_features, from_file, violations, notes, flip):
    """The VMSA page sev_es_sync_vmsa builds for a vCPU whose QEMU state was
    loaded from `src` (docs section 5). Returns the measured page."""
    if from_file and 3 in flip:
        # Contrary of rule 3: the file's page as is, sev_features and FPU set.
        out = bytearray(src)
        put(out, *FIELDS["sev_features"], sev_features)
        if host >= (6, 10):
            out[FPU_AREA[0]:FPU_AREA[1]] = bytes(FPU_AREA[1] - FPU_AREA[0])
            put(out, *FIELDS["x87_fcw"], 0x37F)
            put(out, *FIELDS["mxcsr"], 0x1F80)
        elif 4 not in flip:
            out[FPU_AREA[0]:FPU_AREA[1]] = bytes(FPU_AREA[1] - FPU_AREA[0])
        return out

    # --- QEMU: sev_apply_cpu_context onto the reset state (target/i386/helper.c)
    efer = field(src, "efer")
    cr4 = field(src, "cr4") & 0xFFFFFFFF                      # cpu_x86_update_cr4(uint32_t)
    if cr4 & CR4_CPUID_DEPENDENT:
        notes.append("CR4 %#x has CPUID-dependent bits (%#x) QEMU may clear for the CPU model: not modelled" % (cr4, cr4 & CR4_CPUID_DEPENDENT))
        violations.append(("unmodelled:cpu_x86_update_cr4", "CR4 bits %#x depend on the CPU model" % (cr4 & CR4_CPUID_DEPENDENT)))
    file_cr0 = field(src, "cr0") & 0xFFFFFFFF                  # cpu_x86_update_cr0(uint32_t)
    cr0 = 0x60000010                                          # reset value
    if (file_cr0 & CR0_PG) and (efer & EFER_LME):
        if not cr4 & CR4_PAE:
            violations.append(("qemu:cpu_x86_update_cr0", "EFER.LME and CR0.PG without CR4.PAE: QEMU keeps the reset CR0"))
        else:
            efer |= EFER_LMA
            cr0 = file_cr0 | CR0_ET
    else:
        cr0 = file_cr0 | CR0_ET
    cs_attrib = field(src, "cs.attrib")

    # --- KVM: kvm_is_valid_sregs and friends (arch/x86/kvm/x86.c)
    if (efer & EFER_LME) and (cr0 & CR0_PG):
        if not cr4 & CR4_PAE or not efer & EFER_LMA:
            violations.append(("kvm:kvm_is_valid_sregs", "EFER.LME with CR0.PG needs CR4.PAE and EFER.LMA"))
        cr3 = field(src, "cr3") & ~(1 << 51)
        if cr3 >> 52:
            violations.append(("kvm:kvm_is_valid_sregs", "CR3 %#x has bits above MAXPHYADDR" % field(src, "cr3")))
    else:
        if efer & EFER_LMA:
            violations.append(("kvm:kvm_is_valid_sregs", "EFER.LMA set while CR0.PG is clear (long mode without paging)"))
        if cs_attrib & (1 << 9):
            violations.append(("kvm:kvm_is_valid_sregs", "CS.L set outside long mode"))
    if (cr0 & CR0_NW) and not cr0 & CR0_CD:
        violations.append(("kvm:kvm_is_valid_cr0", "CR0.NW without CR0.CD"))
    if (cr0 & CR0_PG) and not cr0 & CR0_PE:
        violations.append(("kvm:kvm_is_valid_cr0", "CR0.PG without CR0.PE"))
    if cr4 & ~(CR4_PLAIN | CR4_CPUID_DEPENDENT):
        violations.append(("kvm:kvm_is_valid_cr4", "reserved CR4 bits %#x" % (cr4 & ~(CR4_PLAIN | CR4_CPUID_DEPENDENT))))
    dr6, dr7 = field(src, "dr6"), field(src, "dr7")
    if dr6 >> 32 or dr7 >> 32:
        violations.append(("kvm:kvm_vcpu_ioctl_x86_set_debugregs", "DR6/DR7 bits 32-63 set"))
    if dr7 & ~0x400:
        violations.append(("kvm:sev_es_sync_vmsa", "DR7 %#x has bits other than 0x400" % dr7))
    pat = field(src, "g_pat")
    if any(((pat >> (8 * i)) & 0xFF) not in (0, 1, 4, 5, 6, 7) for i in range(8)):
        violations.append(("kvm:kvm_pat_valid", "G_PAT %#x has an invalid memory type" % pat))
    xcr0 = field(src, "xcr0")
    if not xcr0 & 1 or (xcr0 & 4 and not xcr0 & 2):
        violations.append(("kvm:__kvm_set_xcr", "XCR0 %#x is invalid" % xcr0))
    elif xcr0 & ~0x7:
        violations.append(("unmodelled:__kvm_set_xcr", "XCR0 %#x has bits beyond x87/SSE/AVX that depend on the CPU model" % xcr0))
    if field(src, "rflags") & (1 << 17):
        violations.append(("unmodelled:kvm_put_sregs", "RFLAGS.VM set: QEMU passes virtual-8086 segments"))

    # --- KVM: the VMCB save area as the setters leave it, then sev_es_sync_vmsa
    out = bytearray(PAGE)
    for n in SEGMENTS:
        if n in ("gdtr", "idtr"):
            put(out, *FIELDS[n + ".base"], field(src, n + ".base"))
            put(out, *FIELDS[n + ".limit"], field(src, n + ".limit") & 0xFFFF)
            continue
        put(out, *FIELDS[n + ".selector"], field(src, n + ".selector"))
        put(out, *FIELDS[n + ".limit"], field(src, n + ".limit"))
        put(out, *FIELDS[n + ".attrib"], field(src, n + ".attrib") & 0x0FFF)
        put(out, *FIELDS[n + ".base"], field(src, n + ".base"))
    if from_file:
        put(out, *FIELDS["tr.base"], field(src, "ldtr.base"))  # QEMU loads TR.base from vmsa.ldtr.base
    put(out, *FIELDS["cpl"], (field(src, "ss.attrib") >> 5) & 3)
    put(out, *FIELDS["efer"], efer | EFER_SVME)
    put(out, *FIELDS["cr4"], cr4 | CR4_MCE)
    put(out, *FIELDS["cr3"], field(src, "cr3"))
    put(out, *FIELDS["cr0"], cr0 & ~(CR0_CD | CR0_NW))
    put(out, *FIELDS["dr7"], dr7)
    put(out, *FIELDS["dr6"], dr6)
    put(out, *FIELDS["rflags"], field(src, "rflags") | 0x2)
    put(out, *FIELDS["g_pat"], pat)
    for n in GPRS + ["rip"]:
        put(out, *FIELDS[n], field(src, n))
    put(out, *FIELDS["xcr0"], xcr0)
    put(out, *FIELDS["sev_features"], sev_features)
    if host >= (6, 10):
        put(out, *FIELDS["x87_fcw"], 0x37F)
        put(out, *FIELDS["mxcsr"], 0x1F80)
    elif from_file and 4 in flip:
        out[FPU_AREA[0]:FPU_AREA[1]] = src[FPU_AREA[0]:FPU_AREA[1]]
    return out


def vmsa_changes(src, measured):
    rows = []
    for n, (o, s) in sorted(FIELDS.items(), key=lambda kv: kv[1]):
        a, b = src[o:o + s], measured[o:o + s]
        if a != b:
            fmt = (lambda x: "%#x" % int.from_bytes(x, "little")) if s <= 8 else (lambda x: x.hex())
            rows.append({"field": n, "file": fmt(a), "measured": fmt(b)})
    covered = set()
    for o, s in FIELDS.values():
        covered.update(range(o, o + s))
    diff = [i for i in range(PAGE) if src[i] != measured[i] and i not in covered]
    if diff:
        rows.append({"field": "other bytes %#x-%#x" % (diff[0], diff[-1]), "file": "non-zero", "measured": "0"})
    return rows


# ---------------------------------------------------------------- the digest

def page_info(digest, contents, gpa, ptype):
    return hashlib.sha384(digest + contents + struct.pack("<HBB", 0x70, ptype, 0) + bytes(4) + struct.pack("<Q", gpa)).digest()


def measure(data, vcpus=1, cpu="EPYC-v4", host="6.11", guest_features=None, flip=()):
    if vcpus < 1 or vcpus > 512:
        raise SystemExit("kvm_model: --vcpus must be 1-512")
    if cpu in CPU_SIGNATURES:
        signature = CPU_SIGNATURES[cpu]
    elif cpu.lower().startswith("0x"):
        signature = int(cpu, 16)
    else:
        raise SystemExit("kvm_model: unknown --cpu %r (EPYC-v4, EPYC-Milan, EPYC-Genoa or 0xSIGNATURE)" % cpu)
    hv = host_version(host)
    flip = set(flip)
    igvm = Igvm(data)
    ld = load(igvm, vcpus, flip)
    violations, notes = ld.violations, ld.notes
    if hv < (6, 11):
        notes.append("host %s: upstream KVM has SNP from 6.11 and QEMU needs KVM_SEV_INIT2; this host is hypothetical" % host)
        violations.append(("hypothetical-host", "no upstream QEMU+KVM SNP launch on host %s" % host))

    rows, digest = [], bytes(48)
    for gpa, page, ptype in ld.updates:
        if ptype != NORMAL:
            contents = bytes(48)
        elif page is None or not any(page):
            contents = ZERO_PAGE_SHA384
        else:
            contents = hashlib.sha384(page).digest()
        digest = page_info(digest, contents, gpa, ptype)
        rows.append({"gpa": "%#x" % gpa, "type": TYPE_NAMES[ptype], "contents": contents.hex(), "digest": digest.hex()})

    file_features = None
    if 0 in ld.vp_contexts:
        gpa0, vmsa0 = ld.vp_contexts[0]
        file_features = field(vmsa0, "sev_features")
    if guest_features is not None:
        file_features = guest_features
    sev_features = host_sev_features(hv, file_features if file_features is not None else 0)
    if file_features is None:
        notes.append("no VP_CONTEXT for vCPU 0: QEMU passes vmsa_features 0 and the BSP keeps its reset state")
    bsp_changes = []
    for vp in range(vcpus):
        if vp in ld.vp_contexts:
            gpa, src = ld.vp_contexts[vp]
            src = bytearray(src)
            if guest_features is not None and vp == 0:
                put(src, *FIELDS["sev_features"], guest_features)
            qemu_check_vmsa(gpa, src, hv, violations)
            measured = kvm_vmsa(src, hv, sev_features, True, violations, notes, flip)
            if vp == 0:
                bsp_changes = vmsa_changes(src, measured)
        else:
            measured = kvm_vmsa(reset_state(signature), hv, sev_features, False, violations, notes, flip)
        contents = hashlib.sha384(bytes(measured)).digest()
        digest = page_info(digest, contents, VMSA_GPA, VMSA)
        rows.append({"gpa": "%#x" % VMSA_GPA, "type": "VMSA", "vcpu": vp, "contents": contents.hex(), "digest": digest.hex()})
    seen = set()
    violations = [v for v in violations if not (v in seen or seen.add(v))]
    return {
        "model_version": MODEL_VERSION,
        "vcpus": vcpus, "cpu": cpu, "cpu_signature": "%#x" % signature, "host_kernel": host,
        "sev_features": "%#x" % sev_features,
        "digest": digest.hex(),
        "hypothetical": bool(violations),
        "violations": [{"rule": r, "detail": d} for r, d in violations],
        "notes": notes,
        "page_info": rows,
        "bsp_vmsa": bsp_changes,
        "flip": sorted(flip),
    }


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--cpu", default="EPYC-v4")
    ap.add_argument("--host-kernel", default="6.11")
    ap.add_argument("--guest-features", help="sev_features of vCPU 0 as hex, instead of the file's")
    ap.add_argument("--explain", action="store_true", help="list every PAGE_INFO and the BSP VMSA transformations")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--hypothetical", action="store_true", help="print the digest even if QEMU or KVM would refuse the file")
    ap.add_argument("--flip", default="", help="comma list of issue-14 rules (1-4) to apply the contrary of")
    a = ap.parse_args(argv)
    flip = [int(x) for x in a.flip.split(",") if x]
    if any(x not in (1, 2, 3, 4) for x in flip):
        ap.error("--flip takes rule numbers 1-4")
    gf = int(a.guest_features, 16) if a.guest_features else None
    try:
        with open(a.file, "rb") as f:
            data = f.read()
        r = measure(data, a.vcpus, a.cpu, a.host_kernel, gf, flip)
    except Malformed as e:
        print("kvm_model: %s: %s" % (a.file, e), file=sys.stderr)
        return 1
    except OSError as e:
        print("kvm_model: %s" % e, file=sys.stderr)
        return 1
    refused = r["hypothetical"] and not a.hypothetical
    if a.json:
        if not a.explain:
            r = {k: v for k, v in r.items() if k not in ("page_info", "bsp_vmsa")}
        if refused:
            r["digest"] = None
        json.dump(r, sys.stdout, indent=1, sort_keys=True)
        print()
    else:
        for v in r["violations"]:
            print("refused: %s: %s" % (v["rule"], v["detail"]), file=sys.stderr)
        for n in r["notes"]:
            print("note: %s" % n, file=sys.stderr)
        if a.explain:
            print("%-5s %-16s %-10s %-24s %s" % ("#", "GPA", "TYPE", "CONTENTS (SHA-384, 24 hex)", "DIGEST AFTER"))
            for i, row in enumerate(r["page_info"]):
                t = row["type"] + (" %d" % row["vcpu"] if "vcpu" in row else "")
                print("%-5d %-16s %-10s %-24s %s" % (i, row["gpa"], t, row["contents"][:24], row["digest"]))
            print("BSP VMSA: field, file value, measured value")
            for c in r["bsp_vmsa"]:
                print("  %-16s %-20s -> %s" % (c["field"], c["file"], c["measured"]))
        if not refused:
            print(("HYPOTHETICAL " if r["hypothetical"] else "") + r["digest"])
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
