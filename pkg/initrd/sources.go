package initrd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// AddTo adds the tree (Dir is a Source).
func (d Dir) AddTo(ctx context.Context, a *Archive) error {
	if err := a.addDir(ctx, d.Path, d.Prefix); err != nil {
		return fmt.Errorf("dir %s: %w", d.Path, err)
	}
	return nil
}

func (d Dir) String() string { return "dir " + d.Path }

func (a *Archive) addDir(ctx context.Context, root, prefix string) error {
	st, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("not a directory")
	}
	pre := ""
	if prefix != "" && prefix != "/" && prefix != "." {
		if pre, err = CleanPath(prefix); err != nil {
			return fmt.Errorf("prefix: %w", err)
		}
	}
	n := 0
	return filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rel, err := filepath.Rel(root, name)
		if err != nil {
			return err
		}
		arch := path.Join(pre, filepath.ToSlash(rel))
		if arch == "." || arch == "" {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e, err := entryFromHost(name, arch, fi)
		if err != nil {
			return err
		}
		return a.add(e)
	})
}

// entryFromHost describes the host file name (already lstat'ed as fi) as an
// archive entry at arch.
func entryFromHost(name, arch string, fi fs.FileInfo) (Entry, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Entry{}, fmt.Errorf("%s: no Unix file information", name)
	}
	e := Entry{
		Path:   arch,
		Mode:   uint32(st.Mode),
		UID:    uint32(st.Uid),
		GID:    uint32(st.Gid),
		Source: name,
	}
	switch e.typ() {
	case TypeReg:
		e.Size = fi.Size()
		if e.Size > MaxFileSize {
			return Entry{}, fmt.Errorf("%s: size %d exceeds the newc limit of %d bytes (4 GiB - 1)", name, e.Size, int64(MaxFileSize))
		}
		e.Open = fileSource(name, e.Size)
		if uint64(st.Nlink) > 1 {
			e.LinkGroup = fmt.Sprintf("host:%d:%d", uint64(st.Dev), uint64(st.Ino))
		}
	case TypeSymlink:
		t, err := os.Readlink(name)
		if err != nil {
			return Entry{}, err
		}
		e.Linkname = t
	case TypeChar, TypeBlock:
		e.RDevMajor, e.RDevMinor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	}
	return e, nil
}

// AddTo adds the file (File is a Source).
func (f File) AddTo(_ context.Context, a *Archive) error {
	if f.Mode != nil && *f.Mode > PermMask {
		return fmt.Errorf("file %s: mode %#o is not a permission (07777)", f.Src, *f.Mode)
	}
	e, err := hostFileEntry(f.Src, f.Dst, f.Mode)
	if err == nil {
		err = a.add(e)
	}
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Src, err)
	}
	return nil
}

func (f File) String() string { return "file " + f.Src + " as " + f.Dst }

// hostFileEntry describes the host file src (symlinks followed) as the
// regular file dst; mode, when not nil, replaces its permission bits.
func hostFileEntry(src, dst string, mode *uint32) (Entry, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return Entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return Entry{}, errors.New("not a regular file")
	}
	e, err := entryFromHost(src, dst, fi)
	if err != nil {
		return Entry{}, err
	}
	e.LinkGroup = ""
	if mode != nil {
		e.Mode = TypeReg | *mode&PermMask
	}
	return e, nil
}

// AddTo adds the spec's entries (SpecFile is a Source).
func (s SpecFile) AddTo(ctx context.Context, a *Archive) error {
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("spec %w", err)
	}
	defer f.Close()
	return a.addSpec(ctx, f, s.Path, filepath.Dir(s.Path))
}

func (s SpecFile) String() string { return "spec " + s.Path }

// AddSpec adds the entries of a spec in the format of the kernel's
// usr/gen_init_cpio:
//
//	file <name> <location> <mode> <uid> <gid> [<hard links>...]
//	dir <name> <mode> <uid> <gid>
//	nod <name> <mode> <uid> <gid> <b|c> <major> <minor>
//	slink <name> <target> <mode> <uid> <gid>
//	pipe <name> <mode> <uid> <gid>
//	sock <name> <mode> <uid> <gid>
//
// Modes are octal; '#' starts a comment line. A relative <location> is
// taken relative to baseDir (the spec file's directory, so the result does
// not depend on the working directory). specName names the spec in errors,
// which are *SpecError values carrying the line number. Owners given in the
// spec are stored as given.
func (a *Archive) AddSpec(ctx context.Context, r io.Reader, specName, baseDir string) error {
	if err := a.addSpec(ctx, r, specName, baseDir); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}

