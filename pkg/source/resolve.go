package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
)

// Resolved records what one source resolved to, so that a build can say
// exactly what it read and a later build can pin it (Pin). Digests are
// lowercase hex sha256 without prefix.
type Resolved struct {
	// Source is the source as given (its String form).
	Source string `json:"source"`
	Kind   Kind   `json:"kind"`
	// Pinned is the source fixed to ManifestDigest (OCI layouts,
	// archives and registries) or SHA256 (tar files); "" when the kind
	// has no digest of its own (dir:, docker-archive:, images held by the
	// caller).
	Pinned string `json:"pinned,omitempty"`
	// Platform is the platform of the image (OCI kinds).
	Platform string `json:"platform,omitempty"`
	// ManifestDigest is the image manifest's digest, after any image
	// index was resolved for Platform.
	ManifestDigest string        `json:"manifest_digest,omitempty"`
	ConfigDigest   string        `json:"config_digest,omitempty"`
	Layers         []LayerDigest `json:"layers,omitempty"`
	// SHA256 is a tar file's sha256, as stored (compressed or not).
	SHA256 string `json:"sha256,omitempty"`
}

// LayerDigest is one layer of an OCI image.
type LayerDigest struct {
	Digest    string `json:"digest"`  // the blob as stored
	DiffID    string `json:"diff_id"` // the uncompressed tar
	MediaType string `json:"media_type,omitempty"`
	Size      int64  `json:"size"`
}

// Pin returns the resolved source fixed to its digest (Resolved.Pinned as
// a Source).
func (r *Resolved) Pin() (Source, error) {
	s, err := Parse(r.Source)
	if err != nil {
		return Source{}, err
	}
	switch {
	case r.ManifestDigest != "" && s.Kind != DockerArchive:
		return s.Pin("sha256:" + r.ManifestDigest)
	case r.SHA256 != "":
		return s.Pin("sha256:" + r.SHA256)
	}
	return Source{}, fmt.Errorf("source %s: %w", s, ErrNotPinnable)
}

func (r *Resolved) setPinned() {
	if p, err := r.Pin(); err == nil {
		r.Pinned = p.String()
	}
}

// layer is one layer to merge: a tar stream (opened once per pass, and
// checked against its digest each time), a host directory, or entries made
// in memory.
type layer struct {
	name string
	open func(ctx context.Context) (*drainCloser, error)
	dir  string
	mem  []entry
	// noRoot leaves out the directory's own entry, so that an added tree
	// does not change the mode of the image's root.
	noRoot bool
	// noDirReplace makes an entry that would replace a directory an error
	// (added files: a file over /etc would drop all of /etc).
	noDirReplace bool
	// tarFile marks a tar: source, which must hold entries.
	tarFile bool
	// sum is a tar: source's sha256 ("sha256:HEX"): pinned, or found by
	// the first read and checked by the second.
	sum string
	// upper is the index in Options.Upper, -1 for a source.
	upper int
	// size is the stream's size as stored, for progress: -1 when
	// unknown.
	size int64
	// fetch, for a registry layer kept in the blob cache, downloads it
	// into the cache unless it is there already.
	fetch *blobFetch
}

// blobFetch is a registry layer's compressed blob and where the cache
// keeps it.
type blobFetch struct {
	dir string
	dig v1.Hash
	l   v1.Layer
}

// cached says whether the blob is in the cache already.
func (b *blobFetch) cached() bool {
	_, err := os.Stat(filepath.Join(b.dir, b.dig.Algorithm, b.dig.Hex))
	return err == nil
}

// maxJSON bounds the size of an index, manifest or config read into memory.
const maxJSON = 4 << 20

