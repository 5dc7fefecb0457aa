#!/usr/bin/env python3
"""Independent re-implementation of the SEV-SNP launch digest of an IGVM file
under KVM (QEMU's IGVM loader + kvm_amd), used to derive the golden vectors
of pkg/measure's kvm profile. It shares no code with the Go implementation:
it parses IGVM with struct, builds VMSAs by byte offset and chains PAGE_INFO
with hashlib.

  kvm_golden.py TESTDATA          write TESTDATA/measure/kvm-golden.json
  kvm_golden.py --check TESTDATA  recompute and compare with that file

The model (see README "imagebuilder measure igvm"):
  * directives in file order, for the SEV-SNP platform's compatibility mask;
  * PAGE_DATA: SECRETS -> type 5, CPUID -> 6, unmeasured flag -> 4,
    no file data -> ZERO (3), else NORMAL (1) with SHA-384 of the page;
  * PARAMETER_INSERT: one UNMEASURED page per 4 KiB of the area;
  * then the VMSA of vCPU 0: the file's VP context page with sev_features =
    guest features (plus DEBUG_SWAP on host 6.6/6.7) and, on host >= 6.10
    (KVM_SEV_INIT2), MXCSR 0x1f80 and FCW 0x37f; at GPA 0xFFFFFFFFF000;
  * then one reset-state VMSA per AP (CS f000:fff0 base ffff0000, RDX = CPU
    signature, EFER 0x1000, CR4 0x40, CR0 0x10, DR7 0x400, DR6 0xffff0ff0,
    RFLAGS 2, PAT 0x0007040600070406, XCR0 1, segment attributes of QEMU's
    reset state) with the same host-kernel fields, at 0xFFFFFFFFF000.
Also checks the mshv model against the igvm-tooling vectors' index.json.
"""
import hashlib
import json
import os
import struct
import sys

PAGE = 4096
VMSA_GPA = 0xFFFFFFFFF000

CPUS = {  # CPUID(1).EAX of QEMU's EPYC models
    "EPYC-v4": 0x00800F12,
    "EPYC-Milan": 0x00A00F11,
    "EPYC-Genoa": 0x00A10F10,
    "EPYC-Turin": 0x00B00F00,
}


def parse(path):
    data = open(path, "rb").read()
    magic, ver, voff, vsize, total, crc = struct.unpack_from("<6I", data, 0)
    assert magic == 0x4D564749 and ver == 1 and total == len(data), path
    hdrs = []
    pos, end = voff, voff + vsize
    while pos < end:
        typ, length = struct.unpack_from("<II", data, pos)
        hdrs.append((typ & 0x7FFFFFFF, data[pos + 8:pos + 8 + length]))
        pos += 8 + ((length + 7) & ~7)
    return data, hdrs


def snp_mask(hdrs):
    for typ, body in hdrs:
        if typ == 0x001:
            mask, vtl, ptype = struct.unpack_from("<IBB", body)
            if ptype == 2:
                return mask
    raise SystemExit("no SEV-SNP platform")


class Chain:
    def __init__(self):
        self.d = bytes(48)

    def add(self, gpa, ptype, contents=None):
        h = hashlib.sha384(contents).digest() if contents is not None else bytes(48)
        info = self.d + h + struct.pack("<HBB4sQ", 0x70, ptype, 0, bytes(4), gpa)
        assert len(info) == 0x70
        self.d = hashlib.sha384(info).digest()


def host_fields(page, features, host):
    page = bytearray(page)
    major, minor = host
    if (6, 6) <= host < (6, 8):
        features |= 0x20
    struct.pack_into("<Q", page, 0x3B0, features)
    if host >= (6, 10):
        struct.pack_into("<I", page, 0x408, 0x1F80)
        struct.pack_into("<H", page, 0x410, 0x37F)
    return bytes(page)


def reset_vmsa(sig, features, host):
    p = bytearray(PAGE)

    def seg(off, sel, attr, limit, base):
        struct.pack_into("<HHIQ", p, off, sel, attr, limit, base)

    for off in (0x00, 0x20, 0x30, 0x40, 0x50):  # es ss ds fs gs
        seg(off, 0, 0x93, 0xFFFF, 0)
    seg(0x10, 0xF000, 0x9B, 0xFFFF, 0xFFFF0000)  # cs
    seg(0x60, 0, 0, 0xFFFF, 0)  # gdtr
    seg(0x70, 0, 0x82, 0xFFFF, 0)  # ldtr
    seg(0x80, 0, 0, 0xFFFF, 0)  # idtr
    seg(0x90, 0, 0x8B, 0xFFFF, 0)  # tr
    for off, val in ((0xD0, 0x1000), (0x148, 0x40), (0x158, 0x10), (0x160, 0x400),
                     (0x168, 0xFFFF0FF0), (0x170, 2), (0x178, 0xFFF0),
                     (0x268, 0x0007040600070406), (0x310, sig), (0x3E8, 1)):
        struct.pack_into("<Q", p, off, val)
    return host_fields(p, features, host)


