package payload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/pelletier/go-toml/v2"
)

// FuzzParsePlan: any install plan is accepted or refused with a
// PlanError, never a panic; an accepted one has only paths under its
// prefix and sources that are plain names.
func FuzzParsePlan(f *testing.F) {
	set := writeOutputSet(f, f.TempDir())
	p, err := Generate(context.Background(), set, Options{Target: "qemu", CPU: "milan"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p.InstallPlanJSON())
	f.Add([]byte(`{"schema":"imagebuilder.dev/install-plan/v1","files":[{"path":"/x/../etc/shadow"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		plan, err := ParsePlan(data, "plan.json")
		if err != nil {
			return
		}
		for _, pf := range plan.Files {
			if filepath.Clean(pf.Path) != pf.Path || len(pf.Path) <= len(plan.InstallPrefix) || pf.Path[:len(plan.InstallPrefix)] != plan.InstallPrefix {
				t.Fatalf("accepted path %q outside %q", pf.Path, plan.InstallPrefix)
			}
			if filepath.Base(pf.Source) != pf.Source {
				t.Fatalf("accepted source %q", pf.Source)
			}
		}
	})
}

// FuzzMergeRuntime: adding the runtime to any containerd config either
// fails or gives a config that decodes, holds the runtime, and says
// everything else the input said.
func FuzzMergeRuntime(f *testing.F) {
	r := ContainerdRuntime{Handler: "h-12345678", RuntimeType: "io.containerd.kata.v2", PodAnnotations: []string{"io.katacontainers.*"},
		PrivilegedWithoutHostDevices: true, ConfigPath: "/opt/h/etc/c.toml", ConfigVersion: 2}
	f.Add([]byte(userConfig))
	f.Add([]byte("version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.h-12345678]\nruntime_type = \"x\"\n"))
	f.Add([]byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.h-12345678.options]\nConfigPath = \"/old\"\n[grpc]\naddress = \"/s\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, changed, err := mergeRuntime(data, r, "config.toml")
		if err != nil {
			return
		}
		if !changed && !bytes.Equal(out, data) {
			t.Fatal("unchanged but different bytes")
		}
		var m map[string]any
		if err := toml.Unmarshal(out, &m); err != nil {
			t.Fatalf("result does not decode: %v", err)
		}
		again, changed2, err := mergeRuntime(out, r, "config.toml")
		if err != nil || changed2 || !bytes.Equal(again, out) {
			t.Fatalf("a second merge is not a no-op: %v %v", changed2, err)
		}
	})
}

// FuzzArtifactManifest: a registry's manifest is refused with a
// PullError or gives plain, distinct file names.
func FuzzArtifactManifest(f *testing.F) {
	m := artifactManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json", ArtifactType: ArtifactType,
		Config: v1.Descriptor{MediaType: emptyMediaType, Digest: mustHash(emptyDigest), Size: 2}}
	for _, n := range []string{"cmdline.txt", "rootfs.img"} {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mediaTypeOf(n), Size: 10,
			Digest: mustHash("sha256:" + sumHex([]byte(n))), Annotations: map[string]string{titleKey: n}})
	}
	seed, _ := json.Marshal(m)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, names, err := parseArtifactManifest(data)
		if err != nil {
			var pe *PullError
			if !json.Valid(data) || errorsAs(err, &pe) {
				return
			}
			t.Fatalf("error of another type: %v", err)
		}
		seen := map[string]bool{}
		for _, n := range names {
			if checkFileName(n) != nil || seen[n] {
				t.Fatalf("accepted name %q", n)
			}
			seen[n] = true
		}
	})
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
