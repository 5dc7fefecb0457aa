package linuxboot

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/hexnum"
)

// Fixed ACPI addresses of igvm-tooling's layout.
const (
	RSDPAddress      = 0xe0000  // the RSDP, also boot_params.acpi_rsdp_addr
	XSDTAddress      = 0x100000 // the XSDT
	firstTableAddr   = 0x101000 // the other tables, packed from here
	acpiLowestPage   = 0xa0000  // ACPI pages may not start below this
	maxACPIEnd       = SNPPagesAddress
	acpiHeaderSize   = 36
	rsdpV1Size       = 20
	rsdpV2Size       = 36
	facsMinSize      = 64
	facpFacs32Off    = 36
	facpDsdt32Off    = 40
	facpXFacsOff     = 132
	facpXDsdtOff     = 140
	facpXFieldsEnd   = 148
	pagesRecordBytes = 8 + pageSize
)

// defaultACPIPages is igvm-tooling's acpi.zip (MIT licence, see
// LICENSE.igvm-tooling) exported as a pages file: the ACPI pages igvmgen
// uses when no ACPI directory is given.
//
//go:embed acpi-default.pages
var defaultACPIPages []byte

// ACPIPage is one 4 KiB page of ACPI data at a guest physical address.
type ACPIPage struct {
	GPA  uint64
	Data []byte // pageSize bytes
}

// ACPI is the set of ACPI pages placed below 0x800000, in ascending GPA
// order; pages between them are zero. The RSDP is at 0xE0000.
type ACPI struct {
	Pages []ACPIPage
	// Tables lists where each table was placed, when the pages were built
	// from tables (empty for a pages file).
	Tables []ACPITable
}

// ACPITable is a table placed by ACPIFromTables.
type ACPITable struct {
	Signature string        `json:"signature"`
	Address   hexnum.Uint64 `json:"address"`
	Length    int           `json:"length"`
}

// End is the first address after the last ACPI page: the end of the ACPI
// e820 range and of the pages emitted below the SNP pages.
func (a *ACPI) End() uint64 {
	if len(a.Pages) == 0 {
		return 0
	}
	return a.Pages[len(a.Pages)-1].GPA + pageSize
}

// WritePages writes the pages in the pages-file format: records of a
// little-endian u64 GPA followed by 4096 bytes, in ascending GPA order.
func (a *ACPI) WritePages(w io.Writer) error {
	var gpa [8]byte
	for _, p := range a.Pages {
		binary.LittleEndian.PutUint64(gpa[:], p.GPA)
		if _, err := w.Write(gpa[:]); err != nil {
			return err
		}
		if _, err := w.Write(p.Data); err != nil {
			return err
		}
	}
	return nil
}

// DefaultACPI returns igvm-tooling's default ACPI pages (a Hyper-V style
// DSDT, hardware-reduced FADT, one LAPIC), ending at 0x200000.
func DefaultACPI() *ACPI {
	a, err := ParseACPIPages(defaultACPIPages)
	if err != nil {
		panic("linuxboot: built-in ACPI pages: " + err.Error()) // a build defect, not an input error
	}
	return a
}

// ReadACPIPagesFile reads a pages file (see ParseACPIPages).
func ReadACPIPagesFile(path string) (*ACPI, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acpi pages: %w", err)
	}
	a, err := ParseACPIPages(data)
	if err != nil {
		return nil, fmt.Errorf("acpi pages %s: %w", path, err)
	}
	return a, nil
}

// ParseACPIPages parses ready ACPI pages: records of [u64 LE GPA][4096
// bytes], GPAs 4 KiB aligned, strictly ascending, within
// [0xA0000, 0x800000), with the RSDP ("RSD PTR ") at 0xE0000 and at least
// one page from 0x100000 on. The tables reached from the RSDP (XSDT or
// RSDT, the tables it lists, the FADT's DSDT and FACS) must lie in the
// pages, have good checksums and known signatures. The result aliases
// data.
func ParseACPIPages(data []byte) (*ACPI, error) {
	if len(data) == 0 || len(data)%pagesRecordBytes != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %d-byte page records", len(data), pagesRecordBytes)
	}
	a := &ACPI{}
	for off := 0; off < len(data); off += pagesRecordBytes {
		gpa := binary.LittleEndian.Uint64(data[off:])
		rec := off / pagesRecordBytes
		switch {
		case gpa%pageSize != 0:
			return nil, fmt.Errorf("record %d: GPA %#x is not 4 KiB aligned", rec, gpa)
		case gpa < acpiLowestPage || gpa >= maxACPIEnd:
			return nil, fmt.Errorf("record %d: GPA %#x is outside [%#x, %#x)", rec, gpa, acpiLowestPage, maxACPIEnd)
		case len(a.Pages) > 0 && gpa <= a.Pages[len(a.Pages)-1].GPA:
			return nil, fmt.Errorf("record %d: GPA %#x does not ascend", rec, gpa)
		}
		a.Pages = append(a.Pages, ACPIPage{GPA: gpa, Data: data[off+8 : off+pagesRecordBytes : off+pagesRecordBytes]})
	}
	var rsdp []byte
	for _, p := range a.Pages {
		if p.GPA == RSDPAddress {
			rsdp = p.Data
		}
	}
	if rsdp == nil || string(rsdp[:8]) != "RSD PTR " {
		return nil, fmt.Errorf("no RSDP (\"RSD PTR \") at %#x", RSDPAddress)
	}
	if a.End() <= XSDTAddress {
		return nil, fmt.Errorf("no page at or above %#x (the XSDT)", XSDTAddress)
	}
	if err := a.checkTables(); err != nil {
		return nil, err
	}
	return a, nil
}

