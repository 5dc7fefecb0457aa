package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// layerSrc is one layer to merge: a tar stream (opened once per pass, and
// checked against its digest each time) or a host directory.
type layerSrc struct {
	name string
	open func() (io.ReadCloser, error)
	dir  string
	mem  []entry // entries made in memory (the agent, units, --file)
	// noRoot leaves out the directory's own entry, so that an --add
	// directory does not change the mode of the image's root.
	noRoot bool
	// noDirReplace makes an entry that would replace a directory an error
	// (--file: a file over /etc would drop all of /etc).
	noDirReplace bool
}

// SourceKinds lists the source forms Build accepts, for help texts.
const SourceKinds = `oci-layout:DIR[:TAG|@sha256:DIGEST], oci-archive:FILE[:TAG], docker-archive:FILE, dir:PATH, tar:FILE, or a registry reference REGISTRY/REPO[:TAG|@sha256:DIGEST]`

// maxJSON bounds the size of an index, manifest or config read into memory.
const maxJSON = 4 << 20

// resolveSource turns one --source into its layers, bottom first.
func resolveSource(spec string, plat v1.Platform, cacheDir string, kc authn.Keychain) ([]layerSrc, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "dir":
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", spec, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("source %s: not a directory", spec)
		}
		return []layerSrc{{name: spec, dir: arg}}, nil
	case "tar":
		if _, err := os.Stat(arg); err != nil {
			return nil, fmt.Errorf("source %s: %w", spec, err)
		}
		return []layerSrc{{name: spec, open: func() (io.ReadCloser, error) {
			f, err := os.Open(arg)
			if err != nil {
				return nil, err
			}
			return decompress(f, f)
		}}}, nil
	case "oci-layout":
		dir, ref := splitRef(arg)
		if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
			return nil, fmt.Errorf("source %s: not an OCI layout: %w", spec, err)
		}
		return layoutLayers(spec, os.DirFS(dir), ref, plat)
	case "oci-archive":
		file, ref := splitRef(arg)
		tfs, err := openTarFS(file)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", spec, err)
		}
		return layoutLayers(spec, tfs, ref, plat)
	case "docker-archive":
		img, err := tarball.ImageFromPath(arg, nil)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", spec, err)
		}
		return imageLayers(spec, img, plat, "")
	}
	ref, err := name.ParseReference(strings.TrimPrefix(spec, "docker://"))
	if err != nil {
		return nil, fmt.Errorf("source %q: not a known source kind (%s): %v", spec, SourceKinds, err)
	}
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	img, err := remote.Image(ref, remote.WithPlatform(plat), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	return imageLayers(spec, img, plat, cacheDir)
}

// splitRef splits "PATH:TAG" or "PATH@sha256:HEX"; a colon followed by a
// slash belongs to the path.
func splitRef(s string) (string, string) {
	if i := strings.LastIndex(s, "@sha256:"); i >= 0 {
		return s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		return s[:i], s[i+1:]
	}
	return s, ""
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

// imageLayers reads a go-containerregistry image: each layer's uncompressed
// stream is checked against the diff_id of the config. Registry blobs are
// kept in cacheDir by digest (checked again on every read).
func imageLayers(spec string, img v1.Image, plat v1.Platform, cacheDir string) ([]layerSrc, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("source %s: config: %w", spec, err)
	}
	if err := platformOK(cfg, plat); err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", spec, err)
	}
	if len(ls) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("source %s: %d layers but %d diff_ids in the config", spec, len(ls), len(cfg.RootFS.DiffIDs))
	}
	var out []layerSrc
	for i, l := range ls {
		diffID := cfg.RootFS.DiffIDs[i]
		lname := fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(ls), short(diffID.String()))
		l := l
		if cacheDir != "" {
			dig, err := l.Digest()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", lname, err)
			}
			lname = fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(ls), short(dig.String()))
			out = append(out, layerSrc{name: lname, open: func() (io.ReadCloser, error) {
				p, err := cachedBlob(cacheDir, dig, l)
				if err != nil {
					return nil, err
				}
				f, err := os.Open(p)
				if err != nil {
					return nil, err
				}
				return decompress(verifying(f, dig.Hex, p), f)
			}})
			continue
		}
		out = append(out, layerSrc{name: lname, open: func() (io.ReadCloser, error) {
			rc, err := l.Uncompressed()
			if err != nil {
				return nil, err
			}
			return struct {
				io.Reader
				io.Closer
			}{verifying(rc, diffID.Hex, "uncompressed layer"), rc}, nil
		}})
	}
	return out, nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// cachedBlob makes sure the compressed blob dig is in the cache and returns
// its path. A download goes to a temporary name and is renamed only once its
// digest checked out.
func cachedBlob(dir string, dig v1.Hash, l v1.Layer) (string, error) {
	p := filepath.Join(dir, dig.Algorithm, dig.Hex)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+dig.Hex[:12]+"-*")
	if err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), rc); err != nil {
		tmp.Close()
		return "", fmt.Errorf("fetching blob %s: %w", dig, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != dig.Hex {
		return "", fmt.Errorf("blob %s: digest mismatch (got sha256:%s)", dig, got)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	return p, nil
}

// digestReader hashes what it reads and, at EOF, fails unless the digest
// matches.
type digestReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	what string
}

func verifying(r io.Reader, wantHex, what string) io.Reader {
	return &digestReader{r: r, h: sha256.New(), want: wantHex, what: what}
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(d.h.Sum(nil)); got != d.want {
			return n, fmt.Errorf("blob digest mismatch: %s has sha256:%s, want sha256:%s", d.what, got, d.want)
		}
	}
	return n, err
}

