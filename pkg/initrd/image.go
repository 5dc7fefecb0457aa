package initrd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// Image is the merged tree of image sources (OCI layouts and archives,
// docker archives, registry images, images the caller holds, directories,
// tar files: pkg/source), layered in order by source.Flatten with its
// whiteout and hostile-layer rules. Whiteouts act inside these sources
// only; the result then replaces earlier archive entries of the same paths
// like any other source. Owners are the image's own and are kept (as in a
// spec file); extended attributes are dropped, since newc cannot store
// them; the image's root directory entry is not stored. What each source
// resolved to (manifest, config and layer digests) is in Result.Images.
//
// File contents are read once, in layer order, into an unlinked temporary
// file (in $TMPDIR) that the archive's entries read from when written.
type Image struct {
	// Sources are layered in order, bottom first (source.Parse reads
	// the string forms, source.FromImage takes a v1.Image).
	Sources []source.Source
	// Options say how they are read (platform, registry cache,
	// credentials); Options.Upper is not used.
	Options source.Options
}

func (im Image) String() string {
	names := make([]string, len(im.Sources))
	for i, s := range im.Sources {
		names[i] = s.String()
	}
	return "image " + strings.Join(names, " + ")
}

// AddTo adds the image's tree (Image is a Source).
func (im Image) AddTo(ctx context.Context, a *Archive) error {
	return a.addImage(ctx, im.Sources, im.Options)
}

func (a *Archive) addImage(ctx context.Context, sources []source.Source, opts source.Options) error {
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.String()
	}
	name := strings.Join(names, " + ")
	if len(opts.Upper) > 0 {
		return fmt.Errorf("image %s: Options.Upper is not used by an initrd (add Dir, File or Entry sources after it)", name)
	}
	flat, err := source.Flatten(ctx, sources, opts)
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
		return fmt.Errorf("image %s: %w", name, err)
	}
	a.images = append(a.images, flat.Sources...)
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
