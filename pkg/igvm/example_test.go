package igvm_test

import (
	"bytes"
	"fmt"
	"log"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
)

// Open reads and checks the headers; page data is read only when asked for.
func ExampleOpen() {
	fh, err := os.Open("../../testdata/igvm/d01_kata_clh_short.igvm")
	if err != nil {
		log.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		log.Fatal(err)
	}
	f, err := igvm.Open(fh, st.Size())
	if err != nil {
		log.Fatal(err) // a *igvm.FormatError names the header and its offset
	}
	pages := 0
	for _, h := range f.Directives() {
		switch x := h.(type) {
		case *igvm.PageData:
			pages++
		case *igvm.VPContext:
			fmt.Printf("VMSA of vCPU %d at %#x\n", x.VPIndex, x.GPA)
		}
	}
	fmt.Println(len(f.Headers), "headers,", pages, "pages")
	// Guest memory by address, across pages.
	rsdp := make([]byte, 8)
	if _, err := f.Memory().ReadAt(rsdp, 0xe0000); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", rsdp)
	// Output:
	// VMSA of vCPU 0 at 0x803000
	// 132 headers, 124 pages
	// "RSD PTR "
}

// A Builder writes a canonical file; its data sources are read as it
// writes (no copy of large pages in memory).
func ExampleBuilder() {
	var b igvm.Builder
	b.Add(&igvm.SupportedPlatform{CompatibilityMask: 1, PlatformType: igvm.PlatformSEVSNP, PlatformVersion: 1}, nil)
	b.Add(&igvm.GuestPolicy{Policy: 0x30000, CompatibilityMask: 1}, nil)
	b.Add(&igvm.PageData{GPA: 0x100000, CompatibilityMask: 1}, igvm.Bytes([]byte("hello")))
	var out bytes.Buffer
	n, err := b.WriteTo(&out)
	if err != nil {
		log.Fatal(err)
	}
	f, err := igvm.Parse(out.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "bytes,", len(f.Headers), "headers")
	// Output:
	// 4200 bytes, 3 headers
}
