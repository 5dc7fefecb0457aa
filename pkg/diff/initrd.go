package diff

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"sort"
	"strconv"
	"strings"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// compareInitrdFiles compares two initrd files.
func compareInitrdFiles(ctx context.Context, a, b *input, rep *report) error {
	return compareInitrds(ctx, a.reader(), b.reader(), a, b, rep, SectionInitrd)
}

// cpioEntry is one entry of a walk, its content readable until the next.
type cpioEntry struct {
	h       *initrd.Header
	seg     initrd.Segment
	content io.Reader
	linkOf  string
}

// cpioWalk is an initrd walk as a pull iterator.
type cpioWalk struct {
	in       *input
	next     func() (cpioEntry, bool)
	stop     func()
	err      error
	raw      hash.Hash
	segments []initrd.Segment
	seen     map[string]int
	links    map[uint32]string
	mem      int
}

// maxCpioNames bounds the memory of the names one walk remembers (to find
// repeated names and hard links): a hostile archive of many long names
// costs no more.
const maxCpioNames = 64 << 20

func newCpioWalk(ctx context.Context, in *input, r io.Reader) *cpioWalk {
	w := &cpioWalk{in: in, raw: sha256.New(), seen: map[string]int{}, links: map[uint32]string{}}
	tee := io.TeeReader(r, w.raw)
	seq := func(yield func(cpioEntry) bool) {
		err := initrd.Walk(ctx, tee, func(h *initrd.Header, seg initrd.Segment, content io.Reader) error {
			if !yield(cpioEntry{h: h, seg: seg, content: content}) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			w.err = err
		}
	}
	next, stop := iter.Pull(seq)
	w.next, w.stop = next, stop
	return w
}

// advance returns the next entry whose name the walk has not seen before
// (a repeated name is counted in seen); ok is false at the end or with an
// error.
func (w *cpioWalk) advance() (e cpioEntry, ok bool, err error) {
	for {
		e, ok = w.next()
		if !ok {
			if w.err != nil {
				return e, false, w.in.fail(w.err)
			}
			return e, false, nil
		}
		if n := len(w.segments); n == 0 || w.segments[n-1].Index != e.seg.Index {
			w.segments = append(w.segments, e.seg)
		}
		name := e.h.Name
		w.seen[name]++
		if w.seen[name] > 1 {
			continue
		}
		w.mem += len(name) + 64
		if e.h.Mode&modeType != modeDir && e.h.NLink > 1 {
			if first, ok := w.links[e.h.Ino]; ok {
				e.linkOf = first
			} else {
				w.links[e.h.Ino] = name
				w.mem += len(name) + 32
			}
		}
		if w.mem > maxCpioNames {
			return e, false, w.in.fail(fmt.Errorf("more than %d MiB of entry names", maxCpioNames>>20))
		}
		return e, true, nil
	}
}

// pendingEntry is an entry seen on one side only so far, with its
// content's digest (archives need not be sorted: it may come later on the
// other side).
type pendingEntry struct {
	h      *initrd.Header
	linkOf string
	sha    [32]byte
}

// cpioCompare holds the state of comparing two initrds.
type cpioCompare struct {
	ctx     context.Context
	wa, wb  *cpioWalk
	section string
	buf     *buffers
	diffs   []Difference
	// mtimes of entries in both, to tell one epoch for all from changes
	// of single entries.
	mtimeDiffs []Difference
	mtimeA     map[int64]bool
	mtimeB     map[int64]bool
	modules    [2][]string
	pendA      map[string]*pendingEntry
	pendB      map[string]*pendingEntry
}

// compareInitrds compares two initrds, entry by entry: both archives are
// read once, side by side; entries in the same order are compared as they
// come, content against content; others are matched by name at the end,
// content by digest. section is where the differences go (SectionInitrd).
func compareInitrds(ctx context.Context, ra, rb io.Reader, a, b *input, rep *report, section string) error {
	t := &cpioCompare{ctx: ctx, section: section, buf: newBuffers(),
		wa: newCpioWalk(ctx, a, ra), wb: newCpioWalk(ctx, b, rb),
		mtimeA: map[int64]bool{}, mtimeB: map[int64]bool{},
		pendA: map[string]*pendingEntry{}, pendB: map[string]*pendingEntry{}}
	defer t.wa.stop()
	defer t.wb.stop()
	err := mergeWalks(t.wa.advance, t.wb.advance, func(e cpioEntry) string { return e.h.Name },
		func(e cpioEntry) error { return t.hold(t.wa, e, t.pendA) },
		func(e cpioEntry) error { return t.hold(t.wb, e, t.pendB) },
		t.compareEntry)
	if err != nil {
		return err
	}
	t.matchPending()
	t.finishMtimes()
	for name, n := range t.wa.seen {
		if m := t.wb.seen[name]; n > 1 || m > 1 {
			if n != m {
				t.diffs = append(t.diffs, Difference{Section: section, Kind: Changed, Path: name, Field: "occurrences",
					A: strconv.Itoa(n), B: strconv.Itoa(m), Detail: "the last one counts when the kernel unpacks"})
			}
		}
	}
	for name, m := range t.wb.seen {
		if m > 1 && t.wa.seen[name] == 0 {
			t.diffs = append(t.diffs, Difference{Section: section, Kind: Changed, Path: name, Field: "occurrences", A: "0", B: strconv.Itoa(m)})
		}
	}
	sort.SliceStable(t.diffs, func(i, j int) bool { return comparePaths(t.diffs[i].Path, t.diffs[j].Path) < 0 })
	if err := t.reportSegments(rep); err != nil {
		return err
	}
	moduleDiffs := t.moduleDiffs()
	for _, d := range t.diffs {
		var err error
		if d.Path == initrd.LoadOrderPath && d.Field == "content" && len(moduleDiffs) > 0 {
			err = rep.consequence(d)
		} else {
			err = rep.add(d)
		}
		if err != nil {
			return err
		}
	}
	for _, d := range moduleDiffs {
		if err := rep.add(d); err != nil {
			return err
		}
	}
	// The same entries can be encoded differently (compression level,
	// encoder, padding).
	if x, y := t.wa.raw.Sum(nil), t.wb.raw.Sum(nil); !bytes.Equal(x, y) {
		return rep.consequence(Difference{Section: section, Kind: Changed, Path: "encoded bytes", Field: "sha256",
			A: hex.EncodeToString(x), B: hex.EncodeToString(y)})
	}
	return nil
}

// hold reads the content of an entry seen on one side only so far.
func (t *cpioCompare) hold(w *cpioWalk, e cpioEntry, pend map[string]*pendingEntry) error {
	p := &pendingEntry{h: e.h, linkOf: e.linkOf}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxio.Reader(t.ctx, e.content), t.buf.a); err != nil {
		return w.in.fail(fmt.Errorf("%s: %w", safe(e.h.Name), err))
	}
	h.Sum(p.sha[:0])
	pend[e.h.Name] = p
	return nil
}

