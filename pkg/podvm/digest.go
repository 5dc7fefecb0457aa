package podvm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
)

// Digests of the host inputs, for stage cache keys and the manifest. A
// digest covers everything of an input that can reach an output, so that
// a stage whose inputs' digests are unchanged may be reused.

// fileDigest returns the hex sha256 and the size of the file at path
// (symlinks followed).
func fileDigest(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return openDigest(ctx, f, path)
}

// fsDigest is fileDigest of the file name in fsys.
func fsDigest(ctx context.Context, fsys fs.FS, name string) (string, int64, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return openDigest(ctx, f, name)
}

// openDigest hashes the open file f, which must be a regular file.
func openDigest(ctx context.Context, f fs.File, name string) (string, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s: not a regular file", name)
	}
	return readerDigest(ctx, f)
}

// readerDigest hashes r to its end.
func readerDigest(ctx context.Context, r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, r))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// treeDigest is the sha256 of a host directory tree as a build reads it:
// one line per entry below dir, in byte order of the slash-separated
// relative path, with the type, permission bits, size, symlink target,
// device numbers, the security.capability attribute and the content's
// sha256. Times, owners (every tree a build adds is owned by root in the
// image), the tree's own root entry and other attributes stay out: no
// output depends on them. Symlinks are not followed.
func treeDigest(ctx context.Context, dir string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s: not a directory", dir)
	}
	type ent struct {
		rel  string
		path string
		info fs.FileInfo
	}
	var ents []ent
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		ents = append(ents, ent{filepath.ToSlash(rel), p, info})
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].rel < ents[j].rel })
	h := sha256.New()
	w := bufio.NewWriter(h)
	for _, e := range ents {
		m := e.info.Mode()
		fmt.Fprintf(w, "%q %s %04o", e.rel, typeName(m), unixPerm(m))
		switch {
		case m.IsRegular():
			sum, size, err := fileDigest(ctx, e.path)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(w, " %d %s", size, sum)
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(e.path)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(w, " -> %q", target)
		case m&fs.ModeDevice != 0:
			if s, ok := e.info.Sys().(*syscall.Stat_t); ok {
				fmt.Fprintf(w, " %d,%d", unix.Major(s.Rdev), unix.Minor(s.Rdev))
			}
		}
		if m.IsRegular() || m.IsDir() {
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(e.path, "security.capability", buf); err == nil && n > 0 {
				fmt.Fprintf(w, " cap=%x", buf[:n])
			}
		}
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unixPerm is the permission bits of m as st_mode holds them (07777).
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeCharDevice != 0:
		return "char"
	case m&fs.ModeDevice != 0:
		return "block"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "other"
}

// specDigest is the sha256 of a gen_init_cpio spec file and of every host
// file its "file" lines name (relative locations start at the spec's
// directory, as pkg/initrd reads them).
func specDigest(ctx context.Context, spec string) (string, error) {
	b, err := os.ReadFile(spec)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "spec %d %x\n", len(b), sha256.Sum256(b))
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 3 || f[0] != "file" {
			continue
		}
		loc := f[2]
		if !filepath.IsAbs(loc) {
			loc = filepath.Join(filepath.Dir(spec), loc)
		}
		sum, size, err := fileDigest(ctx, loc)
		if err != nil {
			// The build reports it with the spec's line.
			fmt.Fprintf(h, "file %q missing\n", f[2])
			continue
		}
		fmt.Fprintf(h, "file %q %d %s\n", f[2], size, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