def measure(path, profile, vcpus=1, cpu=None, host=(6, 11), features=None):
    data, hdrs = parse(path)
    mask = snp_mask(hdrs)
    areas, items = {}, []
    for typ, body in hdrs:
        if typ == 0x301:
            n, idx, off = struct.unpack_from("<QII", body)
            areas[idx] = n
        elif typ == 0x302:
            gpa, m, off, flags, dtype = struct.unpack_from("<QIIIH", body)
            if m & mask:
                items.append(("page", gpa, off, flags, dtype))
        elif typ == 0x303:
            gpa, m, idx = struct.unpack_from("<QII", body)
            if m & mask:
                items.append(("insert", gpa, areas[idx]))
        elif typ == 0x304:
            gpa, m, off, vp = struct.unpack_from("<QIIH", body)
            if m & mask:
                items.append(("vmsa", gpa, off, vp))
    c = Chain()

    def page(it, native_zero):
        _, gpa, off, flags, dtype = it
        assert flags & 1 == 0, "2 MiB pages not used by these vectors"
        if flags & 4 and profile == "mshv":
            return
        if dtype == 1:
            c.add(gpa, 5)
        elif dtype in (2, 3):
            c.add(gpa, 6)
        elif flags & 2:
            c.add(gpa, 4)
        elif off == 0:
            if native_zero:
                c.add(gpa, 3)
            else:
                c.add(gpa, 1, bytes(PAGE))
        else:
            c.add(gpa, 1, data[off:off + PAGE])

    if profile == "mshv":
        for it in sorted(items, key=lambda it: it[1]):
            if it[0] == "page":
                page(it, False)
            elif it[0] == "insert":
                c.add(it[1], 4)
            else:
                c.add(it[1], 2, data[it[2]:it[2] + PAGE])
        return c.d.hex()

    bsp = None
    for it in items:
        if it[0] == "page":
            page(it, True)
        elif it[0] == "insert":
            for g in range(it[1], it[1] + it[2], PAGE):
                c.add(g, 4)
        elif it[3] == 0 and bsp is None:
            bsp = data[it[2]:it[2] + PAGE]
    if features is None:
        features = struct.unpack_from("<Q", bsp, 0x3B0)[0]
    c.add(VMSA_GPA, 2, host_fields(bsp, features, host))
    for _ in range(1, vcpus):
        c.add(VMSA_GPA, 2, reset_vmsa(CPUS[cpu], features, host))
    return c.d.hex()


CASES = [
    # file (relative to testdata), vcpus, cpu, host, guest features, skip checks
    ("measure/kvm-ready.igvm", 1, None, "6.11", None, False),
    ("measure/kvm-ready.igvm", 2, "EPYC-Milan", "6.11", None, False),
    ("measure/kvm-ready.igvm", 4, "EPYC-Genoa", "6.11", None, False),
    ("measure/kvm-ready.igvm", 8, "EPYC-v4", "6.11", None, False),
    ("measure/kvm-ready.igvm", 4, "EPYC-Turin", "6.11", None, False),
    ("measure/kvm-ready.igvm", 64, "EPYC-Genoa", "6.12", None, False),
    ("measure/kvm-ready.igvm", 2, "EPYC-Milan", "6.9", None, False),
    ("measure/kvm-ready.igvm", 2, "EPYC-Milan", "6.6", None, False),
    ("measure/kvm-ready.igvm", 2, "EPYC-Genoa", "6.11", 0x21, False),
    ("igvm/d01_kata_clh_short.igvm", 1, None, "6.11", None, True),
    ("igvm/d01_kata_clh_short.igvm", 3, "EPYC-Milan", "6.11", None, True),
    ("igvm/d04_clh_pv0_long_blob.igvm", 2, "EPYC-Genoa", "6.9", None, True),
    ("igvm/d05_default_enc0_svme0_long.igvm", 1, None, "6.11", None, True),
    ("igvm/d06_default_pv0_svme0_cpio.igvm", 4, "EPYC-v4", "6.11", 0x1, True),
]


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    td = args[0]
    # Self-check: the mshv model of this script equals igvm-tooling's digests.
    idx = json.load(open(os.path.join(td, "igvm", "index.json")))
    for case in idx["cases"]:
        got = measure(os.path.join(td, "igvm", os.path.basename(case["igvm_file"])), "mshv")
        if got != case["expected_launch_digest"]:
            raise SystemExit("mshv self-check failed for %s: %s" % (case["name"], got))
    out = []
    for f, n, cpu, host, feat, skip in CASES:
        hk = tuple(int(x) for x in host.split("."))
        d = measure(os.path.join(td, f), "kvm", n, cpu, hk, feat)
        e = {"file": f, "vcpus": n, "host_kernel": host, "skip_kvm_checks": skip, "digest": d}
        if cpu:
            e["cpu"] = cpu
        if feat is not None:
            e["guest_features"] = feat
        out.append(e)
    path = os.path.join(td, "measure", "kvm-golden.json")
    text = json.dumps(out, indent=1, sort_keys=True) + "\n"
    if check:
        if open(path).read() != text:
            raise SystemExit("%s differs from this script's output" % path)
        print("kvm_golden.py: %d kvm digests and %d mshv self-checks agree" % (len(out), len(idx["cases"])))
    else:
        open(path, "w").write(text)
        print("wrote %s (%d cases)" % (path, len(out)))


if __name__ == "__main__":
    main()
