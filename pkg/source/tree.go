package source

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Limits that keep a hostile layer from exhausting memory or producing a
// tree a file system cannot hold.
const (
	// MaxFileSize is the largest regular file accepted from a source.
	MaxFileSize = 64 << 30
	// MaxEntries is the largest number of entries a layer or the merged
	// tree may hold.
	MaxEntries = 4 << 20
	// MaxNameLen is the longest name component (erofs's and ext4's limit).
	MaxNameLen = 255
	// MaxXattrValue bounds one extended attribute value (erofs stores its
	// length in 16 bits).
	MaxXattrValue = 64 << 10
	// maxLinkname bounds a symlink target (PATH_MAX).
	maxLinkname = 4095
)

// Unix file type bits, as in st_mode.
const (
	ModeType    = 0o170000
	ModeSocket  = 0o140000
	ModeSymlink = 0o120000
	ModeRegular = 0o100000
	ModeBlock   = 0o060000
	ModeDir     = 0o040000
	ModeChar    = 0o020000
	ModeFIFO    = 0o010000
	ModePerm    = 0o7777
)

// dataSrc says where a regular file's content comes from: entry number
// entry of the tar stream of layer layer, a host file, or bytes in memory.
type dataSrc struct {
	layer  int
	entry  int
	host   string
	follow bool // the host path may be a symlink (a file the caller named)
	mem    []byte
}

// node is one file of the merged tree. Several names (hard links) may
// share one node. Only metadata is kept in memory.
type node struct {
	mode         uint32 // type bits | permission bits (07777)
	uid, gid     uint32
	size         int64
	major, minor uint32
	target       string // symlink target
	xattrs       map[string]string
	children     map[string]*node // directories only
	src          dataSrc
	upper        int // index in Options.Upper of the layer that made it, -1 for a source
}

func (n *node) isDir() bool { return n.mode&ModeType == ModeDir }

// tree is the merged tree.
type tree struct {
	root    *node
	entries int
}

func newTree() *tree {
	return &tree{root: &node{mode: ModeDir | 0o755, children: map[string]*node{}, upper: -1}}
}

// entry is one record of a layer, already checked and normalized.
type entry struct {
	name     string // cleaned, relative, "" for the root itself
	raw      string // the name as the source spells it, for messages
	typ      byte   // tar type flag: TypeReg, TypeDir, TypeSymlink, TypeLink, TypeChar, TypeBlock, TypeFifo
	perm     uint32 // permission bits 07777
	uid, gid uint32
	size     int64
	linkname string // symlink target as is, or cleaned hard link target
	major    uint32
	minor    uint32
	xattrs   map[string]string
	src      dataSrc
}

// cleanName turns an archive path into a relative slash path without "."
// components. A leading "/" is dropped (as tar does on extraction); a ".."
// component is an insecure path, whatever comes after it.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	parts := strings.Split(name, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", insecure{`path has a ".." component`}
		}
		if len(p) > MaxNameLen {
			return "", fmt.Errorf("name component longer than %d bytes", MaxNameLen)
		}
		out = append(out, p)
	}
	return strings.Join(out, "/"), nil
}

