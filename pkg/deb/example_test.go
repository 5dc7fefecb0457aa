package deb_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/deb"
)

// Open a package and read its control fields.
func ExampleOpenFile() {
	p, f, err := deb.OpenFile(context.Background(), "testdata/hello_1.0-1_amd64.deb")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println(p.Control.Package(), p.Control.Version(), p.Control.Architecture())
	deps, err := p.Control.Depends()
	if err != nil {
		log.Fatal(err)
	}
	for _, alts := range deps {
		r := alts[0]
		if r.Op != "" {
			fmt.Printf("depends on %s (%s %s)\n", r.Name, r.Op, r.Version)
		} else {
			fmt.Println("depends on", r.Name)
		}
	}
	fmt.Println("data:", p.DataMember.Name)
	// Output:
	// hello 1.0-1 amd64
	// depends on libc6 (>= 2.36)
	// depends on foo
	// data: data.tar.xz
}

// Walk the data tree without writing it anywhere.
func ExamplePackage_Walk() {
	p, f, err := deb.OpenFile(context.Background(), "testdata/hello_1.0-1_amd64.deb")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	err = p.Walk(context.Background(), deb.WalkOptions{}, func(e *deb.Entry, r io.Reader) error {
		if e.Type == deb.TypeSymlink {
			fmt.Println(e.Mode, e.Path, "->", e.Linkname)
		} else {
			fmt.Println(e.Mode, e.Path, e.Size)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// drwxr-xr-x usr 0
	// drwxr-xr-x usr/bin 0
	// -rwxr-xr-x usr/bin/hello 21
	// Lrwxrwxrwx usr/bin/hi -> hello
}

// Take the kernel and its modules out of a linux-image package.
func ExampleExtractKernel() {
	ctx := context.Background()
	p, f, err := deb.OpenFile(ctx, "testdata/linux-image-1.0.0-test_1.0-1_amd64.deb")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "kernel")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	k, err := deb.ExtractKernel(ctx, p, filepath.Join(dir, "k"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k.Package, k.Version, k.Release, k.Files, "files")
	fmt.Println("vmlinuz sha256", k.VmlinuzSHA256[:16])
	rel, _ := filepath.Rel(dir, k.ModulesDir)
	fmt.Println("modules in", rel)
	// Output:
	// linux-image-1.0.0-test 1.0-1 1.0.0-test 2 files
	// vmlinuz sha256 b2b970a52e30f100
	// modules in k/lib/modules/1.0.0-test
}
