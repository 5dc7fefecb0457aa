package source_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

func ExampleParse() {
	for _, s := range []string{
		"oci-layout:./base:latest",
		"ghcr.io/org/app:v1",
		"tar:rootfs.tar.zst",
	} {
		src, err := source.Parse(s)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: kind %s, path %q, repository %q, tag %q\n", src, src.Kind, src.Path, src.Repository, src.Tag)
	}
	_, err := source.Parse("oci:./base")
	fmt.Println(err)
	// Output:
	// oci-layout:./base:latest: kind oci-layout, path "./base", repository "", tag "latest"
	// ghcr.io/org/app:v1: kind registry, path "", repository "ghcr.io/org/app", tag "v1"
	// tar:rootfs.tar.zst: kind tar, path "rootfs.tar.zst", repository "", tag ""
	// source "oci:./base": unknown scheme "oci"; write oci-layout:DIR for an OCI image layout directory, oci-archive:FILE for a tar of one
}

func ExampleSource_Pin() {
	src, _ := source.Parse("ghcr.io/org/app:v1")
	// The digest a build resolved the tag to (Resolved.ManifestDigest).
	pinned, err := src.Pin("sha256:4f8b1a6f0c1e5e4a0a33e2b1a2b0c9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pinned)
	// Output:
	// ghcr.io/org/app@sha256:4f8b1a6f0c1e5e4a0a33e2b1a2b0c9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2
}

// writeExampleTar writes a two-file tar for the examples.
func writeExampleTar(dir string) string {
	p := filepath.Join(dir, "base.tar")
	f, err := os.Create(p)
	if err != nil {
		log.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range []struct{ name, body string }{{"etc/os-release", "ID=example\n"}, {"etc/hostname", "pod\n"}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	f.Close()
	return p
}

func ExampleFlatten() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	base, err := source.Parse("tar:" + writeExampleTar(dir))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// A layer of our own goes on top of the source.
	flat, err := source.Flatten(ctx, []source.Source{base}, source.Options{Upper: []source.Upper{{
		Name:    "extras",
		Entries: []source.Entry{{Path: "etc/motd", Mode: source.ModeRegular | 0o644, Data: []byte("hello\n")}},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("resolved:", flat.Sources[0].Kind, "sha256", flat.Sources[0].SHA256[:12])
	// Contents come in layer order, each file once.
	err = flat.Contents(ctx, func(i int, r io.Reader) error {
		b, err := io.ReadAll(r)
		fmt.Printf("%s %o %q\n", flat.Entries[i].Path, flat.Entries[i].Mode, b)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// resolved: tar sha256 b450f02d6a38
	// etc/os-release 100644 "ID=example\n"
	// etc/hostname 100644 "pod\n"
	// etc/motd 100644 "hello\n"
}