// entryFromTar checks one tar header and converts it to an entry.
func entryFromTar(h *tar.Header) (entry, error) {
	e := entry{raw: h.Name}
	name, err := cleanName(h.Name)
	if err != nil {
		return e, err
	}
	e.name = name
	if h.Mode < 0 || h.Uid < 0 || h.Gid < 0 || int64(h.Uid) > 0xffffffff || int64(h.Gid) > 0xffffffff {
		return e, errors.New("negative or out-of-range mode, uid or gid")
	}
	e.perm = uint32(h.Mode) & ModePerm
	e.uid, e.gid = uint32(h.Uid), uint32(h.Gid)
	switch h.Typeflag {
	case tar.TypeReg:
		e.typ = tar.TypeReg
		if h.Size < 0 || h.Size > MaxFileSize {
			return e, fmt.Errorf("file size %d is out of range (limit %d)", h.Size, int64(MaxFileSize))
		}
		e.size = h.Size
	case tar.TypeDir:
		e.typ = tar.TypeDir
	case tar.TypeSymlink:
		e.typ = tar.TypeSymlink
		if err := checkSymlink(h.Linkname); err != nil {
			return e, err
		}
		e.linkname = h.Linkname
	case tar.TypeLink:
		e.typ = tar.TypeLink
		if strings.HasPrefix(h.Linkname, "/") {
			return e, insecure{fmt.Sprintf("hard link to absolute path %q", h.Linkname)}
		}
		t, err := cleanName(h.Linkname)
		if err != nil {
			var ip insecure
			if errors.As(err, &ip) {
				return e, insecure{fmt.Sprintf("hard link target %q: %v", h.Linkname, err)}
			}
			return e, fmt.Errorf("hard link target %q: %v", h.Linkname, err)
		}
		if t == "" {
			return e, errors.New("hard link to the root directory")
		}
		e.linkname = t
	case tar.TypeChar, tar.TypeBlock:
		e.typ = h.Typeflag
		if h.Devmajor < 0 || h.Devminor < 0 || h.Devmajor > 0xfff || h.Devminor > 0xfffff {
			return e, fmt.Errorf("device number %d:%d out of range", h.Devmajor, h.Devminor)
		}
		e.major, e.minor = uint32(h.Devmajor), uint32(h.Devminor)
	case tar.TypeFifo:
		e.typ = tar.TypeFifo
	default:
		return e, fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if e.xattrs == nil {
				e.xattrs = map[string]string{}
			}
			e.xattrs[x] = v
		}
	}
	if err := checkXattrs(e.xattrs); err != nil {
		return e, err
	}
	if e.name == "" && e.typ != tar.TypeDir {
		return e, errors.New("the root must be a directory")
	}
	return e, nil
}

func checkSymlink(target string) error {
	if target == "" {
		return errors.New("symlink with an empty target")
	}
	if len(target) > maxLinkname || strings.IndexByte(target, 0) >= 0 {
		return errors.New("symlink target too long or contains a NUL byte")
	}
	return nil
}

// xattrNamespaceOK says whether a file system image can store the
// extended attribute name: the user., trusted. and security. namespaces
// and the two POSIX ACLs (what erofs encodes, see pkg/rootfs).
func xattrNamespaceOK(name string) bool {
	switch {
	case name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true
	}
	for _, p := range []string{"user.", "trusted.", "security."} {
		if suffix, ok := strings.CutPrefix(name, p); ok {
			return suffix != "" && len(suffix) <= MaxNameLen
		}
	}
	return false
}

func checkXattrs(x map[string]string) error {
	// In name order, so an entry with several bad attributes is always
	// reported by the same one.
	for _, k := range slices.Sorted(maps.Keys(x)) {
		v := x[k]
		if !xattrNamespaceOK(k) {
			return fmt.Errorf("extended attribute %q has a namespace erofs cannot store", k)
		}
		if len(v) > MaxXattrValue {
			return fmt.Errorf("extended attribute %q is larger than %d bytes", k, MaxXattrValue)
		}
	}
	return nil
}

// lookup finds the node at the cleaned path p without following symlinks.
func (t *tree) lookup(p string) *node {
	n := t.root
	if p == "" {
		return n
	}
	for _, c := range strings.Split(p, "/") {
		if !n.isDir() {
			return nil
		}
		n = n.children[c]
		if n == nil {
			return nil
		}
	}
	return n
}

// parentOf returns the directory that holds p, creating missing directories
// (root-owned, 0755) as OCI layer appliers do. A non-directory on the way is
// an insecure path: symlinks in the tree are never followed.
func (t *tree) parentOf(p string, create bool) (*node, string, error) {
	dir, base := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i], p[i+1:]
	}
	n := t.root
	if dir != "" {
		for _, c := range strings.Split(dir, "/") {
			next := n.children[c]
			if next == nil {
				if !create {
					return nil, base, nil
				}
				if err := t.count(); err != nil {
					return nil, base, err
				}
				next = &node{mode: ModeDir | 0o755, children: map[string]*node{}, upper: -1}
				n.children[c] = next
			}
			if !next.isDir() {
				if !create {
					return nil, base, nil
				}
				return nil, base, insecure{fmt.Sprintf("parent %q is not a directory", c)}
			}
			n = next
		}
	}
	return n, base, nil
}

