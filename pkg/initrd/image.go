package initrd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
)

// Image is the merged tree of rootfs sources (OCI layouts and archives,
// docker archives, registry images, directories, tar files: the syntax of
// rootfs.SourceKinds), layered in order by rootfs.Flatten with its
// whiteout and hostile-layer rules. Whiteouts act inside these sources
// only; the result then replaces earlier archive entries of the same paths
// like any other source. Owners are the image's own and are kept (as in a
// spec file); extended attributes are dropped, since newc cannot store
// them; the image's root directory entry is not stored.
//
// File contents are read once, in layer order, into an unlinked temporary
// file (in $TMPDIR) that the archive's entries read from when written.
type Image struct {
	// Refs are the sources, bottom first.
	Refs []string
	// Options say how they are read (platform, registry cache,
	// credentials).
	Options rootfs.SourceOptions
}

func (im Image) String() string { return "image " + strings.Join(im.Refs, " + ") }

// AddTo adds the image's tree (Image is a Source).
func (im Image) AddTo(ctx context.Context, a *Archive) error {
	return a.addImage(ctx, im.Refs, im.Options)
}

func (a *Archive) addImage(ctx context.Context, sources []string, opts rootfs.SourceOptions) error {
	name := strings.Join(sources, " + ")
	if err := ctx.Err(); err != nil {
		return err
	}
	flat, err := rootfs.Flatten(sources, opts)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	for _, e := range flat.Entries {
		if e.Mode&TypeMask == TypeReg && e.Size > MaxFileSize {
			return fmt.Errorf("image %s: %s: size %d exceeds the newc limit of %d bytes (4 GiB - 1)", name, e.Path, e.Size, int64(MaxFileSize))
		}
	}
	spool, err := os.CreateTemp("", "imagebuilder-initrd-*")
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	// Unlinked at once: the open file lives as long as the entries that
	// read from it (until Archive.Close), and nothing is left behind.
	os.Remove(spool.Name())
	a.closers = append(a.closers, spool)
	offsets := make(map[int]int64, len(flat.Entries))
	var off int64
	err = flat.Contents(func(i int, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.Copy(spool, ctxReaderOf(ctx, r))
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
		return fmt.Errorf("image %s: %w", name, err)
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
		if err := a.add(e); err != nil {
			spool.Close()
			return fmt.Errorf("image %s: %w", name, err)
		}
	}
	return nil
}

// ctxReaderOf stops a long copy when ctx is cancelled.
func ctxReaderOf(ctx context.Context, r io.Reader) io.Reader { return &ctxCheckReader{ctx, r} }

type ctxCheckReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxCheckReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