// resolve turns one source into its layers, bottom first, and the record
// of what it resolved to (a tar file's sum is filled in by the first read).
func resolve(ctx context.Context, src Source, plat v1.Platform, cacheDir string, kc authn.Keychain) ([]*layer, *Resolved, error) {
	spec := src.String()
	fail := func(err error) ([]*layer, *Resolved, error) {
		return nil, nil, fmt.Errorf("source %s: %w", spec, err)
	}
	switch src.Kind {
	case Dir:
		fi, err := os.Stat(src.Path)
		if err != nil {
			return fail(err)
		}
		if !fi.IsDir() {
			return fail(errors.New("not a directory"))
		}
		return []*layer{{name: spec, dir: src.Path, upper: -1, size: -1}}, &Resolved{Source: spec, Kind: Dir}, nil
	case Tar:
		fi, err := os.Stat(src.Path)
		if err != nil {
			return fail(err)
		}
		if !fi.Mode().IsRegular() {
			return fail(errors.New("not a regular file"))
		}
		l := &layer{name: spec, tarFile: true, sum: src.Digest, upper: -1, size: fi.Size()}
		l.open = func(context.Context) (*drainCloser, error) {
			f, err := os.Open(src.Path)
			if err != nil {
				return nil, err
			}
			dr := verifying(f, l.sum, "file", src.Path)
			dr.onSum = func(s string) {
				if l.sum == "" {
					l.sum = s
				}
			}
			return decompress(dr, f)
		}
		return []*layer{l}, &Resolved{Source: spec, Kind: Tar}, nil
	case OCILayout:
		if _, err := os.Stat(filepath.Join(src.Path, "index.json")); err != nil {
			return fail(fmt.Errorf("not an OCI layout: %w", err))
		}
		return layoutLayers(ctx, spec, os.DirFS(src.Path), src, plat)
	case OCIArchive:
		tfs, err := openTarFS(ctx, src.Path)
		if err != nil {
			return fail(err)
		}
		return layoutLayers(ctx, spec, tfs, src, plat)
	case DockerArchive:
		img, err := tarball.ImageFromPath(src.Path, nil)
		if err != nil {
			return fail(err)
		}
		return imageLayers(spec, src, img, plat, "")
	case Image:
		if src.image == nil {
			return fail(errors.New("no image (make image sources with FromImage)"))
		}
		return imageLayers(spec, src, src.image, plat, "")
	case Registry:
		ref, err := name.ParseReference(spec)
		if err != nil {
			return fail(err)
		}
		if kc == nil {
			kc = authn.DefaultKeychain
		}
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(plat), remote.WithAuthFromKeychain(kc))
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return fail(err)
		}
		return imageLayers(spec, src, img, plat, cacheDir)
	}
	return fail(fmt.Errorf("unknown kind %q", src.Kind))
}

// platformMatches says whether an index entry's platform p is plat (any
// variant when plat names none).
func platformMatches(p *v1.Platform, plat v1.Platform) bool {
	return p.OS == plat.OS && p.Architecture == plat.Architecture && (plat.Variant == "" || p.Variant == plat.Variant)
}

func platformOK(cfg *v1.ConfigFile, plat v1.Platform) error {
	got := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if got.OS != plat.OS || got.Architecture != plat.Architecture || (plat.Variant != "" && got.Variant != plat.Variant) {
		return fmt.Errorf("image is for %s, not %s", got.String(), plat.String())
	}
	return nil
}

func imagePlatform(cfg *v1.ConfigFile) string {
	return (&v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}).String()
}

func hexOf(h v1.Hash) string { return h.Hex }

