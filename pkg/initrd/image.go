package initrd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// AddImage adds the merged tree of sources (OCI layouts and archives,
// docker archives, registry images, directories, tar files: the syntax of
// source.Kinds), layered in order by source.Flatten with
// its whiteout and hostile-layer rules. Whiteouts act inside these sources
// only; the result then replaces earlier archive entries of the same paths
// like any other source. Owners are the image's own and are kept (as in a
// spec file); extended attributes are dropped, since newc cannot store
// them; the image's root directory entry is not stored.
//
// File contents are read once, in layer order, into an unlinked temporary
// file (in $TMPDIR) that the archive's entries read from when written.
func (a *Archive) AddImage(sources []string, opts source.Options) error {
	ctx := context.TODO() // the initrd build has no context yet
	name := strings.Join(sources, " + ")
	srcs := make([]source.Source, len(sources))
	for i, s := range sources {
		var err error
		if srcs[i], err = source.Parse(s); err != nil {
			return fmt.Errorf("initrd: image %s: %w", name, err)
		}
	}
	flat, err := source.Flatten(ctx, srcs, opts)
	if err != nil {
		return fmt.Errorf("initrd: image %s: %w", name, err)
	}
	for _, e := range flat.Entries {
		if e.Mode&TypeMask == TypeReg && e.Size > MaxFileSize {
			return fmt.Errorf("initrd: image %s: %s: size %d exceeds the newc limit of %d bytes (4 GiB - 1)", name, e.Path, e.Size, int64(MaxFileSize))
		}
	}
	spool, err := os.CreateTemp("", "imagebuilder-initrd-*")
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	// Unlinked at once: the open file lives as long as the entries that
	// read from it, and nothing is left behind.
	os.Remove(spool.Name())
	offsets := make(map[int]int64, len(flat.Entries))
	var off int64
	err = flat.Contents(ctx, func(i int, r io.Reader) error {
		n, err := io.Copy(spool, r)
		if err != nil {
			return err
		}
		if n != flat.Entries[i].Size {
			return fmt.Errorf("%s: %d bytes of content, size %d", flat.Entries[i].Path, n, flat.Entries[i].Size)
		}
		offsets[flat.Entries[i].Inode] = off
		off += n
		return nil
	})
	if err != nil {
		spool.Close()
		return fmt.Errorf("initrd: image %s: %w", name, err)
	}
	nlink := map[int]int{}
	for _, e := range flat.Entries {
		nlink[e.Inode]++
	}
	for _, fe := range flat.Entries {
		e := Entry{Path: fe.Path, Mode: fe.Mode, UID: fe.UID, GID: fe.GID, KeepOwner: true,
			Linkname: fe.Linkname, RDevMajor: fe.DevMajor, RDevMinor: fe.DevMinor,
			Source: "image " + name}
		if e.typ() == TypeReg {
			e.Size = fe.Size
			if fe.Size == 0 {
				e.Data = []byte{}
			} else {
				start, size := offsets[fe.Inode], fe.Size
				e.Open = func() (io.ReadCloser, error) {
					return io.NopCloser(io.NewSectionReader(spool, start, size)), nil
				}
			}
			if nlink[fe.Inode] > 1 {
				e.LinkGroup = fmt.Sprintf("image:%s:%d", spool.Name(), fe.Inode)
			}
		}
		if err := a.Add(e); err != nil {
			spool.Close()
			return fmt.Errorf("%w (from image %s)", err, name)
		}
	}
	return nil
}
