package rootfs_test

import (
	"archive/tar"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

func ExampleBuild() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	// A one-file base image as a tar, and a stand-in agent.
	base := filepath.Join(dir, "base.tar")
	f, _ := os.Create(base)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "etc/os-release", Mode: 0o644, Size: 11, Typeflag: tar.TypeReg})
	tw.Write([]byte("ID=example\n"))
	tw.Close()
	f.Close()
	agent := filepath.Join(dir, "kata-agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)

	src, err := source.Parse("tar:" + base)
	if err != nil {
		log.Fatal(err)
	}
	disk, err := os.Create(filepath.Join(dir, "rootfs.img"))
	if err != nil {
		log.Fatal(err)
	}
	defer disk.Close()
	desc, err := rootfs.Build(context.Background(), rootfs.Options{
		Sources:         []source.Source{src},
		Agent:           agent,
		Files:           []source.File{{Src: base, Dst: "/etc/base.tar", Mode: source.Perm(0o600)}},
		Seed:            "example",
		SourceDateEpoch: 0,
	}, disk)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("disk size:", desc.DiskSize)
	fmt.Println("root hash:", desc.Verity.RootHash)
	fmt.Println("source sha256:", desc.Sources[0].SHA256)
	fmt.Println("agent sha256:", desc.Agent.SHA256)
	for _, f := range desc.AddedFiles {
		fmt.Printf("added %s %o %s\n", f.Path, f.Mode, f.SHA256)
	}
	// Output:
	// disk size: 1089536
	// root hash: 7863de3d11d771ca8c9eb0ddd03555fc94e13c1b22b33d1eb851da775435ff80
	// source sha256: 0c5ca23b461a289f9499f26c44ed9edd911f3a429cf7a62149cfc90335e6e351
	// agent sha256: a8076d3d28d21e02012b20eaf7dbf75409a6277134439025f282e368e3305abf
	// added /etc/base.tar 100600 0c5ca23b461a289f9499f26c44ed9edd911f3a429cf7a62149cfc90335e6e351
}
