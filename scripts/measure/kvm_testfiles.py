#!/usr/bin/env python3
"""Hand-made minimal IGVM files that pin the QEMU + KVM measurement rules of
docs/kvm-measurement.md, and the vectors kvm_model.py computes for them.

  kvm_testfiles.py TESTDATA               write TESTDATA/measure/kvm-model/*.igvm
                                          and TESTDATA/measure/kvm-model.json
  kvm_testfiles.py --check TESTDATA       regenerate in memory, compare, exit 1 on a difference
  kvm_testfiles.py --compare-go BIN TESTDATA
                                          run `BIN measure igvm` (the Go kvm profile, as a
                                          black box) on kvm-ready.igvm and issue 14's five files
                                          for vCPUs 1/2/4/8 x EPYC-v4/Milan/Genoa x host 6.8/6.11,
                                          report which of issue 14's rules, flipped in the model,
                                          give its digests; exit 0 when the model unflipped does

The IGVM writer here is deliberately separate from kvm_model.py's parser.
Standard library only.
"""
import hashlib
import itertools
import json
import os
import struct
import subprocess
import sys
import binascii

sys.dont_write_bytecode = True  # keep the tree clean when imported
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvm_model  # noqa: E402

GENERATOR_VERSION = "2"
PAGE = 4096
VMSA_GPA = 0xFFFFFFFFF000
SNP_MASK = 1

VCPUS = [1, 2, 4, 8]
CPUS = ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"]
HOSTS = ["6.8", "6.11"]


def header(typ, body):
    pad = (-len(body)) % 8
    return struct.pack("<II", typ, len(body)) + body + bytes(pad)


def write_igvm(directives, blobs):
    """directives: list of (type, body-builder(offsets) or bytes); blobs: list
    of bytes placed after the headers, 4 KiB aligned; a body builder gets the
    list of blob file offsets."""
    platform = header(0x001, struct.pack("<IBBHQ", SNP_MASK, 0, 2, 1, 0))
    policy = header(0x101, struct.pack("<QII", 0x30000, SNP_MASK, 0))
    # Sizes do not depend on the offsets, so lay out with dummy offsets first.
    def build(offsets):
        out = platform + policy
        for typ, body in directives:
            out += header(typ, body(offsets) if callable(body) else body)
        return out
    vsize = len(build([0] * len(blobs)))
    start = 24 + vsize
    offsets, pos = [], (start + PAGE - 1) // PAGE * PAGE
    for b in blobs:
        offsets.append(pos)
        pos += (len(b) + PAGE - 1) // PAGE * PAGE
    var = build(offsets)
    total = pos
    fixed = struct.pack("<6I", 0x4D564749, 1, 24, len(var), total, 0)
    crc = binascii.crc32(var, binascii.crc32(fixed)) & 0xFFFFFFFF
    out = bytearray(struct.pack("<6I", 0x4D564749, 1, 24, len(var), total, crc) + var)
    out += bytes(total - len(out))
    for off, b in zip(offsets, blobs):
        out[off:off + len(b)] = b
    return bytes(out)


def page_data(gpa, blob=None, data_type=0, flags=0):
    if blob is None:
        return (0x302, struct.pack("<QIIIHH", gpa, SNP_MASK, 0, flags, data_type, 0))
    return (0x302, lambda offs: struct.pack("<QIIIHH", gpa, SNP_MASK, offs[blob], flags, data_type, 0))


def vp_context(blob, gpa=VMSA_GPA, vp=0):
    return (0x304, lambda offs: struct.pack("<QIIHH", gpa, SNP_MASK, offs[blob], vp, 0))


# VMSA offsets (sev_es_save_area): only what the generator writes.
def seg(vm, index, selector, attrib, limit, base):
    struct.pack_into("<HHIQ", vm, index * 0x10, selector, attrib, limit, base)


def q(vm, off, value, size=8):
    vm[off:off + size] = value.to_bytes(size, "little")


