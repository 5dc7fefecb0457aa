package payload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// ArtifactType is the artifactType of the OCI manifest of an output set.
const ArtifactType = "application/vnd.imagebuilder.podvm.v1"

// The OCI empty descriptor: the config of an artifact that has none.
const (
	emptyMediaType = "application/vnd.oci.empty.v1+json"
	emptyDigest    = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	titleKey       = "org.opencontainers.image.title"
)

var emptyJSON = []byte("{}")

// MaxFiles and MaxManifestSize bound what Pull accepts from a registry.
const (
	MaxFiles        = 1000
	MaxManifestSize = 4 << 20
	// MaxDocumentSize bounds the JSON documents read from an output set
	// or an OCI layout (manifest.json, install-plan.json, index.json):
	// real ones are a few KiB.
	MaxDocumentSize = 16 << 20
)

// artifactManifest is the OCI image manifest of an output set, written by
// hand: go-containerregistry's mutate has no artifactType, and empty.Image
// is a Docker manifest.
type artifactManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// mediaTypeOf is a file's layer media type, from its name.
func mediaTypeOf(name string) types.MediaType {
	switch path.Ext(name) {
	case ".json":
		return "application/json"
	case ".toml":
		return "application/toml"
	case ".yaml":
		return "application/yaml"
	case ".txt":
		return "text/plain"
	}
	return "application/octet-stream"
}

// fileLayer is a file of the output directory as a v1.Layer (stored as
// is, so its digest and diff id are the file's sha256).
type fileLayer struct {
	path   string
	name   string
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return os.Open(l.path)
}

// bytesLayer is a small blob held in memory (the empty config).
type bytesLayer struct {
	data   []byte
	digest v1.Hash
	mt     types.MediaType
}

func (l *bytesLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *bytesLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.data)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *bytesLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// OCIArtifact is an output directory as an OCI artifact.
type OCIArtifact struct {
	Manifest []byte  // the manifest's bytes
	Digest   v1.Hash // of Manifest
	layers   []*fileLayer
}

// rawManifest lets an OCIArtifact be pushed with remote.Put.
type rawManifest struct{ b []byte }

func (r rawManifest) RawManifest() ([]byte, error) { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

// NewArtifact reads an output directory: every regular file becomes a
// layer (in name order, titled with its name); anything else in it is an
// error. The manifest depends only on the files' names and contents.
func NewArtifact(ctx context.Context, dir string) (*OCIArtifact, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var layers []*fileLayer
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file (an output directory holds only files)", p)
		}
		if err := checkFileName(e.Name()); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		size, sum, err := hashFile(ctx, p)
		if err != nil {
			return nil, err
		}
		layers = append(layers, &fileLayer{path: p, name: e.Name(), size: size,
			digest: v1.Hash{Algorithm: "sha256", Hex: sum}, mt: mediaTypeOf(e.Name())})
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("%s: no files", dir)
	}
	slices.SortFunc(layers, func(a, b *fileLayer) int { return strings.Compare(a.name, b.name) })
	m := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: emptyMediaType, Digest: mustHash(emptyDigest), Size: 2, Data: emptyJSON},
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mt, Digest: l.digest, Size: l.size,
			Annotations: map[string]string{titleKey: l.name}})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &OCIArtifact{Manifest: raw, Digest: v1.Hash{Algorithm: "sha256", Hex: sha256Hex(raw)}, layers: layers}, nil
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

// checkFileName accepts a plain file name (what a title may say).
func checkFileName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") || strings.HasPrefix(n, ".") {
		return fmt.Errorf("file name %q: want a plain name", n)
	}
	return nil
}

// RemoteOptions are go-containerregistry options for registry access;
// DefaultRemoteOptions uses the default keychain (docker config, cred
// helpers) and ctx.
func DefaultRemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// PushResult says what was pushed.
type PushResult struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	Files     int    `json:"files"`
	Size      int64  `json:"size"`
}

// Push uploads the output directory dir to ref as one artifact and
// returns its digest. Blobs the registry has already are not sent again.
func Push(ctx context.Context, dir, ref string, opts ...remote.Option) (*PushResult, error) {
	r, err := source.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	a, err := NewArtifact(ctx, dir)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		opts = DefaultRemoteOptions(ctx)
	}
	repo := r.Context()
	config := &bytesLayer{data: emptyJSON, digest: mustHash(emptyDigest), mt: emptyMediaType}
	if err := remote.WriteLayer(repo, config, opts...); err != nil {
		return nil, fmt.Errorf("push %s: config: %w", ref, err)
	}
	res := &PushResult{Reference: ref, Digest: a.Digest.String(), Files: len(a.layers)}
	for _, l := range a.layers {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return nil, fmt.Errorf("push %s: %s: %w", ref, l.name, err)
		}
		res.Size += l.size
	}
	if err := remote.Put(r, rawManifest{a.Manifest}, opts...); err != nil {
		return nil, fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	return res, nil
}

