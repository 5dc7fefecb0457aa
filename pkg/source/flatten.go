package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/internal/meter"
)

// Upper is a layer the caller puts over the sources (Options.Upper), with
// the same rules as a source layer. Exactly one of Entries, Tree and Files
// is set.
type Upper struct {
	// Name stands for the layer in messages ("added tree ./extra").
	Name string
	// Entries are made in memory, applied in order.
	Entries []Entry
	// Tree is a host directory, read as a dir: source is (owned by root,
	// only security.capability of the xattrs kept) but without its own
	// root entry, so that it does not change the root's mode.
	Tree string
	// Files are host files (symlinks followed). A file that would replace
	// a directory of the tree is an error: a file over /etc would drop all
	// of /etc.
	Files []File
}

// Entry is one entry of an Upper layer made in memory.
type Entry struct {
	// Path in the tree, slash-separated ("usr/bin/kata-agent"; a leading
	// "/" is dropped).
	Path string
	// Mode holds the type (ModeDir, ModeRegular or ModeSymlink) and the
	// permission bits.
	Mode uint32
	// Linkname is a symlink's target.
	Linkname string
	// Data is a regular file's content, unless HostFile names a host file
	// (symlinks followed) to read it from.
	Data     []byte
	HostFile string
	// UID and GID own the entry.
	UID, GID uint32
}

// FlatEntry is one name of a flattened tree.
type FlatEntry struct {
	// Path is slash-separated and relative ("usr/bin/env"); never the root.
	Path string
	// Mode holds the file type (the S_IF* bits of st_mode, ModeType) and
	// the permission bits (ModePerm).
	Mode     uint32
	UID, GID uint32
	// Size is a regular file's content length (0 for other types).
	Size int64
	// Linkname is a symlink's target, as stored.
	Linkname string
	// DevMajor and DevMinor are a device node's numbers.
	DevMajor, DevMinor uint32
	Xattrs             map[string]string
	// Inode numbers the files of the tree from 1 in the order of Entries;
	// the names of one hard-linked file share it.
	Inode int
	// Upper is the index in Options.Upper of the layer that made the
	// file, or -1 when a source did.
	Upper int
	// HostPath is the host file a regular file's content is read from
	// (dir: sources and Upper layers); "" for content in a layer's tar
	// stream or in memory.
	HostPath string
}

// Flat is the merged tree of some sources: metadata in memory, file
// contents still in the sources (see Contents).
type Flat struct {
	// Entries holds every name below the root, sorted by path element by
	// element (a directory comes right before its contents).
	Entries []FlatEntry
	// RootMode, RootUID, RootGID and RootXattrs are the root directory's
	// metadata.
	RootMode         uint32
	RootUID, RootGID uint32
	RootXattrs       map[string]string
	// Sources records what each source resolved to, in order.
	Sources []Resolved

	layers []*layer
	nodes  []*node // by Inode-1
	first  []int   // index in Entries of each inode's first name
}