func (t *tree) count() error {
	t.entries++
	if t.entries > MaxEntries {
		return fmt.Errorf("more than %d entries in the merged tree", MaxEntries)
	}
	return nil
}

const whPrefix = ".wh."
const whOpaque = ".wh..wh..opq"

// apply merges the entries of one layer into the tree. Whiteouts of the
// layer are applied first (they hide lower layers only, wherever they sit in
// the layer), then the other entries in order; a later entry for the same
// name replaces an earlier one, except that a directory over a directory
// only updates its metadata.
func (t *tree) apply(layer string, upper int, entries []entry) error {
	var rest []entry
	for _, e := range entries {
		base := e.name[strings.LastIndexByte(e.name, '/')+1:]
		if !strings.HasPrefix(base, whPrefix) {
			rest = append(rest, e)
			continue
		}
		parent, _, err := t.parentOf(e.name, false)
		if err != nil {
			return entryErr(layer, e.raw, err)
		}
		switch {
		case base == whOpaque:
			if parent != nil {
				clear(parent.children)
			}
		case strings.HasPrefix(base, whPrefix+whPrefix):
			// Reserved for aufs metadata (.wh..wh.plnk and the like):
			// ignored, as the OCI spec allows.
		default:
			victim := base[len(whPrefix):]
			if victim == "" || victim == "." || victim == ".." {
				return entryErr(layer, e.raw, errors.New("whiteout of an invalid name"))
			}
			if parent != nil {
				delete(parent.children, victim)
			}
		}
	}
	for _, e := range rest {
		if err := t.add(e, upper); err != nil {
			return entryErr(layer, e.raw, err)
		}
	}
	return nil
}

func (t *tree) add(e entry, upper int) error {
	if e.name == "" { // the root directory's own metadata
		t.root.mode = ModeDir | e.perm
		t.root.uid, t.root.gid, t.root.xattrs = e.uid, e.gid, e.xattrs
		return nil
	}
	parent, base, err := t.parentOf(e.name, true)
	if err != nil {
		return err
	}
	old := parent.children[base]
	if e.typ == tar.TypeDir && old != nil && old.isDir() {
		old.mode = ModeDir | e.perm
		old.uid, old.gid, old.xattrs = e.uid, e.gid, e.xattrs
		old.upper = upper
		return nil
	}
	if e.typ == tar.TypeLink {
		target := t.lookup(e.linkname)
		if target == nil {
			return fmt.Errorf("hard link to %q, which does not exist", e.linkname)
		}
		if target.isDir() {
			return fmt.Errorf("hard link to directory %q", e.linkname)
		}
		if old == nil {
			if err := t.count(); err != nil {
				return err
			}
		}
		parent.children[base] = target
		return nil
	}
	n := &node{uid: e.uid, gid: e.gid, xattrs: e.xattrs, upper: upper}
	switch e.typ {
	case tar.TypeReg:
		n.mode = ModeRegular | e.perm
		n.size = e.size
		n.src = e.src
	case tar.TypeDir:
		n.mode = ModeDir | e.perm
		n.children = map[string]*node{}
	case tar.TypeSymlink:
		n.mode = ModeSymlink | 0o777
		n.target = e.linkname
		n.size = int64(len(e.linkname))
	case tar.TypeChar, tar.TypeBlock:
		n.mode = ModeChar | e.perm
		if e.typ == tar.TypeBlock {
			n.mode = ModeBlock | e.perm
		}
		n.major, n.minor = e.major, e.minor
	case tar.TypeFifo:
		n.mode = ModeFIFO | e.perm
	default:
		return fmt.Errorf("unsupported entry type %q", e.typ)
	}
	if old == nil {
		if err := t.count(); err != nil {
			return err
		}
	}
	parent.children[base] = n
	return nil
}

// sortedNames returns the names of a directory's children in byte order.
func sortedNames(n *node) []string {
	names := make([]string, 0, len(n.children))
	for k := range n.children {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