// imageLayers reads a go-containerregistry image: each layer's uncompressed
// stream is checked against the diff_id of the config. Registry blobs are
// kept in cacheDir by digest (checked again on every read).
func imageLayers(spec string, src Source, img v1.Image, plat v1.Platform, cacheDir string) ([]*layer, *Resolved, error) {
	fail := func(err error) ([]*layer, *Resolved, error) {
		return nil, nil, fmt.Errorf("source %s: %w", spec, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fail(fmt.Errorf("config: %w", err))
	}
	if err := platformOK(cfg, plat); err != nil {
		return fail(err)
	}
	md, err := img.Digest()
	if err != nil {
		return fail(err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		return fail(err)
	}
	if md.Algorithm != "sha256" || cd.Algorithm != "sha256" {
		return fail(fmt.Errorf("unsupported digest algorithm %s", md.Algorithm))
	}
	res := &Resolved{Source: spec, Kind: src.Kind, Platform: imagePlatform(cfg), ManifestDigest: md.Hex, ConfigDigest: cd.Hex}
	ls, err := img.Layers()
	if err != nil {
		return fail(err)
	}
	if len(ls) != len(cfg.RootFS.DiffIDs) {
		return fail(fmt.Errorf("%d layers but %d diff_ids in the config", len(ls), len(cfg.RootFS.DiffIDs)))
	}
	var out []*layer
	for i, l := range ls {
		diffID := cfg.RootFS.DiffIDs[i]
		dig, err := l.Digest()
		if err != nil {
			return fail(fmt.Errorf("layer %d: %w", i+1, err))
		}
		size, err := l.Size()
		if err != nil {
			return fail(fmt.Errorf("layer %d: %w", i+1, err))
		}
		mt, _ := l.MediaType()
		if dig.Algorithm != "sha256" || diffID.Algorithm != "sha256" {
			return fail(fmt.Errorf("layer %d: unsupported digest %s", i+1, dig))
		}
		res.Layers = append(res.Layers, LayerDigest{Digest: dig.Hex, DiffID: diffID.Hex, MediaType: string(mt), Size: size})
		lname := fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(ls), short(diffID.String()))
		if cacheDir != "" {
			lname = fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(ls), short(dig.String()))
			out = append(out, &layer{name: lname, upper: -1, size: size, fetch: &blobFetch{cacheDir, dig, l}, open: func(ctx context.Context) (*drainCloser, error) {
				p, err := cachedBlob(ctx, cacheDir, dig, l, nil)
				if err != nil {
					return nil, err
				}
				f, err := os.Open(p)
				if err != nil {
					return nil, err
				}
				return decompress(verifying(f, dig.String(), "blob", "cached blob "+p), f)
			}})
			continue
		}
		// Read uncompressed: its size as stored is not what is read.
		out = append(out, &layer{name: lname, upper: -1, size: -1, open: func(context.Context) (*drainCloser, error) {
			rc, err := l.Uncompressed()
			if err != nil {
				return nil, err
			}
			cr := &countingReader{r: rc}
			return &drainCloser{Reader: verifying(cr, diffID.String(), "blob", "uncompressed layer"), raw: eofReader{}, rawCount: cr, c: rc}, nil
		}})
	}
	res.setPinned()
	return out, res, nil
}

