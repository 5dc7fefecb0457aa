package initrd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"

	"github.com/imagebuilder/imagebuilder/pkg/initrd"
)

// Build an initramfs from a description: sources in order, then kernel
// modules (Modules{Dir: ".../lib/modules/VERSION", Names: ...}), then the
// init program with the skeleton the guest init needs.
func ExampleBuild() {
	cfg := initrd.Config{
		Sources: []initrd.Source{
			// Dir{Path: "extra"}, SpecFile{Path: "initrd.spec"},
			// File{Src: "/etc/os-release", Dst: "etc/os-release"} and
			// Image{Sources: ...} (pkg/source) come here.
			initrd.Entry{Path: "etc/hostname", Mode: initrd.TypeReg | 0o644, Data: []byte("pod\n")},
		},
		Init:            initrd.Init{Data: []byte("#!/bin/sh\n"), Skeleton: true},
		Compression:     initrd.None,
		SourceDateEpoch: 0,
	}
	var out bytes.Buffer // a file from internal/atomicfile in a real program
	res, err := initrd.Build(context.Background(), cfg, &out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Size, res.SHA256[:16], res.Compression)
	for _, e := range res.Entries {
		fmt.Println(e.Name)
	}
	// Output:
	// 968 9a3a91d2a372206c none
	// dev
	// dev/console
	// etc
	// etc/hostname
	// init
	// proc
	// sys
}

// Walk reads any initramfs the kernel accepts, as `initrd list` does.
func ExampleWalk() {
	var img bytes.Buffer
	_, err := initrd.Build(context.Background(), initrd.Config{
		Sources:     []initrd.Source{initrd.Entry{Path: "bin/sh", Mode: initrd.TypeSymlink | 0o777, Linkname: "busybox"}},
		Compression: initrd.Zstd,
	}, &img)
	if err != nil {
		log.Fatal(err)
	}
	err = initrd.Walk(context.Background(), &img, func(h *initrd.Header, seg initrd.Segment, _ io.Reader) error {
		fmt.Println(seg.Compression, initrd.FormatEntry(h))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// zstd drwxr-xr-x   2 0        0               0 Jan  1  1970 bin
	// zstd lrwxrwxrwx   1 0        0               7 Jan  1  1970 bin/sh -> busybox
}
