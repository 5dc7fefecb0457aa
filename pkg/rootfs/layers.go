package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// readEntries is pass 1: it reads a layer's entries (metadata only).
func readEntries(ls *layerSrc, idx int) ([]entry, error) {
	switch {
	case ls.mem != nil:
		return ls.mem, nil
	case ls.dir != "":
		return dirEntries(ls, idx)
	}
	rc, err := ls.open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ls.name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []entry
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if derr := digestFirst(rc, nil); derr != nil {
				return nil, fmt.Errorf("%s: %w", ls.name, derr)
			}
			return nil, fmt.Errorf("%s: after %d entries: %w", ls.name, i, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		e, err := entryFromTar(h)
		if err != nil {
			return nil, newEntryError(ls.name, h.Name, err)
		}
		e.src = dataSrc{layer: idx, entry: i}
		out = append(out, e)
		if len(out) > MaxEntries {
			return nil, fmt.Errorf("%s: more than %d entries", ls.name, MaxEntries)
		}
	}
	if err := finishStream(rc); err != nil {
		return nil, fmt.Errorf("%s: %w", ls.name, err)
	}
	return out, nil
}

// dirEntries lists a host directory in sorted order. Owners become root
// (host user ids are host-specific); permission bits, file types, device
// numbers, hard links and security.capability are kept.
func dirEntries(ls *layerSrc, idx int) ([]entry, error) {
	var out []entry
	seen := map[[2]uint64]string{}
	err := filepath.WalkDir(ls.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(ls.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			if ls.noRoot {
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
		e := entry{name: rel, raw: rel, perm: uint32(st.Mode) & 0o7777}
		if rel != "" {
			if _, err := cleanName(rel); err != nil {
				return fmt.Errorf("entry %q: %w", rel, err)
			}
		}
		switch st.Mode & sIFMT {
		case sIFDIR:
			e.typ = tar.TypeDir
		case sIFREG:
			key := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok && st.Nlink > 1 {
				e.typ, e.linkname = tar.TypeLink, first
				break
			}
			seen[key] = rel
			e.typ, e.size = tar.TypeReg, st.Size
			if e.size > MaxFileSize {
				return fmt.Errorf("entry %q: file size %d is out of range", rel, e.size)
			}
			e.src = dataSrc{layer: idx, entry: -1, host: p}
		case sIFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.typ, e.linkname = tar.TypeSymlink, t
		case sIFCHR, sIFBLK:
			e.typ = tar.TypeChar
			if st.Mode&sIFMT == sIFBLK {
				e.typ = tar.TypeBlock
			}
			e.major, e.minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		case sIFIFO:
			e.typ = tar.TypeFifo
		default:
			return fmt.Errorf("entry %q: unsupported file type (socket?)", rel)
		}
		if e.typ != tar.TypeLink {
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(p, "security.capability", buf); err == nil && n > 0 {
				e.xattrs = map[string]string{"security.capability": string(buf[:n])}
			}
		}
		out = append(out, e)
		if len(out) > MaxEntries {
			return fmt.Errorf("more than %d entries", MaxEntries)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ls.name, err)
	}
	return out, nil
}

// writeData is pass 2: it streams the content of every regular file that
// survived layering from its source into the file system image.
func writeData(layers []layerSrc, im *erofsImage, w io.WriterAt) error {
	buf := make([]byte, 1<<20)
	return streamContents(layers, im.inodes, func(n *inode, r io.Reader) error {
		return im.writeFile(w, n, r, buf)
	})
}

// streamContents calls fn with the content of every non-empty regular file
// among inodes (each inode once), reading every layer at most once, in
// layer order. The reader yields exactly n.size bytes (unless the source
// changed, which is an error) and is valid only during the call.
func streamContents(layers []layerSrc, inodes []*inode, fn func(n *inode, r io.Reader) error) error {
	// Which entry of which layer feeds which inode.
	want := make([]map[int]*inode, len(layers))
	for _, n := range inodes {
		if n.mode&sIFMT != sIFREG || n.size == 0 {
			continue
		}
		if want[n.src.layer] == nil {
			want[n.src.layer] = map[int]*inode{}
		}
		want[n.src.layer][n.src.entry] = n
	}
	for i := range layers {
		ls := &layers[i]
		if len(want[i]) == 0 {
			continue
		}
		if ls.open == nil { // host files and memory
			for _, n := range inodes {
				if n.mode&sIFMT != sIFREG || n.size == 0 || n.src.layer != i {
					continue
				}
				if err := hostContent(n, fn); err != nil {
					return fmt.Errorf("%s: %w", ls.name, err)
				}
			}
			continue
		}
		rc, err := ls.open()
		if err != nil {
			return fmt.Errorf("%s: %w", ls.name, err)
		}
		tr := tar.NewReader(rc)
		left := len(want[i])
		for j := 0; left > 0; j++ {
			h, err := tr.Next()
			if err != nil {
				err = digestFirst(rc, unexpected(err))
				rc.Close()
				return fmt.Errorf("%s: second read: %w", ls.name, err)
			}
			n := want[i][j]
			if n == nil {
				continue
			}
			if h.Size != n.size {
				rc.Close()
				return newEntryError(ls.name, h.Name, errors.New("changed between the two reads of the layer"))
			}
			if err := fn(n, tr); err != nil {
				rc.Close()
				return newEntryError(ls.name, h.Name, err)
			}
			left--
		}
		err = finishStream(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", ls.name, err)
		}
	}
	return nil
}

// hostContent passes the content of a host or in-memory file to fn.
func hostContent(n *inode, fn func(n *inode, r io.Reader) error) error {
	if n.src.mem != nil {
		return fn(n, bytesReader(n.src.mem))
	}
	f, err := os.OpenFile(n.src.host, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() != n.size {
		return fmt.Errorf("%s changed during the build", n.src.host)
	}
	return fn(n, io.LimitReader(f, n.size))
}

type byteReader struct{ b []byte }

func bytesReader(b []byte) io.Reader { return &byteReader{b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// sortEntries orders memory entries by name so that their parents come first.
func sortEntries(es []entry) {
	sort.SliceStable(es, func(a, b int) bool { return es[a].name < es[b].name })
}

// digestFirst reports a digest mismatch of the stream, if there is one,
// in place of the tar error it caused: that is the real cause.
func digestFirst(rc io.ReadCloser, err error) error {
	if d, ok := rc.(*drainCloser); ok {
		if ferr := d.finish(); ferr != nil && strings.Contains(ferr.Error(), "digest mismatch") {
			return ferr
		}
	}
	return err
}