// eofReader is an empty stream.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// layoutLayers reads an OCI image layout (a directory or an archive of one).
func layoutLayers(ctx context.Context, spec string, fsys fs.FS, src Source, plat v1.Platform) ([]*layer, *Resolved, error) {
	fail := func(err error) ([]*layer, *Resolved, error) {
		return nil, nil, fmt.Errorf("source %s: %w", spec, err)
	}
	desc, err := layoutManifest(fsys, src, plat)
	if err != nil {
		return fail(err)
	}
	mb, err := readBlob(fsys, desc.Digest)
	if err != nil {
		return fail(err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(mb))
	if err != nil {
		return fail(fmt.Errorf("manifest %s: %w", desc.Digest, err))
	}
	cb, err := readBlob(fsys, m.Config.Digest)
	if err != nil {
		return fail(err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return fail(fmt.Errorf("config %s: %w", m.Config.Digest, err))
	}
	if err := platformOK(&cfg, plat); err != nil {
		return fail(err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return fail(fmt.Errorf("%d layers but %d diff_ids in the config", len(m.Layers), len(cfg.RootFS.DiffIDs)))
	}
	res := &Resolved{Source: spec, Kind: src.Kind, Platform: imagePlatform(&cfg),
		ManifestDigest: hexOf(desc.Digest), ConfigDigest: hexOf(m.Config.Digest)}
	var out []*layer
	for i, l := range m.Layers {
		switch l.MediaType {
		case types.OCILayer, types.OCIUncompressedLayer, types.DockerLayer, types.DockerUncompressedLayer, types.OCILayerZStd, "":
		default:
			return fail(fmt.Errorf("layer %d: unsupported media type %s", i+1, l.MediaType))
		}
		if !validDigest(l.Digest.String()) {
			return fail(fmt.Errorf("layer %d: unsupported digest %s", i+1, l.Digest))
		}
		res.Layers = append(res.Layers, LayerDigest{Digest: l.Digest.Hex, DiffID: cfg.RootFS.DiffIDs[i].Hex,
			MediaType: string(l.MediaType), Size: l.Size})
		out = append(out, &layer{
			name:  fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(m.Layers), short(l.Digest.String())),
			upper: -1,
			size:  l.Size,
			open: func(context.Context) (*drainCloser, error) {
				f, err := fsys.Open(path.Join("blobs", l.Digest.Algorithm, l.Digest.Hex))
				if err != nil {
					return nil, err
				}
				return decompress(verifying(f, l.Digest.String(), "blob", l.Digest.String()), f)
			},
		})
	}
	res.setPinned()
	return out, res, nil
}

// layoutManifest finds the image manifest a layout source names: by
// digest (an entry of index.json, or any manifest or index blob of the
// layout, so that a source pinned to a platform's manifest resolves), by
// tag (org.opencontainers.image.ref.name), or the only entry of
// index.json; image indexes are resolved for plat.
func layoutManifest(fsys fs.FS, src Source, plat v1.Platform) (*v1.Descriptor, error) {
	raw, err := readLimited(fsys, "index.json")
	if err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	ref := src.Tag
	if src.Digest != "" {
		ref = src.Digest
	}
	var desc *v1.Descriptor
	var matches []*v1.Descriptor
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		switch {
		case src.Digest != "":
			if d.Digest.String() == src.Digest {
				matches = append(matches, d)
			}
		case ref != "":
			if d.Annotations["org.opencontainers.image.ref.name"] == ref {
				matches = append(matches, d)
			}
		}
	}
	if src.Digest != "" && len(matches) == 0 {
		// Not listed in index.json: a manifest below an image index.
		d, err := blobDescriptor(fsys, src.Digest)
		if err != nil {
			return nil, fmt.Errorf("no manifest %q in index.json or its blobs: %w", ref, err)
		}
		matches = append(matches, d)
	}
	// Several entries may carry one name, one per platform: take the one
	// for plat (an entry without a platform matches anything).
	for _, d := range matches {
		if p := d.Platform; p == nil || platformMatches(p, plat) {
			if desc != nil {
				return nil, fmt.Errorf("index.json lists several manifests named %q for %s", ref, plat.String())
			}
			desc = d
		}
	}
	if desc == nil && len(matches) > 0 {
		return nil, fmt.Errorf("no image for %s named %q in index.json", plat.String(), ref)
	}
	if ref == "" {
		if len(idx.Manifests) != 1 {
			return nil, fmt.Errorf("index.json lists %d manifests: name one with :TAG or @sha256:DIGEST", len(idx.Manifests))
		}
		desc = &idx.Manifests[0]
	}
	if desc == nil {
		return nil, fmt.Errorf("no manifest %q in index.json", ref)
	}
	for depth := 0; desc.MediaType.IsIndex(); depth++ {
		if depth > 4 {
			return nil, errors.New("image indexes nested too deep")
		}
		b, err := readBlob(fsys, desc.Digest)
		if err != nil {
			return nil, err
		}
		sub, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		if len(sub.Manifests) == 0 {
			return nil, fmt.Errorf("index %s lists no manifests", short(desc.Digest.String()))
		}
		desc = nil
		for i := range sub.Manifests {
			if p := sub.Manifests[i].Platform; p != nil && platformMatches(p, plat) {
				desc = &sub.Manifests[i]
				break
			}
		}
		if desc == nil {
			return nil, fmt.Errorf("no image for %s in index %s", plat.String(), short(sub.Manifests[0].Digest.String()))
		}
	}
	return desc, nil
}

// blobDescriptor describes a manifest or index blob of a layout by its
// media type (or its shape, when it names none).
func blobDescriptor(fsys fs.FS, digest string) (*v1.Descriptor, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, err
	}
	b, err := readBlob(fsys, h)
	if err != nil {
		return nil, err
	}
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	mt := probe.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
		if probe.Manifests != nil {
			mt = types.OCIImageIndex
		}
	}
	return &v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(b))}, nil
}