// maxXSDTEntries bounds the tables checkTables follows from the XSDT.
const maxXSDTEntries = 64

// read returns n bytes of the pages at gpa; every page touched must be in
// the set.
func (a *ACPI) read(gpa uint64, n uint64) ([]byte, error) {
	// Check the end first: a table's length field must not make us
	// allocate more than the pages hold.
	if end := a.End(); n > end || gpa > end-n {
		return nil, fmt.Errorf("[%#x, +%#x) runs past the last page (%#x)", gpa, n, end)
	}
	out := make([]byte, 0, n)
	for uint64(len(out)) < n {
		at := gpa + uint64(len(out))
		pg := at &^ (pageSize - 1)
		i := sort.Search(len(a.Pages), func(i int) bool { return a.Pages[i].GPA >= pg })
		if i == len(a.Pages) || a.Pages[i].GPA != pg {
			return nil, fmt.Errorf("[%#x, %#x) needs page %#x, which the file lacks", gpa, gpa+n, pg)
		}
		off := at - pg
		out = append(out, a.Pages[i].Data[off:min(pageSize, off+n-uint64(len(out)))]...)
	}
	return out, nil
}

// checkTables follows the RSDP, the XSDT (or RSDT) and the FADT through
// the pages and checks that every table lies in them, has a known
// signature and a good checksum: the same rules as for tables given as
// files.
func (a *ACPI) checkTables() error {
	rsdp, err := a.read(RSDPAddress, rsdpV1Size)
	if err != nil {
		return fmt.Errorf("RSDP: %w", err)
	}
	if sum8(rsdp) != 0 {
		return fmt.Errorf("RSDP at %#x: checksum (first 20 bytes) is bad", uint64(RSDPAddress))
	}
	root, entrySize, rootSig := uint64(binary.LittleEndian.Uint32(rsdp[16:])), 4, "RSDT"
	if rsdp[15] >= 2 {
		if rsdp, err = a.read(RSDPAddress, rsdpV2Size); err != nil {
			return fmt.Errorf("RSDP: %w", err)
		}
		if sum8(rsdp) != 0 {
			return fmt.Errorf("RSDP at %#x: extended checksum is bad", uint64(RSDPAddress))
		}
		root, entrySize, rootSig = binary.LittleEndian.Uint64(rsdp[24:]), 8, "XSDT"
	}
	table := func(addr uint64, want string) ([]byte, error) {
		hdr, err := a.read(addr, 8)
		if err != nil {
			return nil, fmt.Errorf("table at %#x: %w", addr, err)
		}
		sig := string(hdr[:4])
		if want != "" && sig != want {
			return nil, fmt.Errorf("table at %#x: signature %q, want %q", addr, sig, want)
		}
		n := uint64(binary.LittleEndian.Uint32(hdr[4:]))
		t, err := a.read(addr, n)
		if err != nil {
			return nil, fmt.Errorf("%s at %#x: %w", sig, addr, err)
		}
		if err := checkTable(sig, t); err != nil {
			return nil, fmt.Errorf("%s at %#x: %w", sig, addr, err)
		}
		return t, nil
	}
	rt, err := table(root, rootSig)
	if err != nil {
		return err
	}
	n := (len(rt) - acpiHeaderSize) / entrySize
	if n > maxXSDTEntries {
		return fmt.Errorf("%s at %#x lists %d tables, more than %d", rootSig, root, n, maxXSDTEntries)
	}
	for i := 0; i < n; i++ {
		e := rt[acpiHeaderSize+i*entrySize:]
		addr := uint64(binary.LittleEndian.Uint32(e))
		if entrySize == 8 {
			addr = binary.LittleEndian.Uint64(e)
		}
		t, err := table(addr, "")
		if err != nil {
			return err
		}
		sig := string(t[:4])
		if !acpiXSDTListed[sig] {
			return fmt.Errorf("%s entry %d: table at %#x has an unknown signature %q (known: FACP, APIC, MCFG, TPM2, TCPA, OEM0)", rootSig, i, addr, sig)
		}
		if sig != "FACP" {
			continue
		}
		if len(t) < facpDsdt32Off+4 {
			return fmt.Errorf("FACP at %#x: %d bytes, too short for its DSDT pointer", addr, len(t))
		}
		for _, f := range []struct {
			sig          string
			off32, off64 int
		}{{"DSDT", facpDsdt32Off, facpXDsdtOff}, {"FACS", facpFacs32Off, facpXFacsOff}} {
			p := uint64(binary.LittleEndian.Uint32(t[f.off32:]))
			if len(t) >= f.off64+8 {
				if x := binary.LittleEndian.Uint64(t[f.off64:]); x != 0 {
					p = x
				}
			}
			if p == 0 {
				continue
			}
			if _, err := table(p, f.sig); err != nil {
				return fmt.Errorf("FACP's %s: %w", f.sig, err)
			}
		}
	}
	return nil
}