def kvm_ready_vmsa(**over):
    """A long-mode BSP state that holds exactly what QEMU + KVM measure."""
    vm = bytearray(PAGE)
    seg(vm, 0, 0x18, 0xC93, 0xFFFFFFFF, 0)      # es
    seg(vm, 1, 0x08, 0xA9B, 0xFFFFFFFF, 0)      # cs
    seg(vm, 2, 0x18, 0xC93, 0xFFFFFFFF, 0)      # ss
    seg(vm, 3, 0x18, 0xC93, 0xFFFFFFFF, 0)      # ds
    seg(vm, 6, 0, 0, 0x37, 0x200000)            # gdtr
    seg(vm, 9, 0x28, 0x8B, 0x67, 0)             # tr (base = ldtr.base = 0)
    fields = dict(efer=(0xD0, 0x1D01), cr4=(0x148, 0x60), cr3=(0x150, 0x201000), cr0=(0x158, 0x80000011),
                  dr7=(0x160, 0x400), dr6=(0x168, 0xFFFF0FF0), rflags=(0x170, 0x2), rip=(0x178, 0x300000),
                  rsp=(0x1D8, 0x3FF000), rsi=(0x330, 0x200100), g_pat=(0x268, 0x0007040600070406),
                  sev_features=(0x3B0, 0x1), xcr0=(0x3E8, 0x1), mxcsr=(0x408, 0x1F80, 4), x87_fcw=(0x410, 0x37F, 2))
    for name, spec in fields.items():
        off, value = spec[0], over.pop(name, spec[1])
        q(vm, off, value, spec[2] if len(spec) > 2 else 8)
    for name, value in over.items():
        if name.startswith("seg"):
            seg(vm, *value)
        else:
            raise KeyError(name)
    return bytes(vm)


def text_page(label):
    b = bytearray(PAGE)
    msg = ("imagebuilder kvm-model test page: %s\n" % label).encode()
    b[:len(msg)] = msg
    b[-16:] = b"LGTMLGTMLGTMLGTM"
    return bytes(b)


