package payload

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// runtimeClass is the node.k8s.io/v1 RuntimeClass as we write it (field
// order as kubectl prints it; the test decodes it strictly into
// k8s.io/api/node/v1.RuntimeClass).
type runtimeClass struct {
	APIVersion string        `yaml:"apiVersion"`
	Kind       string        `yaml:"kind"`
	Metadata   rcMetadata    `yaml:"metadata"`
	Handler    string        `yaml:"handler"`
	Overhead   rcOverhead    `yaml:"overhead"`
	Scheduling *rcScheduling `yaml:"scheduling,omitempty"`
}

type rcMetadata struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

type rcOverhead struct {
	PodFixed map[string]string `yaml:"podFixed"`
}

type rcScheduling struct {
	NodeSelector map[string]string `yaml:"nodeSelector"`
}

func runtimeClassYAML(p *Payload, opts Options) ([]byte, error) {
	rc := runtimeClass{
		APIVersion: "node.k8s.io/v1",
		Kind:       "RuntimeClass",
		Metadata:   rcMetadata{Name: p.Handler, Labels: opts.Labels},
		Handler:    p.Handler,
		Overhead: rcOverhead{PodFixed: map[string]string{
			"cpu":    p.OverheadCPU,
			"memory": fmt.Sprintf("%dMi", p.OverheadMemoryMiB),
		}},
	}
	if len(opts.NodeSelector) > 0 {
		rc.Scheduling = &rcScheduling{NodeSelector: opts.NodeSelector}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(rc); err != nil {
		return nil, fmt.Errorf("payload: RuntimeClass: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
