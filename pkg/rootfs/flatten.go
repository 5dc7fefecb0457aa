package rootfs

import (
	"fmt"
	"io"
	"path"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SourceOptions say how Flatten reads its sources (see Options).
type SourceOptions struct {
	// Platform selects the image of a multi-platform index; default
	// "linux/amd64".
	Platform string
	// CacheDir keeps registry blobs by digest; "" disables the cache.
	CacheDir string
	// Keychain resolves registry credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
}

// FlatEntry is one name of a flattened tree.
type FlatEntry struct {
	// Path is slash-separated and relative ("usr/bin/env"); never the root.
	Path string
	// Mode holds the file type (the S_IF* bits of st_mode) and the
	// permission bits (07777).
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
}

// Flat is the merged tree of some sources: metadata in memory, file
// contents still in the sources (see Contents).
type Flat struct {
	// Entries holds every name below the root, sorted by path element by
	// element (a directory comes right before its contents).
	Entries []FlatEntry
	// RootMode, RootUID and RootGID are the root directory's metadata.
	RootMode         uint32
	RootUID, RootGID uint32

	layers []layerSrc
	inodes []*inode // by Inode-1
	first  []int    // index in Entries of each inode's first name
}

// Flatten layers the sources exactly as Build does (same source syntax,
// platform check, digest checks, whiteouts and hostile-layer rules; see the
// package comment), without the imagebuilder additions, and returns the
// merged tree. File contents are not read yet.
func Flatten(sources []string, opts SourceOptions) (*Flat, error) {
	if len(sources) == 0 {
		return nil, fmt.Errorf("rootfs: no source")
	}
	plat, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	layers, err := resolveSources(sources, *plat, opts.CacheDir, opts.Keychain)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	t, err := mergeLayers(layers)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	f := &Flat{layers: layers, RootMode: t.root.mode, RootUID: t.root.uid, RootGID: t.root.gid}
	ino := map[*inode]int{}
	var walk func(dir *inode, prefix string)
	walk = func(dir *inode, prefix string) {
		for _, name := range sortedNames(dir) {
			n := dir.children[name]
			p := path.Join(prefix, name)
			id, ok := ino[n]
			if !ok {
				f.inodes = append(f.inodes, n)
				f.first = append(f.first, len(f.Entries))
				id = len(f.inodes)
				ino[n] = id
			}
			e := FlatEntry{Path: p, Mode: n.mode, UID: n.uid, GID: n.gid, Xattrs: n.xattrs, Inode: id}
			switch n.mode & sIFMT {
			case sIFREG:
				e.Size = n.size
			case sIFLNK:
				e.Linkname = n.target
			case sIFCHR, sIFBLK:
				e.DevMajor, e.DevMinor = decodeDev(n.rdev)
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
// valid only during the call. Layer digests are checked again as they are
// read; a mismatch, or a source that changed since Flatten, is an error.
func (f *Flat) Contents(fn func(i int, r io.Reader) error) error {
	idx := make(map[*inode]int, len(f.inodes))
	for k, n := range f.inodes {
		idx[n] = f.first[k]
	}
	err := streamContents(f.layers, f.inodes, func(n *inode, r io.Reader) error {
		return fn(idx[n], r)
	})
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

// resolveSources turns the sources into their layers, bottom first.
func resolveSources(sources []string, plat v1.Platform, cacheDir string, kc authn.Keychain) ([]layerSrc, error) {
	var layers []layerSrc
	for _, s := range sources {
		ls, err := resolveSource(s, plat, cacheDir, kc)
		if err != nil {
			return nil, err
		}
		layers = append(layers, ls...)
	}
	return layers, nil
}

// mergeLayers is pass 1: the merged tree, metadata only.
func mergeLayers(layers []layerSrc) (*tree, error) {
	t := newTree()
	for i := range layers {
		es, err := readEntries(&layers[i], i)
		if err != nil {
			return nil, err
		}
		for k := range es {
			if es[k].src.host != "" || es[k].src.mem != nil {
				es[k].src.layer = i
			}
		}
		if layers[i].noDirReplace {
			for _, e := range es {
				if n := t.lookup(e.name); n != nil && n.isDir() {
					return nil, newEntryError(layers[i].name, e.raw, fmt.Errorf("/%s is a directory: name the file inside it", e.name))
				}
			}
		}
		if err := t.apply(layers[i].name, es); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func parsePlatform(s string) (*v1.Platform, error) {
	if s == "" {
		s = "linux/amd64"
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", s, err)
	}
	return p, nil
}