func (a *Archive) addSpec(ctx context.Context, r io.Reader, specName, baseDir string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if line%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		if err := a.specLine(text, specName, line, baseDir); err != nil {
			return &SpecError{Name: specName, Line: line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return &SpecError{Name: specName, Line: line + 1, Err: err}
	}
	return nil
}

func (a *Archive) specLine(text, specName string, line int, baseDir string) error {
	f := strings.Fields(text)
	want := map[string]int{"file": 6, "dir": 5, "nod": 8, "slink": 6, "pipe": 5, "sock": 5}
	n, ok := want[f[0]]
	if !ok {
		return fmt.Errorf("unknown type %q (want file, dir, nod, slink, pipe or sock)", f[0])
	}
	if len(f) < n || (f[0] != "file" && len(f) > n) {
		return fmt.Errorf("%s wants %d fields, got %d: %q", f[0], n-1, len(f)-1, text)
	}
	modeAt := map[string]int{"file": 3, "dir": 2, "nod": 2, "slink": 3, "pipe": 2, "sock": 2}[f[0]]
	mode, err := strconv.ParseUint(f[modeAt], 8, 32)
	if err != nil || mode > PermMask {
		return fmt.Errorf("mode %q is not an octal permission", f[modeAt])
	}
	uid, err := strconv.ParseUint(f[modeAt+1], 10, 32)
	if err != nil {
		return fmt.Errorf("uid %q is not a number", f[modeAt+1])
	}
	gid, err := strconv.ParseUint(f[modeAt+2], 10, 32)
	if err != nil {
		return fmt.Errorf("gid %q is not a number", f[modeAt+2])
	}
	e := Entry{Path: f[1], Mode: uint32(mode), UID: uint32(uid), GID: uint32(gid), KeepOwner: true,
		Source: fmt.Sprintf("%s:%d", specName, line)}
	if _, err := CleanPath(f[1]); err != nil {
		return err
	}
	switch f[0] {
	case "dir":
		e.Mode |= TypeDir
	case "pipe":
		e.Mode |= TypeFifo
	case "sock":
		e.Mode |= TypeSocket
	case "slink":
		e.Mode |= TypeSymlink
		e.Linkname = f[2]
	case "nod":
		switch f[5] {
		case "c":
			e.Mode |= TypeChar
		case "b":
			e.Mode |= TypeBlock
		default:
			return fmt.Errorf("device type %q (want b or c)", f[5])
		}
		maj, err1 := strconv.ParseUint(f[6], 10, 32)
		min, err2 := strconv.ParseUint(f[7], 10, 32)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("device numbers %q %q are not numbers", f[6], f[7])
		}
		e.RDevMajor, e.RDevMinor = uint32(maj), uint32(min)
	case "file":
		loc := f[2]
		if !filepath.IsAbs(loc) && baseDir != "" {
			loc = filepath.Join(baseDir, loc)
		}
		fi, err := os.Stat(loc)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", loc)
		}
		e.Mode |= TypeReg
		e.Size = fi.Size()
		if e.Size > MaxFileSize {
			return fmt.Errorf("%s: size %d exceeds the newc limit of %d bytes (4 GiB - 1)", loc, e.Size, int64(MaxFileSize))
		}
		e.Open = fileSource(loc, e.Size)
		e.Source = loc
		if len(f) > 6 {
			e.LinkGroup = fmt.Sprintf("spec:%s:%d", specName, line)
			for _, l := range f[6:] {
				le := e
				le.Path = l
				if err := a.add(le); err != nil {
					return err
				}
			}
		}
	}
	return a.add(e)
}

// WriteSpec writes the archive's entries (implied parents included) as a
// gen_init_cpio spec. Regular files must come from host files (their
// location is the host path); hard links are listed on their first name's
// line. Owners are written as they will be stored under opts.
func (a *Archive) WriteSpec(w io.Writer, opts WriteOptions) error {
	bw := bufio.NewWriter(w)
	entries := a.Entries()
	links := map[string][]string{}
	for _, e := range entries {
		if e.typ() == TypeReg && e.LinkGroup != "" {
			links[e.LinkGroup] = append(links[e.LinkGroup], "/"+e.Path)
		}
	}
	for _, e := range entries {
		// gen_init_cpio splits lines at white space: a name, target or
		// location holding any cannot be written.
		for _, f := range []string{e.Path, e.Linkname, e.Source} {
			if f != e.Source || e.typ() == TypeReg {
				if strings.ContainsAny(f, " \t\n\r\v\f") {
					return fmt.Errorf("initrd: %s: %q holds white space, which a gen_init_cpio spec cannot express", e.Path, f)
				}
			}
		}
		uid, gid := uint32(0), uint32(0)
		if opts.KeepOwners || e.KeepOwner {
			uid, gid = e.UID, e.GID
		}
		name, perm := "/"+e.Path, e.Mode&PermMask
		switch e.typ() {
		case TypeDir:
			fmt.Fprintf(bw, "dir %s %o %d %d\n", name, perm, uid, gid)
		case TypeFifo:
			fmt.Fprintf(bw, "pipe %s %o %d %d\n", name, perm, uid, gid)
		case TypeSocket:
			fmt.Fprintf(bw, "sock %s %o %d %d\n", name, perm, uid, gid)
		case TypeSymlink:
			fmt.Fprintf(bw, "slink %s %s %o %d %d\n", name, e.Linkname, perm, uid, gid)
		case TypeChar, TypeBlock:
			t := "c"
			if e.typ() == TypeBlock {
				t = "b"
			}
			fmt.Fprintf(bw, "nod %s %o %d %d %s %d %d\n", name, perm, uid, gid, t, e.RDevMajor, e.RDevMinor)
		case TypeReg:
			if e.Open == nil || e.Source == "" {
				return fmt.Errorf("initrd: %s: no host file to name in a spec", e.Path)
			}
			var extra []string
			if e.LinkGroup != "" {
				l := links[e.LinkGroup]
				if l[0] != name {
					continue
				}
				extra = l[1:]
			}
			fmt.Fprintf(bw, "file %s %s %o %d %d", name, e.Source, perm, uid, gid)
			for _, x := range extra {
				fmt.Fprintf(bw, " %s", x)
			}
			fmt.Fprintln(bw)
		}
	}
	return bw.Flush()
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
