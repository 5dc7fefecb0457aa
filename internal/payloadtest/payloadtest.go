// Package payloadtest writes what the node payload's commands read from an
// output directory, for tests and benchmarks that make one without a
// build: a manifest.json listing the directory's files.
package payloadtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
)

// WriteManifest writes dir/manifest.json listing every other file of dir
// (name, size, sha256) in the shape of pkg/podvm's manifest, schema
// imagebuilder.podvm.manifest/v1.
func WriteManifest(dir string) error {
	type output struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	m := struct {
		Schema  string   `json:"schema"`
		Outputs []output `json:"outputs"`
	}{Schema: "imagebuilder.podvm.manifest/v1"}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "manifest.json" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		m.Outputs = append(m.Outputs, output{e.Name(), n, hex.EncodeToString(h.Sum(nil))})
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), append(raw, '\n'), 0o644)
}
