package podvm

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

var update = flag.Bool("update", false, "rewrite testdata/repro/oci")

// TestReproFixture checks testdata/repro/oci: an OCI image layout of
// rootfstest.SmallLayers with uncompressed layers, written by hand (no
// compression library's output in it) and rewritten with -update.
func TestReproFixture(t *testing.T) {
	files := map[string][]byte{}
	blob := func(b []byte) (string, int) {
		d := fmt.Sprintf("%x", sha256.Sum256(b))
		files["blobs/sha256/"+d] = b
		return "sha256:" + d, len(b)
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    map[string]string `json:"platform,omitempty"`
	}
	var layers []desc
	var diffIDs []string
	for _, l := range rootfstest.SmallLayers(t) {
		d, n := blob(l)
		layers = append(layers, desc{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: d, Size: n})
		diffIDs = append(diffIDs, d)
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cd, cn := blob(mustJSON(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}}))
	md, mn := blob(mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cd, Size: cn}, "layers": layers}))
	files["index.json"] = mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []desc{{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: md, Size: mn,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": "v1"},
			Platform:    map[string]string{"architecture": "amd64", "os": "linux"}}}})
	files["oci-layout"] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	dir := filepath.Join("testdata", "repro", "oci")
	if *update {
		os.RemoveAll(dir)
		for name, b := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatalf("%v (go test ./pkg/podvm -run TestReproFixture -update writes it)", err)
		}
		if string(got) != string(b) {
			t.Errorf("%s differs from what the fixture writer makes", name)
		}
	}
}