// Flatten resolves the sources (see Kinds), checks their platform and
// digests, and layers them in order, bottom first, then the Upper layers
// of opts, with the whiteout and hostile-entry rules of the package
// comment; it returns the merged tree. File contents are not read yet:
// Contents streams them. Registry reads use ctx also during Contents, so
// it must outlive both calls. Cancelling ctx stops the work within one
// entry or one read.
func Flatten(ctx context.Context, srcs []Source, opts Options) (*Flat, error) {
	if len(srcs) == 0 {
		return nil, errors.New("source: no source")
	}
	plat, err := ParsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var layers []*layer
	var resolved []*Resolved
	var firstLayer []int
	for _, s := range srcs {
		ls, res, err := resolve(ctx, s, plat, opts.CacheDir, opts.Keychain)
		if err != nil {
			return nil, err
		}
		firstLayer = append(firstLayer, len(layers))
		layers = append(layers, ls...)
		resolved = append(resolved, res)
	}
	for i, u := range opts.Upper {
		l, err := upperLayer(u, i)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	if err := pull(ctx, layers, opts.Progress); err != nil {
		return nil, err
	}
	t, err := mergeLayers(ctx, layers, opts.Progress)
	if err != nil {
		return nil, err
	}
	f := &Flat{layers: layers, RootMode: t.root.mode, RootUID: t.root.uid, RootGID: t.root.gid, RootXattrs: t.root.xattrs}
	for i, r := range resolved {
		if l := layers[firstLayer[i]]; l.tarFile {
			r.SHA256 = l.sum[len("sha256:"):]
			r.setPinned()
		}
		f.Sources = append(f.Sources, *r)
	}
	ino := map[*node]int{}
	var walk func(dir *node, prefix string)
	walk = func(dir *node, prefix string) {
		for _, name := range sortedNames(dir) {
			n := dir.children[name]
			p := path.Join(prefix, name)
			id, ok := ino[n]
			if !ok {
				f.nodes = append(f.nodes, n)
				f.first = append(f.first, len(f.Entries))
				id = len(f.nodes)
				ino[n] = id
			}
			e := FlatEntry{Path: p, Mode: n.mode, UID: n.uid, GID: n.gid, Xattrs: n.xattrs, Inode: id, Upper: n.upper}
			switch n.mode & ModeType {
			case ModeRegular:
				e.Size = n.size
				e.HostPath = n.src.host
			case ModeSymlink:
				e.Linkname = n.target
			case ModeChar, ModeBlock:
				e.DevMajor, e.DevMinor = n.major, n.minor
			}
			f.Entries = append(f.Entries, e)
			if n.isDir() {
				walk(n, p)
			}
		}
	}
	walk(t.root, "")
	return f, nil
}

// Contents reads the content of every non-empty regular file once, each
// source layer at most once and in order, and calls fn with the index in
// Entries of the file's first name and a reader of exactly its Size bytes,
// valid only during the call. Digests are checked again as the layers are
// read; a mismatch, or a source that changed since Flatten, is an error.
func (f *Flat) Contents(ctx context.Context, fn func(i int, r io.Reader) error) error {
	idx := make(map[*node]int, len(f.nodes))
	for k, n := range f.nodes {
		idx[n] = f.first[k]
	}
	return streamContents(ctx, f.layers, f.nodes, func(n *node, r io.Reader) error {
		return fn(idx[n], r)
	})
}

// upperLayer turns an Upper into a layer.
func upperLayer(u Upper, i int) (*layer, error) {
	l := &layer{name: u.Name, upper: i}
	switch {
	case u.Tree != "":
		fi, err := os.Stat(u.Tree)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u.Name, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s: %s is not a directory", u.Name, u.Tree)
		}
		l.dir, l.noRoot = u.Tree, true
	case u.Files != nil:
		l.noDirReplace = true
		l.mem = []entry{}
		for _, file := range u.Files {
			e, err := fileEntry(file)
			if err != nil {
				return nil, entryErr(u.Name, file.String(), err)
			}
			e.src.layer = -1
			l.mem = append(l.mem, e)
		}
	default:
		l.mem = []entry{}
		for _, me := range u.Entries {
			e, err := memEntry(me)
			if err != nil {
				return nil, entryErr(u.Name, me.Path, err)
			}
			l.mem = append(l.mem, e)
		}
	}
	return l, nil
}

// hostFile checks a host file named by the caller (symlinks followed).
func hostFile(p string) (os.FileInfo, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: size %d is over the limit of %d bytes", p, fi.Size(), int64(MaxFileSize))
	}
	return fi, nil
}

func fileEntry(f File) (entry, error) {
	fi, err := hostFile(f.Src)
	if err != nil {
		return entry{}, err
	}
	perm := uint32(0o644)
	if fi.Mode().Perm()&0o111 != 0 {
		perm = 0o755
	}
	if f.Mode != nil {
		if *f.Mode > ModePerm {
			return entry{}, fmt.Errorf("mode %#o is out of range", *f.Mode)
		}
		perm = *f.Mode
	}
	name, err := cleanName(f.Dst)
	if err == nil && (name == "" || f.Dst[len(f.Dst)-1] == '/') {
		err = errors.New("it names a directory, not a file")
	}
	if err != nil {
		return entry{}, fmt.Errorf("bad destination: %w", err)
	}
	return entry{name: name, raw: f.String(), typ: tar.TypeReg, perm: perm, size: fi.Size(),
		src: dataSrc{entry: -1, host: f.Src, follow: true}}, nil
}