def cases():
    """name -> (igvm bytes, what it pins)."""
    out = {}
    out["zero-page.igvm"] = (write_igvm(
        [page_data(0x100000), vp_context(0)],
        [kvm_ready_vmsa()]),
        "rule 1: one PAGE_DATA without file data is measured as a NORMAL page of zeros")
    out["param-insert.igvm"] = (write_igvm(
        [page_data(0x800000, 0), page_data(0x801000, 1),
         (0x301, struct.pack("<QII", PAGE, 0, 0)),
         (0x307, struct.pack("<II", 0, 0)),
         (0x303, struct.pack("<QII", 0x802000, SNP_MASK, 0)),
         page_data(0x803000, 2), vp_context(3)],
        [text_page("0x800000"), text_page("0x801000"), text_page("0x803000"), kvm_ready_vmsa()]),
        "rule 2: the parameter insert at 0x802000 is measured before the still-open region 0x800000-0x801000")
    out["vmsa-cr4-tr.igvm"] = (write_igvm(
        [page_data(0x100000, 0), vp_context(1)],
        [text_page("0x100000"), kvm_ready_vmsa(cr4=0x20, seg_tr=(9, 0x28, 0x8B, 0x67, 0x205000))]),
        "rule 3: CR4 without MCE gains the host's MCE bit; TR.base != LDTR.base is measured as LDTR.base")
    out["vmsa-rebuilt.igvm"] = (write_igvm(
        [page_data(0x100000, 0), vp_context(1)],
        [text_page("0x100000"),
         kvm_ready_vmsa(efer=0xD01, cr0=0xE0000001, cr4=0x20, rflags=0,
                        seg_cs=(1, 0x08, 0xFA9B, 0xFFFFFFFF, 0),
                        seg_gdtr=(6, 0x10, 0x82, 0x10037, 0x200000),
                        seg_idtr=(8, 0x20, 0x8E, 0xFFF, 0x202000),
                        seg_ldtr=(7, 0, 0x82, 0xFFFF, 0x207000),
                        seg_tr=(9, 0x28, 0x8B, 0x67, 0x205000))]),
        "rule 3 in full: EFER.SVME added, CR0 CD/NW cleared and ET set, CR4.MCE added, attribute bits 12-15 dropped, "
        "GDTR/IDTR selector and attributes zeroed and limits cut to 16 bits, RFLAGS bit 1 set, TR.base from LDTR.base")
    out["fpu.igvm"] = (write_igvm(
        [page_data(0x100000, 0), vp_context(1)],
        [text_page("0x100000"), kvm_ready_vmsa(x87_fcw=0x027F, mxcsr=0x1FA0)]),
        "rule 4: the file's FCW 0x27f / MXCSR 0x1fa0 are measured as 0x37f / 0x1f80 on 6.11 (INIT2) and 0 / 0 on 6.8")
    out["page-flags.igvm"] = (write_igvm(
        [page_data(0x200000, None, flags=1), page_data(0x400000, 0, flags=4),
         page_data(0x401000, None, flags=2), page_data(0x402000, 1), vp_context(2)],
        [text_page("0x400000 shared"), text_page("0x402000"), kvm_ready_vmsa()]),
        "a 2 MiB page without data is 512 NORMAL zero pages; the shared flag is ignored (measured as private, "
        "but it ends the run of pages); the unmeasured flag makes UNMEASURED pages")
    out["ap-context.igvm"] = (write_igvm(
        [page_data(0x100000, 0), vp_context(1), vp_context(2, vp=1)],
        [text_page("0x100000"), kvm_ready_vmsa(),
         kvm_ready_vmsa(rip=0x300100, cr4=0x20, seg_tr=(9, 0x28, 0x8B, 0x67, 0x205000))]),
        "a VP context for vCPU 1: refused with one vCPU (no such vCPU); with more, vCPU 1's VMSA is its file page "
        "rebuilt by KVM like the BSP's and the other APs start from reset")
    out["no-bsp.igvm"] = (write_igvm(
        [page_data(0x100000, 0)],
        [text_page("0x100000")]),
        "no VP context: vCPU 0 starts from QEMU's reset state like an AP, with sev_features SNP_ACTIVE")
    out["refused.igvm"] = (write_igvm(
        [page_data(0x100000, 0),
         (0x301, struct.pack("<QII", PAGE, 0, 0)),
         (0x30E, struct.pack("<II", 0, 0)),
         (0x303, struct.pack("<QII", 0x200000, SNP_MASK, 0)),
         vp_context(1)],
        [text_page("0x100000"), kvm_ready_vmsa(sev_features=0x9)]),
        "refused: a COMMAND_LINE directive (QEMU has no handler) and sev_features 0x9 (restricted injection)")
    return out


