package diff

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strconv"
	"time"

	"github.com/imagebuilder/imagebuilder/pkg/erofs"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// Unix file types (st_mode), shared by erofs and newc.
const (
	modeType    = 0o170000
	modeDir     = 0o040000
	modeReg     = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	modeBlock   = 0o060000
	modeFIFO    = 0o010000
	modeSocket  = 0o140000
	modePerm    = 0o7777
)

func typeName(mode uint32) string {
	switch mode & modeType {
	case modeDir:
		return "directory"
	case modeReg:
		return "regular file"
	case modeSymlink:
		return "symlink"
	case modeChar:
		return "character device"
	case modeBlock:
		return "block device"
	case modeFIFO:
		return "fifo"
	case modeSocket:
		return "socket"
	}
	return fmt.Sprintf("type %#o", mode&modeType)
}

func permText(mode uint32) string { return fmt.Sprintf("%04o", mode&modePerm) }

// comparePaths orders paths as a depth-first walk in name order visits
// them: component by component, a parent before its children ("/a",
// "/a/b", "/a-c"). It is the byte order with '/' below every other byte.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '/' {
			return -1
		}
		if y == '/' {
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// maxLinkTable bounds the memory of the hard-link table of one walk: the
// first path of each inode with several links (a hostile image can give
// deep paths many links).
const maxLinkTable = 64 << 20

// treeEntry is one path of a walk.
type treeEntry struct {
	path string
	in   *erofs.Inode
	// linkOf is the first path of the walk with the same inode, for a
	// non-directory with several links seen before; "" otherwise.
	linkOf string
}

// treeWalk is an erofs walk as a pull iterator, so that two walks go in
// step without holding either tree.
type treeWalk struct {
	in       *input
	fs       *erofs.FS
	next     func() (string, *erofs.Inode, bool)
	stop     func()
	err      error
	links    map[uint64]string
	linkSize int
}

func newTreeWalk(ctx context.Context, in *input, fs *erofs.FS) *treeWalk {
	w := &treeWalk{in: in, fs: fs, links: map[uint64]string{}}
	seq := func(yield func(string, *erofs.Inode) bool) {
		err := fs.Walk(ctx, func(p string, n *erofs.Inode) error {
			if !yield(p, n) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			w.err = err
		}
	}
	w.next, w.stop = iter.Pull2(seq)
	return w
}

// advance returns the next entry; ok is false at the end of the walk or
// with an error.
func (w *treeWalk) advance() (e treeEntry, ok bool, err error) {
	p, n, ok := w.next()
	if !ok {
		if w.err != nil {
			return e, false, w.in.fail(w.err)
		}
		return e, false, nil
	}
	e = treeEntry{path: p, in: n}
	if !n.IsDir() && n.Nlink > 1 {
		if first, seen := w.links[n.Nid]; seen {
			e.linkOf = first
		} else {
			w.linkSize += len(p) + 48
			if w.linkSize > maxLinkTable {
				return e, false, w.in.fail(fmt.Errorf("more than %d MiB of hard-linked paths", maxLinkTable>>20))
			}
			w.links[n.Nid] = p
		}
	}
	return e, true, nil
}

// compareFilesystems compares the superblock fields the disk header
// comparison does not cover, then the trees.
func compareFilesystems(ctx context.Context, a, b *input, fa, fb *erofs.FS, rep *report) error {
	sa, sb := fa.Superblock(), fb.Superblock()
	add := func(field string, x, y string, derived bool) error {
		if x == y {
			return nil
		}
		d := Difference{Section: SectionErofs, Kind: Changed, Path: field, A: x, B: y}
		if derived {
			return rep.consequence(d)
		}
		return rep.add(d)
	}
	if err := add("build_time", timeText(int64(sa.BuildTime), sa.BuildTimeNsec), timeText(int64(sb.BuildTime), sb.BuildTimeNsec), false); err != nil {
		return err
	}
	if err := add("feature_compat", hexText(uint64(sa.FeatureCompat)), hexText(uint64(sb.FeatureCompat)), false); err != nil {
		return err
	}
	if err := add("volume_name", strconv.Quote(cString(sa.VolumeName[:])), strconv.Quote(cString(sb.VolumeName[:])), false); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		x, y uint64
	}{{"root_nid", uint64(sa.RootNid), uint64(sb.RootNid)}, {"meta_blkaddr", uint64(sa.MetaBlkAddr), uint64(sb.MetaBlkAddr)},
		{"xattr_blkaddr", uint64(sa.XattrBlkAddr), uint64(sb.XattrBlkAddr)}} {
		if err := add(f.name, strconv.FormatUint(f.x, 10), strconv.FormatUint(f.y, 10), true); err != nil {
			return err
		}
	}
	return compareTrees(ctx, a, b, fa, fb, rep)
}

// treeCompare holds what comparing two trees needs.
type treeCompare struct {
	ctx    context.Context
	wa, wb *treeWalk
	rep    *report
	buf    *buffers
	// buildA and buildB are the build times: an mtime equal to its
	// image's build time on both sides is no difference of its own.
	buildA, buildB uint64
}

// compareTrees walks both trees in step, in path order, and compares the
// entries of each path present on both sides.
func compareTrees(ctx context.Context, a, b *input, fa, fb *erofs.FS, rep *report) error {
	t := &treeCompare{ctx: ctx, rep: rep, buf: newBuffers(),
		wa: newTreeWalk(ctx, a, fa), wb: newTreeWalk(ctx, b, fb),
		buildA: fa.Superblock().BuildTime, buildB: fb.Superblock().BuildTime}
	defer t.wa.stop()
	defer t.wb.stop()
	return mergeWalks(t.wa.advance, t.wb.advance, func(e treeEntry) string { return e.path },
		func(e treeEntry) error {
			return rep.add(Difference{Section: SectionFiles, Kind: Removed, Path: e.path, A: t.describe(t.wa, e)})
		},
		func(e treeEntry) error {
			return rep.add(Difference{Section: SectionFiles, Kind: Added, Path: e.path, B: t.describe(t.wb, e)})
		},
		t.compareEntry)
}

// mergeWalks goes through two walks in step, both in path order
// (comparePaths): onlyA gets an entry whose path A has and B has not (so
// far), onlyB the reverse, both the entries of a path both have. A walk
// that ends with an error ends the merge with it.
func mergeWalks[E any](nextA, nextB func() (E, bool, error), path func(E) string, onlyA, onlyB func(E) error, both func(E, E) error) error {
	ea, okA, err := nextA()
	if err != nil {
		return err
	}
	eb, okB, err := nextB()
	if err != nil {
		return err
	}
	for okA || okB {
		c := 0
		switch {
		case !okA:
			c = 1
		case !okB:
			c = -1
		default:
			c = comparePaths(path(ea), path(eb))
		}
		switch {
		case c < 0:
			err = onlyA(ea)
		case c > 0:
			err = onlyB(eb)
		default:
			err = both(ea, eb)
		}
		if err != nil {
			return err
		}
		if c <= 0 {
			if ea, okA, err = nextA(); err != nil {
				return err
			}
		}
		if c >= 0 {
			if eb, okB, err = nextB(); err != nil {
				return err
			}
		}
	}
	return nil
}

// describe is an entry in one line: type, mode, owner and size, link
// target or device.
func (t *treeCompare) describe(w *treeWalk, e treeEntry) string {
	n := e.in
	s := fmt.Sprintf("%s %s %d:%d", typeName(n.Mode), permText(n.Mode), n.UID, n.GID)
	switch n.Mode & modeType {
	case modeReg:
		s += ", " + sizeText(int64(n.Size))
		if e.linkOf != "" {
			s += ", hard link of " + strconv.Quote(e.linkOf)
		}
	case modeSymlink:
		if l, err := w.fs.ReadLink(n); err == nil {
			s += " -> " + strconv.Quote(l)
		}
	case modeChar, modeBlock:
		s += " " + devText(n.Rdev)
	}
	return s
}

func (t *treeCompare) compareEntry(ea, eb treeEntry) error {
	a, b := ea.in, eb.in
	add := func(field, x, y, detail string) error {
		return t.rep.add(Difference{Section: SectionFiles, Kind: Changed, Path: ea.path, Field: field, A: x, B: y, Detail: detail})
	}
	if ea.linkOf != "" && ea.linkOf == eb.linkOf {
		// Further names of the inodes of one earlier path on both sides:
		// their attributes and contents were compared there.
		return nil
	}
	if a.Mode&modeType != b.Mode&modeType {
		return add("type", t.describe(t.wa, ea), t.describe(t.wb, eb), "")
	}
	if a.Mode&modePerm != b.Mode&modePerm {
		if err := add("mode", permText(a.Mode), permText(b.Mode), initrd.ModeString(a.Mode)+" -> "+initrd.ModeString(b.Mode)); err != nil {
			return err
		}
	}
	if a.UID != b.UID || a.GID != b.GID {
		if err := add("owner", fmt.Sprintf("%d:%d", a.UID, a.GID), fmt.Sprintf("%d:%d", b.UID, b.GID), ""); err != nil {
			return err
		}
	}
	buildTimes := a.Mtime == t.buildA && b.Mtime == t.buildB
	if !buildTimes && (a.Mtime != b.Mtime || a.MtimeNsec != b.MtimeNsec) {
		if err := add("mtime", timeText(int64(a.Mtime), a.MtimeNsec), timeText(int64(b.Mtime), b.MtimeNsec), ""); err != nil {
			return err
		}
	}
	if err := t.compareXattrs(ea, eb); err != nil {
		return err
	}
	switch a.Mode & modeType {
	case modeSymlink:
		la, err := t.wa.fs.ReadLink(a)
		if err != nil {
			return t.wa.in.fail(err)
		}
		lb, err := t.wb.fs.ReadLink(b)
		if err != nil {
			return t.wb.in.fail(err)
		}
		if la != lb {
			return add("link", strconv.Quote(la), strconv.Quote(lb), "")
		}
	case modeChar, modeBlock:
		if a.Rdev != b.Rdev {
			return add("device", devText(a.Rdev), devText(b.Rdev), "")
		}
	case modeReg:
		if ea.linkOf != eb.linkOf {
			if err := add("hard link", linkText(ea.linkOf), linkText(eb.linkOf), ""); err != nil {
				return err
			}
		}
		return t.compareContent(ea, eb)
	}
	return nil
}

func linkText(first string) string {
	if first == "" {
		return "own inode"
	}
	return "same inode as " + strconv.Quote(first)
}

func (t *treeCompare) compareContent(ea, eb treeEntry) error {
	fa, err := t.wa.fs.Open(ea.in)
	if err != nil {
		return t.wa.in.fail(err)
	}
	fb, err := t.wb.fs.Open(eb.in)
	if err != nil {
		return t.wb.in.fail(err)
	}
	d, errA, errB := compareStreams(t.ctx, fa, fb, t.buf)
	if errA != nil {
		return t.wa.in.fail(fmt.Errorf("%s: %w", safe(ea.path), errA))
	}
	if errB != nil {
		return t.wb.in.fail(fmt.Errorf("%s: %w", safe(eb.path), errB))
	}
	if d.Offset < 0 {
		return nil
	}
	sa, sb := int64(ea.in.Size), int64(eb.in.Size)
	return t.rep.add(Difference{Section: SectionFiles, Kind: Changed, Path: ea.path, Field: "content",
		A: sizeText(sa), B: sizeText(sb), Detail: d.describe(sa, sb)})
}

func (t *treeCompare) compareXattrs(ea, eb treeEntry) error {
	xa, err := t.wa.fs.Xattrs(ea.in)
	if err != nil {
		return t.wa.in.fail(err)
	}
	xb, err := t.wb.fs.Xattrs(eb.in)
	if err != nil {
		return t.wb.in.fail(err)
	}
	if len(xa) == 0 && len(xb) == 0 {
		return nil
	}
	ma, mb := map[string]string{}, map[string]string{}
	var names []string
	for _, x := range xa {
		if _, ok := ma[x.Name]; !ok {
			names = append(names, x.Name)
		}
		ma[x.Name] = x.Value
	}
	for _, x := range xb {
		if _, ok := ma[x.Name]; !ok {
			if _, ok := mb[x.Name]; !ok {
				names = append(names, x.Name)
			}
		}
		mb[x.Name] = x.Value
	}
	sort.Strings(names)
	for _, n := range names {
		va, okA := ma[n]
		vb, okB := mb[n]
		if okA && okB && va == vb {
			continue
		}
		d := Difference{Section: SectionFiles, Kind: Changed, Path: ea.path, Field: "xattr " + n}
		if okA {
			d.A = valueText(va)
		} else {
			d.A = "(none)"
		}
		if okB {
			d.B = valueText(vb)
		} else {
			d.B = "(none)"
		}
		if err := t.rep.add(d); err != nil {
			return err
		}
	}
	return nil
}

// valueText shows a value that may be binary: quoted when printable, else
// hex (bounded).
func valueText(v string) string {
	printable := true
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			printable = false
			break
		}
	}
	if printable {
		if len(v) > 200 {
			return strconv.Quote(v[:200]) + fmt.Sprintf("... (%d bytes)", len(v))
		}
		return strconv.Quote(v)
	}
	if len(v) > 100 {
		return fmt.Sprintf("0x%x... (%d bytes)", v[:100], len(v))
	}
	return fmt.Sprintf("0x%x", v)
}

// devText is a device number in Linux's new_encode_dev form as
// MAJOR:MINOR.
func devText(rdev uint32) string {
	major := (rdev & 0xfff00) >> 8
	minor := (rdev & 0xff) | ((rdev >> 12) & 0xfff00)
	return fmt.Sprintf("%d:%d", major, minor)
}

func timeText(sec int64, nsec uint32) string {
	t := time.Unix(sec, int64(nsec)).UTC()
	return fmt.Sprintf("%d (%s)", sec, t.Format(time.RFC3339Nano))
}

func hexText(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