func memEntry(me Entry) (entry, error) {
	name, err := cleanName(me.Path)
	if err != nil {
		return entry{}, err
	}
	e := entry{name: name, raw: me.Path, perm: me.Mode & ModePerm, uid: me.UID, gid: me.GID}
	switch me.Mode & ModeType {
	case ModeDir:
		e.typ = tar.TypeDir
	case ModeSymlink:
		if err := checkSymlink(me.Linkname); err != nil {
			return entry{}, err
		}
		e.typ, e.linkname = tar.TypeSymlink, me.Linkname
	case ModeRegular:
		e.typ = tar.TypeReg
		e.src.entry = -1
		if me.HostFile != "" {
			fi, err := hostFile(me.HostFile)
			if err != nil {
				return entry{}, err
			}
			e.size, e.src.host, e.src.follow = fi.Size(), me.HostFile, true
		} else {
			// A non-nil slice even when empty: the content is in memory.
			e.size, e.src.mem = int64(len(me.Data)), append([]byte{}, me.Data...)
		}
	default:
		return entry{}, fmt.Errorf("type %#o: only directories, regular files and symlinks can be made in memory", me.Mode&ModeType)
	}
	if e.name == "" && e.typ != tar.TypeDir {
		return entry{}, errors.New("the root must be a directory")
	}
	return e, nil
}

// pull downloads the registry blobs the cache lacks, all before pass 1,
// so that the download is one step with a known total.
func pull(ctx context.Context, layers []*layer, progress meter.Func) error {
	var todo []*layer
	var total int64
	for _, l := range layers {
		if l.fetch != nil && !l.fetch.cached() {
			todo = append(todo, l)
			total += l.size
		}
	}
	if len(todo) == 0 {
		return nil
	}
	step := meter.Start(progress, "pull", total)
	for _, l := range todo {
		if _, err := cachedBlob(ctx, l.fetch.dir, l.fetch.dig, l.fetch.l, step); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	step.End()
	return nil
}

// mergeLayers is pass 1: the merged tree, metadata only. The layers' bytes
// as stored count on the "flatten" step.
func mergeLayers(ctx context.Context, layers []*layer, progress meter.Func) (*tree, error) {
	var total int64
	streams := false
	for _, l := range layers {
		if l.open == nil {
			continue
		}
		streams = true
		if total >= 0 && l.size >= 0 {
			total += l.size
		} else {
			total = -1
		}
	}
	var step *meter.Step
	if streams {
		step = meter.Start(progress, "flatten", max(total, 0))
	}
	t := newTree()
	for i, l := range layers {
		es, err := readEntries(ctx, l, i, step)
		if err != nil {
			return nil, err
		}
		for k := range es {
			if es[k].src.host != "" || es[k].src.mem != nil {
				es[k].src.layer = i
			}
		}
		if l.noDirReplace {
			for _, e := range es {
				if n := t.lookup(e.name); n != nil && n.isDir() {
					return nil, &FormatError{Layer: l.name, Entry: e.raw, Err: fmt.Errorf("/%s is a directory: name the file inside it", e.name)}
				}
			}
		}
		if err := t.apply(l.name, l.upper, es); err != nil {
			return nil, err
		}
	}
	step.End()
	return t, nil
}

// readEntries is pass 1 of one layer: its entries, metadata only. The
// stream's bytes as stored count on step.
func readEntries(ctx context.Context, l *layer, idx int, step *meter.Step) ([]entry, error) {
	switch {
	case l.mem != nil:
		return l.mem, nil
	case l.dir != "":
		return dirEntries(ctx, l, idx)
	}
	rc, err := l.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	defer rc.Close()
	var shown int64 // of rc.rawCount.n, on step
	report := func() {
		if rc.rawCount != nil {
			step.Add(rc.rawCount.n - shown)
			shown = rc.rawCount.n
		}
	}
	// Count what the tar reader consumes, to say how much of an entry's
	// declared size was there when the stream ends early.
	cr := &countingReader{r: ctxio.Reader(ctx, rc)}
	tr := tar.NewReader(cr)
	var out []entry
	var prev *tar.Header
	var prevStart int64
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		report()
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if derr := digestFirst(rc, nil); derr != nil {
				return nil, fmt.Errorf("%s: %w", l.name, derr)
			}
			return nil, truncatedError(l, i, prev, cr.n-prevStart, err)
		}
		prev, prevStart = h, cr.n
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		e, err := entryFromTar(h)
		if err != nil {
			return nil, entryErr(l.name, h.Name, err)
		}
		e.src = dataSrc{layer: idx, entry: i}
		out = append(out, e)
		if len(out) > MaxEntries {
			return nil, &FormatError{Layer: l.name, Err: fmt.Errorf("more than %d entries", MaxEntries)}
		}
	}
	if err := rc.finish(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	report()
	if l.tarFile && len(out) == 0 {
		if rc.rawCount != nil && rc.rawCount.n == 0 {
			return nil, &FormatError{Layer: l.name, Err: errors.New("empty file, not a tar archive")}
		}
		return nil, &FormatError{Layer: l.name, Err: errors.New("the archive holds no entries")}
	}
	return out, nil
}