// decompress detects gzip or zstd by magic number; anything else is read as
// a plain tar. Closing the result closes c.
func decompress(r io.Reader, c io.Closer) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			c.Close()
			return nil, err
		}
		return &drainCloser{Reader: zr, raw: br, c: c}, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			c.Close()
			return nil, err
		}
		return &drainCloser{Reader: zr, raw: br, c: c, zc: zr.Close}, nil
	}
	return &drainCloser{Reader: br, raw: br, c: c}, nil
}

// drainCloser's Finish reads the rest of the raw stream (the tar trailer,
// compressed padding) so a digest check at EOF runs.
type drainCloser struct {
	io.Reader
	raw io.Reader
	c   io.Closer
	zc  func()
}

func (d *drainCloser) Close() error {
	if d.c == nil {
		return nil
	}
	if d.zc != nil {
		d.zc()
	}
	return d.c.Close()
}

func (d *drainCloser) finish() error {
	_, err := io.Copy(io.Discard, d.Reader)
	// The raw stream's own end runs the digest check, which explains a
	// decompression error better than the error itself.
	if _, rerr := io.Copy(io.Discard, d.raw); rerr != nil {
		return rerr
	}
	return err
}

// finishStream drains a layer stream to its end so that its digest is
// checked.
func finishStream(rc io.ReadCloser) error {
	if d, ok := rc.(*drainCloser); ok {
		return d.finish()
	}
	_, err := io.Copy(io.Discard, rc)
	return err
}

// layoutLayers reads an OCI image layout (a directory or an archive of one).
func layoutLayers(spec string, fsys fs.FS, ref string, plat v1.Platform) ([]layerSrc, error) {
	fail := func(err error) ([]layerSrc, error) { return nil, fmt.Errorf("source %s: %w", spec, err) }
	raw, err := readLimited(fsys, "index.json")
	if err != nil {
		return fail(err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return fail(fmt.Errorf("index.json: %w", err))
	}
	var desc *v1.Descriptor
	var matches []*v1.Descriptor
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		switch {
		case strings.HasPrefix(ref, "sha256:"):
			if d.Digest.String() == ref {
				matches = append(matches, d)
			}
		case ref != "":
			if d.Annotations["org.opencontainers.image.ref.name"] == ref {
				matches = append(matches, d)
			}
		}
	}
	// Several entries may carry one name, one per platform: take the one
	// for plat (an entry without a platform matches anything).
	for _, d := range matches {
		if p := d.Platform; p == nil || platformMatches(p, plat) {
			if desc != nil {
				return fail(fmt.Errorf("index.json lists several manifests named %q for %s", ref, plat.String()))
			}
			desc = d
		}
	}
	if desc == nil && len(matches) > 0 {
		return fail(fmt.Errorf("no image for %s named %q in index.json", plat.String(), ref))
	}
	if ref == "" {
		if len(idx.Manifests) != 1 {
			return fail(fmt.Errorf("index.json lists %d manifests: name one with :TAG or @sha256:DIGEST", len(idx.Manifests)))
		}
		desc = &idx.Manifests[0]
	}
	if desc == nil {
		return fail(fmt.Errorf("no manifest %q in index.json", ref))
	}
	for depth := 0; desc.MediaType.IsIndex(); depth++ {
		if depth > 4 {
			return fail(errors.New("image indexes nested too deep"))
		}
		b, err := readBlob(fsys, desc.Digest)
		if err != nil {
			return fail(err)
		}
		sub, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return fail(fmt.Errorf("index %s: %w", desc.Digest, err))
		}
		desc = nil
		for i := range sub.Manifests {
			if p := sub.Manifests[i].Platform; p != nil && platformMatches(p, plat) {
				desc = &sub.Manifests[i]
				break
			}
		}
		if desc == nil {
			return fail(fmt.Errorf("no image for %s in index %s", plat.String(), short(sub.Manifests[0].Digest.String())))
		}
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
	var out []layerSrc
	for i, l := range m.Layers {
		l := l
		switch l.MediaType {
		case types.OCILayer, types.OCIUncompressedLayer, types.DockerLayer, types.DockerUncompressedLayer, types.OCILayerZStd, "":
		default:
			return fail(fmt.Errorf("layer %d: unsupported media type %s", i+1, l.MediaType))
		}
		if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
			return fail(fmt.Errorf("layer %d: unsupported digest %s", i+1, l.Digest))
		}
		out = append(out, layerSrc{
			name: fmt.Sprintf("%s layer %d/%d (%s)", spec, i+1, len(m.Layers), short(l.Digest.String())),
			open: func() (io.ReadCloser, error) {
				f, err := fsys.Open(path.Join("blobs", l.Digest.Algorithm, l.Digest.Hex))
				if err != nil {
					return nil, err
				}
				return decompress(verifying(f, l.Digest.Hex, "blob "+l.Digest.String()), f)
			},
		})
	}
	return out, nil
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
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return nil, fmt.Errorf("unsupported digest %q", d.String())
	}
	b, err := readLimited(fsys, path.Join("blobs", d.Algorithm, d.Hex))
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, fmt.Errorf("blob digest mismatch: %s has sha256:%x", d, sum)
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

func openTarFS(file string) (*tarFS, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &tarFS{path: file, files: map[string][2]int64{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		n, err := cleanName(h.Name)
		if err != nil {
			continue
		}
		t.files[n] = [2]int64{off, h.Size}
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