// matchPending pairs the entries held on both sides by name; the others
// are added or removed.
func (t *cpioCompare) matchPending() {
	for name, pa := range t.pendA {
		pb, ok := t.pendB[name]
		if !ok {
			t.diffs = append(t.diffs, Difference{Section: t.section, Kind: Removed, Path: name, A: cpioDescribe(pa.h, pa.linkOf)})
			continue
		}
		delete(t.pendB, name)
		t.compareHeaders(pa.h, pb.h, pa.linkOf, pb.linkOf)
		if pa.h.Mode&modeType == modeReg && pb.h.Mode&modeType == modeReg && pa.sha != pb.sha {
			t.diffs = append(t.diffs, Difference{Section: t.section, Kind: Changed, Path: name, Field: "content",
				A: sizeText(pa.h.Size) + ", sha256 " + hex.EncodeToString(pa.sha[:]),
				B: sizeText(pb.h.Size) + ", sha256 " + hex.EncodeToString(pb.sha[:])})
		}
	}
	for name, pb := range t.pendB {
		t.diffs = append(t.diffs, Difference{Section: t.section, Kind: Added, Path: name, B: cpioDescribe(pb.h, pb.linkOf)})
	}
}

func cpioDescribe(h *initrd.Header, linkOf string) string {
	s := fmt.Sprintf("%s %s %d:%d", typeName(h.Mode), permText(h.Mode), h.UID, h.GID)
	switch h.Mode & modeType {
	case modeReg:
		s += ", " + sizeText(h.Size)
		if linkOf != "" {
			s += ", hard link of " + strconv.Quote(linkOf)
		}
	case modeSymlink:
		s += " -> " + strconv.Quote(h.Linkname)
	case modeChar, modeBlock:
		s += fmt.Sprintf(" %d:%d", h.RDevMajor, h.RDevMinor)
	}
	return s
}