// truncatedError explains a tar stream that ended or broke after i
// entries: when the last entry's data is cut short, it names the entry,
// its declared size and how much of it was there.
func truncatedError(l *layer, i int, prev *tar.Header, got int64, err error) error {
	if l.tarFile && i == 0 {
		return &FormatError{Layer: l.name, Err: fmt.Errorf("not a tar archive: %w", err)}
	}
	if prev != nil && prev.Typeflag == tar.TypeReg && got < prev.Size {
		return &FormatError{Layer: l.name, Entry: prev.Name,
			Err: fmt.Errorf("declared size %d bytes, but the stream ends after %d bytes of it: %w", prev.Size, got, err)}
	}
	if prev != nil {
		return &FormatError{Layer: l.name, Err: fmt.Errorf("after entry %q (%d entries): %w", prev.Name, i, err)}
	}
	return &FormatError{Layer: l.name, Err: fmt.Errorf("after %d entries: %w", i, err)}
}

// dirEntries lists a host directory in sorted order. Owners become root
// (host user ids are host-specific); permission bits, file types, device
// numbers, hard links and security.capability are kept.
func dirEntries(ctx context.Context, l *layer, idx int) ([]entry, error) {
	var out []entry
	seen := map[[2]uint64]string{}
	err := filepath.WalkDir(l.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(l.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			if l.noRoot {
				return nil
			}
			rel = ""
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return errors.New("no stat information")
		}
		e := entry{name: rel, raw: rel, perm: uint32(st.Mode) & ModePerm}
		if rel != "" {
			if _, err := cleanName(rel); err != nil {
				return entryErr(l.name, rel, err)
			}
		}
		switch st.Mode & ModeType {
		case ModeDir:
			e.typ = tar.TypeDir
		case ModeRegular:
			key := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok && st.Nlink > 1 {
				e.typ, e.linkname = tar.TypeLink, first
				break
			}
			seen[key] = rel
			e.typ, e.size = tar.TypeReg, st.Size
			if e.size > MaxFileSize {
				return entryErr(l.name, rel, fmt.Errorf("file size %d is out of range", e.size))
			}
			e.src = dataSrc{layer: idx, entry: -1, host: p}
		case ModeSymlink:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkSymlink(t); err != nil {
				return entryErr(l.name, rel, err)
			}
			e.typ, e.linkname = tar.TypeSymlink, t
		case ModeChar, ModeBlock:
			e.typ = tar.TypeChar
			if st.Mode&ModeType == ModeBlock {
				e.typ = tar.TypeBlock
			}
			e.major, e.minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
			if e.major > 0xfff || e.minor > 0xfffff {
				return entryErr(l.name, rel, fmt.Errorf("device number %d:%d out of range", e.major, e.minor))
			}
		case ModeFIFO:
			e.typ = tar.TypeFifo
		default:
			return entryErr(l.name, rel, errors.New("unsupported file type (socket?)"))
		}
		if e.typ != tar.TypeLink {
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(p, "security.capability", buf); err == nil && n > 0 {
				e.xattrs = map[string]string{"security.capability": string(buf[:n])}
			}
		}
		out = append(out, e)
		if len(out) > MaxEntries {
			return &FormatError{Layer: l.name, Err: fmt.Errorf("more than %d entries", MaxEntries)}
		}
		return nil
	})
	if err != nil {
		var fe *FormatError
		var ie *InsecurePathError
		if errors.As(err, &fe) || errors.As(err, &ie) || ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", l.name, err)
	}
	return out, nil
}