func readLimited(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxJSON {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxJSON)
	}
	return b, nil
}

func readBlob(fsys fs.FS, d v1.Hash) ([]byte, error) {
	if !validDigest(d.String()) {
		return nil, fmt.Errorf("unsupported digest %q", d.String())
	}
	b, err := readLimited(fsys, path.Join("blobs", d.Algorithm, d.Hex))
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, &CorruptError{Kind: "blob", What: d.String(), Got: "sha256:" + hex.EncodeToString(sum[:]), Want: d.String()}
	}
	return b, nil
}

// tarFS is a read-only fs.FS over the regular files of an uncompressed tar
// (an oci-archive), reading each member in place. Each Open opens the
// archive anew and Close closes it, so that no descriptor outlives its use
// (blob digests catch an archive that changed in between).
type tarFS struct {
	path  string
	files map[string][2]int64 // name -> offset, size
}

func openTarFS(ctx context.Context, file string) (*tarFS, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &tarFS{path: file, files: map[string][2]int64{}}
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &FormatError{Layer: file, Err: fmt.Errorf("reading archive: %w", err)}
		}
		if n > MaxEntries {
			return nil, &FormatError{Layer: file, Err: fmt.Errorf("more than %d entries", MaxEntries)}
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		clean, err := cleanName(h.Name)
		if err != nil {
			continue
		}
		t.files[clean] = [2]int64{off, h.Size}
	}
	return t, nil
}

func (t *tarFS) Open(name string) (fs.File, error) {
	loc, ok := t.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, err
	}
	return tarMember{io.NewSectionReader(f, loc[0], loc[1]), f}, nil
}

type tarMember struct {
	*io.SectionReader
	f *os.File
}

func (tarMember) Stat() (fs.FileInfo, error) { return nil, errors.New("stat not supported") }
func (m tarMember) Close() error             { return m.f.Close() }

// Resolve resolves one source as Flatten does, without reading its
// layers: for OCI layouts, archives and registries the index, manifest and
// config (the digests and the platform check); for a tar file its sha256,
// computed by reading the file once (and checked against the source's
// digest when it is pinned). A dir: source has no digest of its own: its
// Resolved names only the source. opts.Upper is not used. A build calls
// Resolve to know what it will read before it reads it (a stage cache key,
// a pinned manifest); Flatten resolves again and checks every blob.
func Resolve(ctx context.Context, src Source, opts Options) (*Resolved, error) {
	plat, err := ParsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	_, res, err := resolve(ctx, src, plat, opts.CacheDir, opts.Keychain)
	if err != nil {
		return nil, err
	}
	if src.Kind == Tar {
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, ctxio.Reader(ctx, f)); err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if src.Digest != "" && src.Digest != "sha256:"+sum {
			return nil, &CorruptError{Kind: "file", What: src.Path, Got: "sha256:" + sum, Want: src.Digest}
		}
		res.SHA256 = sum
		res.setPinned()
	}
	return res, nil
}