def vectors(files):
    """files: name -> (path relative to TESTDATA, bytes, description)."""
    doc = {
        "about": "SEV-SNP launch digests of IGVM files under QEMU >= 10.1 + KVM, computed by "
                 "scripts/measure/kvm_model.py from docs/kvm-measurement.md (written from the QEMU and "
                 "Linux sources, independent of the Go code). Not checked against hardware. Files under "
                 "measure/kvm-model/ are made by scripts/measure/kvm_testfiles.py; measure/kvm-ready.igvm "
                 "is pkg/measure's fixture. Host 6.8 is hypothetical (upstream SNP needs 6.11).",
        "model": "scripts/measure/kvm_model.py", "model_version": kvm_model.MODEL_VERSION,
        "generator": "scripts/measure/kvm_testfiles.py", "generator_version": GENERATOR_VERSION,
        "files": [],
    }
    for name, (rel, data, what) in files.items():
        entry = {"file": rel, "sha256": hashlib.sha256(data).hexdigest(), "pins": what, "hosts": {}, "configs": []}
        base = kvm_model.measure(data, 1, "EPYC-v4", "6.11", None, ())
        entry["page_info"] = [r for r in base["page_info"] if r["type"] != "VMSA"]
        for host in HOSTS:
            r = kvm_model.measure(data, 1, "EPYC-v4", host, None, ())
            entry["hosts"][host] = {
                "sev_features": r["sev_features"],
                "bsp_vmsa": r["bsp_vmsa"],
                "refused_by": sorted(set(v["rule"] for v in r["violations"])),
            }
        for vcpus, cpu, host in itertools.product(VCPUS, CPUS, HOSTS):
            r = kvm_model.measure(data, vcpus, cpu, host, None, ())
            entry["configs"].append({
                "vcpus": vcpus, "cpu": cpu, "host_kernel": host, "digest": r["digest"],
                "hypothetical": r["hypothetical"],
                "vmsa_page_info": [{k: v for k, v in x.items() if k != "gpa"} for x in r["page_info"] if x["type"] == "VMSA"],
            })
        doc["files"].append(entry)
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def generate(testdata):
    outputs = {}
    files = {}
    for name, (data, what) in cases().items():
        rel = "measure/kvm-model/" + name
        outputs[rel] = data
        files[name] = (rel, data, what)
    ready = os.path.join(testdata, "measure", "kvm-ready.igvm")
    with open(ready, "rb") as f:
        files["kvm-ready.igvm"] = ("measure/kvm-ready.igvm", f.read(),
                                   "all four rules at once; refused by KVM (EFER.LMA and CS.L without CR0.PG), so every digest is hypothetical")
    outputs["measure/kvm-model.json"] = vectors(files).encode()
    return outputs


# The files issue 14's comparison was made on (compare_go).
ISSUE14_FILES = ["zero-page.igvm", "param-insert.igvm", "vmsa-cr4-tr.igvm", "vmsa-rebuilt.igvm", "fpu.igvm"]


def compare_go(binary, testdata):
    """Which of issue 14's rules, flipped in the model, reproduce the Go digests."""
    paths = [os.path.join(testdata, "measure", "kvm-ready.igvm")]
    paths += [os.path.join(testdata, "measure", "kvm-model", n) for n in sorted(ISSUE14_FILES)]
    subsets = [s for k in range(5) for s in itertools.combinations([1, 2, 3, 4], k)]
    all_ok, none_ok, same = True, True, True
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        for vcpus, cpu, host in itertools.product(VCPUS, CPUS, HOSTS):
            cmd = [binary, "measure", "igvm", path, "--profile", "kvm", "--vcpus", str(vcpus), "--cpu", cpu,
                   "--host-kernel", host, "--skip-kvm-checks", "--json"]
            go = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["digest"]
            match = [s for s in subsets if kvm_model.measure(data, vcpus, cpu, host, None, s)["digest"] == go]
            all_ok &= (1, 2, 3, 4) in match
            none_ok &= () not in match
            same &= () in match
            print("%-18s vcpus=%d %-10s host=%-4s go=%s... flips reproducing it: %s"
                  % (os.path.basename(path), vcpus, cpu, host, go[:16],
                     " ".join("{" + ",".join(map(str, s)) + "}" for s in match) or "none"))
    n = len(paths) * len(VCPUS) * len(CPUS) * len(HOSTS)
    print("model with rules 1-4 flipped equals the Go digest in all %d: %s" % (n, all_ok))
    print("model as the sources say differs from the Go digest in all %d: %s" % (n, none_ok))
    print("model as the sources say equals the Go digest in all %d: %s" % (n, same))
    return 0 if same else 1


def main(argv):
    if len(argv) == 3 and argv[0] == "--compare-go":
        return compare_go(argv[1], argv[2])
    check = argv[:1] == ["--check"]
    if check:
        argv = argv[1:]
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    testdata = argv[0]
    outputs = generate(testdata)
    bad = 0
    for rel, data in sorted(outputs.items()):
        path = os.path.join(testdata, rel)
        if check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except OSError:
                same = False
            if not same:
                print("kvm_testfiles: %s differs from what the generator makes" % path, file=sys.stderr)
                bad = 1
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        print("wrote %s (%d bytes)" % (path, len(data)))
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