// acpiXSDTListed are the tables the XSDT points to; DSDT and FACS are
// reached through the FADT. Any other signature is an error.
var acpiXSDTListed = map[string]bool{"FACP": true, "OEM0": true, "APIC": true, "TPM2": true, "TCPA": true, "MCFG": true}

// ACPIFromDir reads the compiled tables (*.aml, as iasl or acpidump
// produce them) in dir and lays them out with ACPIFromTables. File names
// only matter for messages; the tables are told apart by signature.
func ACPIFromDir(dir string) (*ACPI, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("acpi: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".aml") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("acpi: no .aml files in %s", dir)
	}
	tables := make(map[string][]byte, len(names))
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("acpi: %w", err)
		}
		tables[n] = data
	}
	return ACPIFromTables(tables)
}

// ACPIFromTables lays out compiled ACPI tables (keyed by a name used in
// messages, e.g. the file name) as cloud-hypervisor deployments of
// igvm-tooling expect:
//   - the RSDP at 0xE0000, verbatim; its XSDT address must be 0x100000;
//   - the XSDT at 0x100000;
//   - every other table sorted by signature and packed without alignment
//     from 0x101000;
//   - the FADT's 32- and 64-bit FACS and DSDT pointers set and its checksum
//     fixed;
//   - the XSDT given one entry per FACP, OEM0, APIC, TPM2, TCPA and MCFG
//     table in that sorted order, its length and checksum fixed.
//
// RSDP, XSDT, FACP and DSDT are required. A table with a bad checksum or
// length, an unknown signature, or a duplicate is an error. The input is
// not modified.
func ACPIFromTables(tables map[string][]byte) (*ACPI, error) {
	keys := make([]string, 0, len(tables))
	for k := range tables {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rsdp, xsdt []byte
	bySig := map[string][]byte{}
	from := map[string]string{}
	for _, name := range keys {
		t := tables[name]
		if len(t) >= 8 && string(t[:8]) == "RSD PTR " {
			if rsdp != nil {
				return nil, fmt.Errorf("acpi: %s: a second RSDP (first in %s)", name, from["RSDP"])
			}
			if err := checkRSDP(t); err != nil {
				return nil, fmt.Errorf("acpi: %s: %w", name, err)
			}
			rsdp, from["RSDP"] = t, name
			continue
		}
		if len(t) < 8 {
			return nil, fmt.Errorf("acpi: %s: %d bytes, too short for an ACPI table", name, len(t))
		}
		sig := string(t[:4])
		if sig != "XSDT" && sig != "DSDT" && sig != "FACS" && !acpiXSDTListed[sig] {
			return nil, fmt.Errorf("acpi: %s: unknown table signature %q (known: RSD PTR, XSDT, FACP, DSDT, FACS, APIC, MCFG, TPM2, TCPA, OEM0)", name, sig)
		}
		if prev, dup := from[sig]; dup {
			return nil, fmt.Errorf("acpi: %s: a second %s table (first in %s)", name, sig, prev)
		}
		if err := checkTable(sig, t); err != nil {
			return nil, fmt.Errorf("acpi: %s: %w", name, err)
		}
		from[sig] = name
		if sig == "XSDT" {
			xsdt = t
		} else {
			bySig[sig] = t
		}
	}
	for _, need := range []string{"RSDP", "XSDT", "FACP", "DSDT"} {
		if from[need] == "" {
			return nil, fmt.Errorf("acpi: no %s table", need)
		}
	}

	sigs := make([]string, 0, len(bySig))
	for s := range bySig {
		sigs = append(sigs, s)
	}
	sort.Strings(sigs)
	a := &ACPI{}
	where := map[string]uint64{}
	addr := uint64(firstTableAddr)
	for _, s := range sigs {
		where[s] = addr
		addr += uint64(len(bySig[s]))
	}
	if addr > maxACPIEnd {
		return nil, fmt.Errorf("acpi: tables end at %#x, above the limit %#x", addr, maxACPIEnd)
	}

	facp := bytes.Clone(bySig["FACP"])
	if len(facp) < facpDsdt32Off+4 {
		return nil, fmt.Errorf("acpi: %s: FACP of %d bytes has no DSDT field", from["FACP"], len(facp))
	}
	if fa, ok := where["FACS"]; ok {
		binary.LittleEndian.PutUint32(facp[facpFacs32Off:], uint32(fa))
		if len(facp) >= facpXFieldsEnd {
			binary.LittleEndian.PutUint64(facp[facpXFacsOff:], fa)
		}
	}
	binary.LittleEndian.PutUint32(facp[facpDsdt32Off:], uint32(where["DSDT"]))
	if len(facp) >= facpXFieldsEnd {
		binary.LittleEndian.PutUint64(facp[facpXDsdtOff:], where["DSDT"])
	}
	fixChecksum(facp, 9)
	bySig["FACP"] = facp

	x := bytes.Clone(xsdt)
	for _, s := range sigs {
		if acpiXSDTListed[s] {
			x = binary.LittleEndian.AppendUint64(x, where[s])
		}
	}
	if len(x) > firstTableAddr-XSDTAddress {
		return nil, fmt.Errorf("acpi: XSDT of %d bytes does not fit below %#x", len(x), firstTableAddr)
	}
	binary.LittleEndian.PutUint32(x[4:], uint32(len(x)))
	fixChecksum(x, 9)

	mem := map[uint64][]byte{}
	put := func(gpa uint64, data []byte) {
		for i := 0; i < len(data); {
			pg := (gpa + uint64(i)) &^ (pageSize - 1)
			off := (gpa + uint64(i)) - pg
			p := mem[pg]
			if p == nil {
				p = make([]byte, pageSize)
				mem[pg] = p
			}
			i += copy(p[off:], data[i:])
		}
	}
	put(RSDPAddress, rsdp)
	put(XSDTAddress, x)
	a.Tables = append(a.Tables, ACPITable{"RSD PTR ", RSDPAddress, len(rsdp)}, ACPITable{"XSDT", XSDTAddress, len(x)})
	for _, s := range sigs {
		put(where[s], bySig[s])
		a.Tables = append(a.Tables, ACPITable{s, hexnum.Uint64(where[s]), len(bySig[s])})
	}
	gpas := make([]uint64, 0, len(mem))
	for g := range mem {
		gpas = append(gpas, g)
	}
	sort.Slice(gpas, func(i, j int) bool { return gpas[i] < gpas[j] })
	for _, g := range gpas {
		a.Pages = append(a.Pages, ACPIPage{GPA: g, Data: mem[g]})
	}
	return a, nil
}

func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func fixChecksum(t []byte, off int) {
	t[off] = 0
	t[off] = -sum8(t)
}

func checkRSDP(t []byte) error {
	if len(t) < rsdpV1Size {
		return fmt.Errorf("RSDP of %d bytes, want at least %d", len(t), rsdpV1Size)
	}
	if sum8(t[:rsdpV1Size]) != 0 {
		return fmt.Errorf("RSDP checksum (first 20 bytes) is bad")
	}
	if t[15] >= 2 {
		if len(t) < rsdpV2Size {
			return fmt.Errorf("ACPI 2.0 RSDP of %d bytes, want %d", len(t), rsdpV2Size)
		}
		n := binary.LittleEndian.Uint32(t[20:])
		if n < rsdpV2Size || int64(n) > int64(len(t)) {
			return fmt.Errorf("RSDP length field %d, file has %d bytes", n, len(t))
		}
		if sum8(t[:n]) != 0 {
			return fmt.Errorf("RSDP extended checksum is bad")
		}
		if xa := binary.LittleEndian.Uint64(t[24:]); xa != XSDTAddress {
			return fmt.Errorf("RSDP points to an XSDT at %#x, the layout puts it at %#x", xa, XSDTAddress)
		}
		return nil
	}
	return fmt.Errorf("RSDP revision %d has no XSDT pointer (need revision 2)", t[15])
}

func checkTable(sig string, t []byte) error {
	min := acpiHeaderSize
	if sig == "FACS" {
		min = facsMinSize
	}
	if len(t) < min {
		return fmt.Errorf("%s table of %d bytes, want at least %d", sig, len(t), min)
	}
	if n := binary.LittleEndian.Uint32(t[4:]); int64(n) != int64(len(t)) {
		return fmt.Errorf("%s length field %d differs from the file size %d", sig, n, len(t))
	}
	if sig == "FACS" { // the FACS has no checksum
		return nil
	}
	if sum8(t) != 0 {
		return fmt.Errorf("%s checksum is bad (bytes sum to %#x, not 0)", sig, sum8(t))
	}
	return nil
}