// streamContents calls fn with the content of every non-empty regular file
// among nodes (each node once), reading every layer at most once, in
// layer order. The reader yields exactly n.size bytes (unless the source
// changed, which is an error) and is valid only during the call.
func streamContents(ctx context.Context, layers []*layer, nodes []*node, fn func(n *node, r io.Reader) error) error {
	// Which entry of which layer feeds which node.
	want := make([]map[int]*node, len(layers))
	for _, n := range nodes {
		if n.mode&ModeType != ModeRegular || n.size == 0 {
			continue
		}
		if want[n.src.layer] == nil {
			want[n.src.layer] = map[int]*node{}
		}
		want[n.src.layer][n.src.entry] = n
	}
	for i, l := range layers {
		if len(want[i]) == 0 {
			continue
		}
		if l.open == nil { // host files and memory
			for _, n := range nodes {
				if n.mode&ModeType != ModeRegular || n.size == 0 || n.src.layer != i {
					continue
				}
				if err := hostContent(ctx, n, fn); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("%s: %w", l.name, err)
				}
			}
			continue
		}
		if err := layerContents(ctx, l, want[i], fn); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return nil
}

// layerContents is pass 2 of one tar layer.
func layerContents(ctx context.Context, l *layer, want map[int]*node, fn func(n *node, r io.Reader) error) error {
	rc, err := l.open(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", l.name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(ctxio.Reader(ctx, rc))
	left := len(want)
	for j := 0; left > 0; j++ {
		h, err := tr.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%s: second read: %w", l.name, digestFirst(rc, err))
		}
		n := want[j]
		if n == nil {
			continue
		}
		if h.Size != n.size {
			return &FormatError{Layer: l.name, Entry: h.Name, Err: errors.New("changed between the two reads of the layer")}
		}
		rr := &recordingReader{r: tr}
		if err := fn(n, rr); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if rr.err == nil {
				// Not the layer's fault: the consumer failed (a write).
				return fmt.Errorf("%s: entry %q: %w", l.name, h.Name, err)
			}
			var ce *CorruptError
			if derr := digestFirst(rc, nil); errors.As(derr, &ce) {
				return fmt.Errorf("%s: %w", l.name, derr)
			}
			return &FormatError{Layer: l.name, Entry: h.Name, Err: rr.err}
		}
		left--
	}
	if err := rc.finish(); err != nil {
		return fmt.Errorf("%s: %w", l.name, err)
	}
	return nil
}

// testHookHostOpened, when set by a test, runs after a host file was
// opened and checked, before its content is read (to change the file in
// between, as another process may).
var testHookHostOpened func(path string)

// hostContent passes the content of a host or in-memory file to fn.
func hostContent(ctx context.Context, n *node, fn func(n *node, r io.Reader) error) error {
	if n.src.mem != nil {
		return fn(n, &byteReader{n.src.mem})
	}
	flags := os.O_RDONLY
	if !n.src.follow {
		// A tree's entry was a regular file when it was listed; a
		// symlink in its place now is a change, not something to follow.
		flags |= unix.O_NOFOLLOW
	}
	f, err := os.OpenFile(n.src.host, flags, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &ChangedError{Path: n.src.host, Detail: "no longer a regular file"}
	}
	if fi.Size() != n.size {
		return &ChangedError{Path: n.src.host, Detail: fmt.Sprintf("%d bytes, %d when listed", fi.Size(), n.size)}
	}
	if testHookHostOpened != nil {
		testHookHostOpened(n.src.host)
	}
	return fn(n, &exactReader{r: ctxio.Reader(ctx, f), left: n.size, path: n.src.host, size: n.size})
}

// exactReader yields exactly size bytes of a host file, and fails naming
// the file when it has fewer (it shrank) or more (it grew).
type exactReader struct {
	r    io.Reader
	left int64
	size int64
	path string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		var one [1]byte
		if n, _ := e.r.Read(one[:]); n > 0 {
			return 0, &ChangedError{Path: e.path, Detail: fmt.Sprintf("it grew past %d bytes", e.size)}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, &ChangedError{Path: e.path, Detail: fmt.Sprintf("it ended after %d of %d bytes", e.size-e.left, e.size)}
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// recordingReader remembers the first read error other than io.EOF, to
// tell a broken stream from a consumer's own failure.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
