package podvm_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// Load the demo config: paths come back resolved against the file's
// directory and the cache, defaults fill the rest.
func ExampleLoad() {
	epoch := int64(1700000000) // as if SOURCE_DATE_EPOCH were set
	cfg, err := podvm.Load("../../examples/podvm.yaml", podvm.LoadOptions{
		CacheDir:        "/var/cache/imagebuilder",
		SourceDateEpoch: &epoch,
	})
	if err != nil {
		log.Fatal(err)
	}
	full := cfg.Defaulted()
	s := full.Spec
	fmt.Println(s.Kernel.Deb.Written)
	fmt.Println(s.Kernel.Deb.Resolved)
	fmt.Println(s.Kernel.Modules, s.Initrd.Compression, s.Rootfs.Seed, s.Cmdline.Root)
	fmt.Println(*s.SourceDateEpoch, "from the", cfg.Source.SourceDateEpochFrom)
	fmt.Println("IGVM layout", s.IGVM.Layout.Kind)
	for _, t := range s.Measurements.Targets {
		fmt.Println(t.Name, t.Platform)
	}
	r := s.Runtime // the node payload's settings, pkg/payload's defaults filled in
	fmt.Println(r.Target, r.HandlerPrefix, r.Platform, r.InstallPrefix, r.ContainerdConfigVersion)
	// Output:
	// ${IMAGEBUILDER_CACHE}/debian-kernel/linux-image-amd64.deb
	// /var/cache/imagebuilder/debian-kernel/linux-image-amd64.deb
	// [virtio_pci virtio_blk dm-verity erofs] zstd demo ibroot
	// 1700000000 from the environment
	// IGVM layout mshv
	// aks-clh-snp igvm-mshv
	// aks-clh-snp contrast-cc- aks-clh-snp /opt/@@runtimeName@@/ 2
}

// A config error names the file, the line and the field.
func ExampleParse() {
	_, err := podvm.Parse([]byte(`apiVersion: imagebuilder/v1alpha1
kind: PodVMImage
metadata: {name: demo}
spec:
  kernel: {deb: k.deb}
  rootfs:
    agent: kata-agent
    sources:
      - oci-layout:debian
      - oci:ubuntu
`), "podvm.yaml", "/src", podvm.LoadOptions{})
	fmt.Println(err)
	// Output:
	// podvm.yaml:10: spec.rootfs.sources[1]: unknown scheme "oci"; write oci-layout:DIR for an OCI image layout directory, oci-archive:FILE for a tar of one
}

// The canonical JSON of a part of the config, as a stage cache key hashes
// it.
func ExampleCanonicalJSON() {
	cfg, err := podvm.Load("../../examples/podvm.yaml", podvm.LoadOptions{CacheDir: "/cache"})
	if err != nil {
		log.Fatal(err)
	}
	b, err := podvm.CanonicalJSON(cfg.Defaulted().Spec.Cmdline)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output:
	// {"parameters":["console=ttyS0","panic=-1"],"root":"ibroot"}
}

// Build the small reproducibility config into a fresh directory and print
// its launch digests (the same on every machine).
func ExampleBuild() {
	cfg, err := podvm.Load("testdata/repro/podvm.yaml", podvm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	m, err := podvm.Build(context.Background(), cfg, podvm.BuildOptions{
		Output: filepath.Join(dir, "out"),
		Tool:   podvm.Tool{Name: "example", Version: "1", Revision: "r"},
	})
	if err != nil {
		log.Fatal(err) // a *podvm.StageError names the stage and the field
	}
	fmt.Println(m.Rootfs.Verity.RootHash)
	for _, t := range m.Targets {
		for _, d := range t.Digests[:1] {
			fmt.Println(t.Name, d.CPU, d.VCPUs, d.Digest.String()[:32])
		}
	}
	// Output:
	// e6affe9874c27f2f17f59ca63311ee8fc9837ea3558253c8fd08bbc7aac943f4
	// aks-clh-snp  0 76fc6feb7420a2a256aac28a2027ed1e
	// metal-qemu-snp EPYC-Milan 1 c02cdc2730baacb88563e40ccfacbbb2
}
