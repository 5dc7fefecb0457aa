package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
)

// An OCI image layout (image-spec layout.md) is written by hand: three
// kinds of files, and go-containerregistry's layout package would append a
// second index entry on every push of the same artifact.

const ociLayoutFile = `{"imageLayoutVersion":"1.0.0"}`

type ociIndex struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// WriteLayout writes the output directory dir as an artifact into the OCI
// layout at layoutDir (created if missing; an artifact already there with
// the same digest is not added twice). It returns what Push would.
func WriteLayout(ctx context.Context, dir, layoutDir string) (*PushResult, error) {
	a, err := NewArtifact(ctx, dir)
	if err != nil {
		return nil, err
	}
	index := ociIndex{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	if data, err := readDocument(filepath.Join(layoutDir, "index.json")); err == nil {
		if err := json.Unmarshal(data, &index); err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", layoutDir, err)
		}
	} else if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%s: index.json: %w", layoutDir, err)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	blobs := filepath.Join(layoutDir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(layoutDir, "oci-layout"), []byte(ociLayoutFile), 0o644); err != nil {
		return nil, err
	}
	writeBlob := func(hexSum string, src io.Reader) error {
		p := filepath.Join(blobs, hexSum)
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		f, err := atomicfile.Create(p, 0o644)
		if err != nil {
			return err
		}
		defer f.Abort()
		if _, err := copyCtx(ctx, f, src); err != nil {
			return err
		}
		return f.Commit()
	}
	if err := writeBlob(mustHash(emptyDigest).Hex, bytes.NewReader(emptyJSON)); err != nil {
		return nil, err
	}
	res := &PushResult{Reference: layoutDir, Digest: a.Digest.String(), Files: len(a.layers)}
	for _, l := range a.layers {
		f, err := os.Open(l.path)
		if err != nil {
			return nil, err
		}
		err = writeBlob(l.digest.Hex, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		res.Size += l.size
	}
	if err := writeBlob(a.Digest.Hex, bytes.NewReader(a.Manifest)); err != nil {
		return nil, err
	}
	index.Manifests = slices.DeleteFunc(index.Manifests, func(d v1.Descriptor) bool { return d.Digest == a.Digest })
	index.Manifests = append(index.Manifests, v1.Descriptor{
		MediaType: types.OCIManifestSchema1, Digest: a.Digest, Size: int64(len(a.Manifest)), ArtifactType: ArtifactType,
	})
	raw, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(layoutDir, "index.json"), append(raw, '\n'), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

type layoutBlobs struct{ dir string }

func (l layoutBlobs) blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	return os.Open(filepath.Join(l.dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
}

// PullLayout reads the artifact with the given manifest digest ("" for
// the only output-set artifact of the layout) from the OCI layout at
// layoutDir into out, with Pull's checks.
func PullLayout(ctx context.Context, layoutDir, digest, out string, opts PullOptions) (*PullResult, error) {
	data, err := readDocument(filepath.Join(layoutDir, "index.json"))
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%s: index.json: %w", layoutDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %w", layoutDir, err)
	}
	var index ociIndex
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", layoutDir, err)
	}
	var found []v1.Descriptor
	for _, d := range index.Manifests {
		if digest != "" && d.Digest.String() == digest || digest == "" && d.ArtifactType == ArtifactType {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && digest != "":
		return nil, fmt.Errorf("%s: no manifest %s", layoutDir, digest)
	case len(found) == 0:
		return nil, fmt.Errorf("%s: no output-set artifact (artifactType %s)", layoutDir, ArtifactType)
	case len(found) > 1:
		return nil, fmt.Errorf("%s: %d output-set artifacts: name one by digest", layoutDir, len(found))
	}
	d := found[0]
	if d.Size > MaxManifestSize || d.Digest.Algorithm != "sha256" {
		return nil, &PullError{"", fmt.Errorf("manifest %s of %d bytes: not accepted", d.Digest, d.Size)}
	}
	rc, err := layoutBlobs{layoutDir}.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	manifest, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	rc.Close()
	if err != nil {
		return nil, err
	}
	if got := sha256Hex(manifest); got != d.Digest.Hex || int64(len(manifest)) != d.Size {
		return nil, &PullError{"", fmt.Errorf("manifest %s: content has sha256:%s", d.Digest, got)}
	}
	return pullInto(ctx, manifest, layoutBlobs{layoutDir}, out, opts)
}

// sha256Writer is a sha256 with a hex result.
type sha256Writer struct{ hash.Hash }

func newSHA256() sha256Writer      { return sha256Writer{sha256.New()} }
func (h sha256Writer) hex() string { return hex.EncodeToString(h.Sum(nil)) }

// newOutputDir starts the pulled directory: an existing one is replaced
// only when it is empty or an output set (it has a manifest.json or an
// install-plan.json), so a mistyped -o never deletes unrelated files.
func newOutputDir(out string) (*atomicfile.Dir, error) {
	d, err := atomicfile.NewDir(out)
	if err != nil {
		return nil, err
	}
	d.CanReplace = func(existing string) error {
		entries, err := os.ReadDir(existing)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		for _, n := range []string{ManifestFile, InstallPlanFile} {
			if _, err := os.Stat(filepath.Join(existing, n)); err == nil {
				return nil
			}
		}
		return errors.New("exists and is not an output set (no manifest.json or install-plan.json); refusing to replace it")
	}
	return d, nil
}