// compareHeaders records the header fields that differ (type, mode,
// owner, mtime, link target, device, hard link); it returns false when
// the types differ (nothing else is compared then).
func (t *cpioCompare) compareHeaders(a, b *initrd.Header, linkA, linkB string) bool {
	add := func(field, x, y, detail string) {
		t.diffs = append(t.diffs, Difference{Section: t.section, Kind: Changed, Path: a.Name, Field: field, A: x, B: y, Detail: detail})
	}
	if a.Mode&modeType != b.Mode&modeType {
		add("type", cpioDescribe(a, linkA), cpioDescribe(b, linkB), "")
		return false
	}
	if a.Mode&modePerm != b.Mode&modePerm {
		add("mode", permText(a.Mode), permText(b.Mode), initrd.ModeString(a.Mode)+" -> "+initrd.ModeString(b.Mode))
	}
	if a.UID != b.UID || a.GID != b.GID {
		add("owner", fmt.Sprintf("%d:%d", a.UID, a.GID), fmt.Sprintf("%d:%d", b.UID, b.GID), "")
	}
	t.mtimeA[a.MTime], t.mtimeB[b.MTime] = true, true
	if a.MTime != b.MTime {
		t.mtimeDiffs = append(t.mtimeDiffs, Difference{Section: t.section, Kind: Changed, Path: a.Name, Field: "mtime",
			A: timeText(a.MTime, 0), B: timeText(b.MTime, 0)})
	}
	switch a.Mode & modeType {
	case modeSymlink:
		if a.Linkname != b.Linkname {
			add("link", strconv.Quote(a.Linkname), strconv.Quote(b.Linkname), "")
		}
	case modeChar, modeBlock:
		if a.RDevMajor != b.RDevMajor || a.RDevMinor != b.RDevMinor {
			add("device", fmt.Sprintf("%d:%d", a.RDevMajor, a.RDevMinor), fmt.Sprintf("%d:%d", b.RDevMajor, b.RDevMinor), "")
		}
	case modeReg:
		if linkA != linkB {
			add("hard link", linkText(linkA), linkText(linkB), "")
		}
	}
	return true
}

// maxModulesOrder bounds the load order file read whole to compare its
// modules.
const maxModulesOrder = 1 << 20

func (t *cpioCompare) compareEntry(ea, eb cpioEntry) error {
	if !t.compareHeaders(ea.h, eb.h, ea.linkOf, eb.linkOf) || ea.h.Mode&modeType != modeReg {
		return nil
	}
	name := ea.h.Name
	if name == initrd.LoadOrderPath && ea.h.Size <= maxModulesOrder && eb.h.Size <= maxModulesOrder {
		// Read whole: the module lists are compared too.
		var x, y bytes.Buffer
		if _, err := io.Copy(&x, ctxio.Reader(t.ctx, ea.content)); err != nil {
			return t.wa.in.fail(fmt.Errorf("%s: %w", safe(name), err))
		}
		if _, err := io.Copy(&y, ctxio.Reader(t.ctx, eb.content)); err != nil {
			return t.wb.in.fail(fmt.Errorf("%s: %w", safe(name), err))
		}
		t.modules = [2][]string{moduleLines(x.Bytes()), moduleLines(y.Bytes())}
		ea.content, eb.content = bytes.NewReader(x.Bytes()), bytes.NewReader(y.Bytes())
	}
	d, errA, errB := compareStreams(t.ctx, ea.content, eb.content, t.buf)
	if errA != nil {
		return t.wa.in.fail(fmt.Errorf("%s: %w", safe(name), errA))
	}
	if errB != nil {
		return t.wb.in.fail(fmt.Errorf("%s: %w", safe(name), errB))
	}
	if d.Offset >= 0 {
		t.diffs = append(t.diffs, Difference{Section: t.section, Kind: Changed, Path: name, Field: "content",
			A: sizeText(ea.h.Size), B: sizeText(eb.h.Size), Detail: d.describe(ea.h.Size, eb.h.Size)})
	}
	return nil
}

func moduleLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// moduleDiffs compares the module load orders: modules only on one side,
// then the first place where the order of the modules on both sides
// differs.
func (t *cpioCompare) moduleDiffs() []Difference {
	a, b := t.modules[0], t.modules[1]
	if a == nil && b == nil {
		return nil
	}
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, m := range a {
		inA[m] = true
	}
	for _, m := range b {
		inB[m] = true
	}
	var out []Difference
	for i, m := range a {
		if !inB[m] {
			out = append(out, Difference{Section: SectionModules, Kind: Removed, Path: m, A: fmt.Sprintf("position %d", i+1)})
		}
	}
	for i, m := range b {
		if !inA[m] {
			out = append(out, Difference{Section: SectionModules, Kind: Added, Path: m, B: fmt.Sprintf("position %d", i+1)})
		}
	}
	var ca, cb []string
	for _, m := range a {
		if inB[m] {
			ca = append(ca, m)
		}
	}
	for _, m := range b {
		if inA[m] {
			cb = append(cb, m)
		}
	}
	for i := range ca {
		if i < len(cb) && ca[i] != cb[i] {
			out = append(out, Difference{Section: SectionModules, Kind: Changed, Path: "load order", Field: fmt.Sprintf("common module %d", i+1),
				A: ca[i], B: cb[i], Detail: "the modules both load, in another order"})
			break
		}
	}
	return out
}

// finishMtimes reports the mtimes: one difference when every entry of
// each side has the same mtime (one SOURCE_DATE_EPOCH against another),
// else one per entry.
func (t *cpioCompare) finishMtimes() {
	if len(t.mtimeDiffs) == 0 {
		return
	}
	if len(t.mtimeA) == 1 && len(t.mtimeB) == 1 && len(t.mtimeDiffs) > 1 {
		d := t.mtimeDiffs[0]
		d.Path = "every entry"
		d.Detail = fmt.Sprintf("%d entries", len(t.mtimeDiffs))
		t.diffs = append(t.diffs, d)
		return
	}
	t.diffs = append(t.diffs, t.mtimeDiffs...)
}

// reportSegments compares the segments: count and compression, their
// offsets as consequences.
func (t *cpioCompare) reportSegments(rep *report) error {
	sa, sb := t.wa.segments, t.wb.segments
	for i := 0; i < max(len(sa), len(sb)); i++ {
		path := fmt.Sprintf("segment %d", i+1)
		var err error
		switch {
		case i >= len(sa):
			err = rep.add(Difference{Section: t.section, Kind: Added, Path: path, B: string(sb[i].Compression)})
		case i >= len(sb):
			err = rep.add(Difference{Section: t.section, Kind: Removed, Path: path, A: string(sa[i].Compression)})
		case sa[i].Compression != sb[i].Compression:
			err = rep.add(Difference{Section: t.section, Kind: Changed, Path: path, Field: "compression", A: string(sa[i].Compression), B: string(sb[i].Compression)})
		case sa[i].Offset != sb[i].Offset:
			err = rep.consequence(Difference{Section: t.section, Kind: Changed, Path: path, Field: "offset",
				A: strconv.FormatInt(sa[i].Offset, 10), B: strconv.FormatInt(sb[i].Offset, 10)})
		}
		if err != nil {
			return err
		}
	}
	return nil
}
