package linuxboot_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
)

// Lay out a kernel, an initrd and a command line as igvmgen does, with
// the Kata settings, and write the IGVM file (here to io.Discard).
func ExampleBuild() {
	ctx := context.Background()
	kernel, err := os.ReadFile("../../../testdata/igvm/inputs/synthetic-bzImage")
	if err != nil {
		log.Fatal(err)
	}
	k, err := linuxboot.ParseBzImage(kernel) // a *linuxboot.BzImageError says what is wrong
	if err != nil {
		log.Fatal(err)
	}
	initrd, err := os.ReadFile("../../../testdata/igvm/inputs/initrd-tiny.cpio.gz")
	if err != nil {
		log.Fatal(err)
	}
	opts := linuxboot.Kata() // --pvalidate-opt --encrypted-page --svme
	opts.Cmdline = "console=ttyS0 panic=-1"
	opts.Initrd = initrd
	img, err := linuxboot.Build(ctx, k, opts)
	if err != nil {
		log.Fatal(err)
	}
	res, err := img.Write(ctx, io.Discard)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Size, res.SHA256)
	fmt.Println("boot_params", res.BootParams, "cmdline", res.Cmdline, "initrd", res.Ramdisk, res.RamdiskSize)
	// Output:
	// 200632 274a9034cd1fff856cc75189dc0c4369e0301255e648d60d028552562f91275a
	// boot_params 0x30020a0 cmdline 0x30030a0 initrd 0x3004000 260
}