// PullError is a pulled artifact that is not what it claims to be.
type PullError struct {
	File string // the file concerned, "" for the manifest
	Err  error
}

func (e *PullError) Error() string {
	if e.File == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}
func (e *PullError) Unwrap() error { return e.Err }

// PullOptions say how to check what was pulled.
type PullOptions struct {
	// Verify, when set, runs on the complete pulled directory before it
	// is published (a temporary directory beside the target): the hook
	// for `imagebuilder verify`. The built-in checks (CheckOutputSet) run
	// first in any case.
	Verify func(ctx context.Context, dir string) error
	// Remote are the registry options (DefaultRemoteOptions).
	Remote []remote.Option
}

// PullResult says what was pulled.
type PullResult struct {
	Digest string       `json:"digest"`
	Files  []PulledFile `json:"files"`
}

// PulledFile is one file of the artifact.
type PulledFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// blobSource fetches blobs of one artifact.
type blobSource interface {
	blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

type remoteBlobs struct {
	repo name.Repository
	opts []remote.Option
}

func (r remoteBlobs) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	l, err := remote.Layer(r.repo.Digest(d.Digest.String()), r.opts...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// Pull fetches the artifact at ref into the directory out (created, or
// replaced when it holds an output set already), checking every digest,
// and then the files against manifest.json and install-plan.json.
func Pull(ctx context.Context, ref, out string, opts PullOptions) (*PullResult, error) {
	r, err := source.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	ropts := opts.Remote
	if ropts == nil {
		ropts = DefaultRemoteOptions(ctx)
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if int64(len(desc.Manifest)) > MaxManifestSize {
		return nil, &PullError{"", fmt.Errorf("manifest of %d bytes: larger than %d", len(desc.Manifest), MaxManifestSize)}
	}
	if got := sha256Hex(desc.Manifest); got != desc.Digest.Hex {
		return nil, &PullError{"", fmt.Errorf("manifest digest sha256:%s, registry says %s", got, desc.Digest)}
	}
	if d, ok := r.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, &PullError{"", fmt.Errorf("manifest digest %s, want %s", desc.Digest, d.DigestStr())}
	}
	return pullInto(ctx, desc.Manifest, remoteBlobs{r.Context(), ropts}, out, opts)
}

// parseArtifactManifest checks that raw is an output-set artifact and
// returns its files' descriptors.
func parseArtifactManifest(raw []byte) ([]v1.Descriptor, []string, error) {
	var m artifactManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, &PullError{"", fmt.Errorf("manifest: %v", err)}
	}
	if m.MediaType != types.OCIManifestSchema1 || m.SchemaVersion != 2 {
		return nil, nil, &PullError{"", fmt.Errorf("manifest media type %q: want an OCI image manifest", m.MediaType)}
	}
	if m.ArtifactType != ArtifactType {
		return nil, nil, &PullError{"", fmt.Errorf("artifactType %q: not an imagebuilder output set (%s)", m.ArtifactType, ArtifactType)}
	}
	if len(m.Layers) == 0 || len(m.Layers) > MaxFiles {
		return nil, nil, &PullError{"", fmt.Errorf("%d files: want 1 to %d", len(m.Layers), MaxFiles)}
	}
	names := make([]string, len(m.Layers))
	seen := map[string]bool{}
	for i, l := range m.Layers {
		n := l.Annotations[titleKey]
		if err := checkFileName(n); err != nil {
			return nil, nil, &PullError{"", fmt.Errorf("layer %d: %v", i, err)}
		}
		if seen[n] {
			return nil, nil, &PullError{n, errors.New("listed twice")}
		}
		if l.Digest.Algorithm != "sha256" || checkSHA256(l.Digest.Hex) != nil || l.Size < 0 {
			return nil, nil, &PullError{n, fmt.Errorf("descriptor digest %s size %d: want a sha256", l.Digest, l.Size)}
		}
		seen[n] = true
		names[i] = n
	}
	return m.Layers, names, nil
}

// pullInto downloads the files of the artifact into a temporary directory
// beside out, checks them, and publishes the directory as out.
func pullInto(ctx context.Context, manifest []byte, src blobSource, out string, opts PullOptions) (*PullResult, error) {
	layers, names, err := parseArtifactManifest(manifest)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".pull-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	res := &PullResult{Digest: "sha256:" + sha256Hex(manifest)}
	for i, l := range layers {
		f, err := fetchFile(ctx, src, l, filepath.Join(tmp, names[i]), names[i])
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, *f)
	}
	if err := CheckOutputSet(ctx, tmp, res.Files); err != nil {
		return nil, err
	}
	if opts.Verify != nil {
		if err := opts.Verify(ctx, tmp); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	d, err := newOutputDir(out)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := d.AddLink(n, filepath.Join(tmp, n)); err != nil {
			return nil, err
		}
	}
	if err := d.Commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// fetchFile writes one blob to dst, checking its size and digest.
func fetchFile(ctx context.Context, src blobSource, l v1.Descriptor, dst, fname string) (*PulledFile, error) {
	rc, err := src.blob(ctx, l)
	if err != nil {
		return nil, &PullError{fname, fmt.Errorf("fetch %s: %w", l.Digest, err)}
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := newSHA256()
	n, err := copyCtx(ctx, io.MultiWriter(f, h), io.LimitReader(rc, l.Size+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// go-containerregistry checks the digest at the end of a blob;
		// either way the file is named.
		return nil, &PullError{fname, fmt.Errorf("blob %s: %w", l.Digest, err)}
	}
	sum := h.hex()
	if n != l.Size || sum != l.Digest.Hex {
		return nil, &PullError{fname, fmt.Errorf("content does not match its digest: got %d bytes sha256:%s, want %d bytes %s", n, sum, l.Size, l.Digest)}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &PulledFile{Name: fname, Size: n, SHA256: sum}, nil
}

// CheckOutputSet checks an output directory's files (as listed, with
// their measured sizes and sha256) against its own manifest.json (every
// output it lists present with its size and sha256, no file it does not
// list) and install-plan.json (every source present with its sha256).
// Either may be absent. It stands in until `imagebuilder verify` checks
// a whole output set.
func CheckOutputSet(ctx context.Context, dir string, files []PulledFile) error {
	by := map[string]PulledFile{}
	for _, f := range files {
		by[f.Name] = f
	}
	if _, ok := by[ManifestFile]; ok {
		data, err := readDocument(filepath.Join(dir, ManifestFile))
		if err != nil {
			return &PullError{ManifestFile, err}
		}
		var m struct {
			Schema  string `json:"schema"`
			Outputs []struct {
				Name   string `json:"name"`
				Size   int64  `json:"size"`
				SHA256 string `json:"sha256"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return &PullError{ManifestFile, err}
		}
		if !strings.HasPrefix(m.Schema, "imagebuilder.podvm.manifest/") {
			return &PullError{ManifestFile, fmt.Errorf("schema %q: not an imagebuilder manifest", m.Schema)}
		}
		listed := map[string]bool{ManifestFile: true}
		for _, o := range m.Outputs {
			listed[o.Name] = true
			f, ok := by[o.Name]
			if !ok {
				return &PullError{o.Name, fmt.Errorf("listed in %s but missing", ManifestFile)}
			}
			if f.Size != o.Size || f.SHA256 != o.SHA256 {
				return &PullError{o.Name, fmt.Errorf("%d bytes sha256 %s, %s says %d bytes sha256 %s", f.Size, f.SHA256, ManifestFile, o.Size, o.SHA256)}
			}
		}
		for _, f := range files {
			if !listed[f.Name] {
				return &PullError{f.Name, fmt.Errorf("not listed in %s", ManifestFile)}
			}
		}
	}
	if _, ok := by[InstallPlanFile]; ok {
		data, err := readDocument(filepath.Join(dir, InstallPlanFile))
		if err != nil {
			return &PullError{InstallPlanFile, err}
		}
		plan, err := ParsePlan(data, InstallPlanFile)
		if err != nil {
			return err
		}
		for _, pf := range plan.Files {
			f, ok := by[pf.Source]
			if !ok {
				return &PullError{pf.Source, fmt.Errorf("named by %s but missing", InstallPlanFile)}
			}
			if f.Size != pf.Size || f.SHA256 != pf.SHA256 {
				return &PullError{pf.Source, fmt.Errorf("%d bytes sha256 %s, %s says %d bytes sha256 %s", f.Size, f.SHA256, InstallPlanFile, pf.Size, pf.SHA256)}
			}
		}
	}
	return ctx.Err()
}

// errTooLarge is a document over MaxDocumentSize.
var errTooLarge = fmt.Errorf("larger than %d MiB: not a document of an output set", MaxDocumentSize>>20)

// readDocument reads the JSON document at p, refusing one over
// MaxDocumentSize (errTooLarge) instead of reading whatever a hostile
// file holds into memory.
func readDocument(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxDocumentSize {
		return nil, errTooLarge
	}
	return b, nil
}

// ManifestFile is the build's manifest in an output directory.
const ManifestFile = "manifest.json"
