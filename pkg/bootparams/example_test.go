package bootparams_test

import (
	"fmt"
	"log"

	"github.com/imagebuilder/imagebuilder/pkg/bootparams"
)

// Fill in a zero page as a loader does, then read it back and name a field
// by its offset.
func ExampleUnmarshal() {
	var bp bootparams.BootParams
	bp.Hdr.Header = bootparams.HeaderMagic
	bp.Hdr.Version = 0x020f
	bp.Hdr.CmdLinePtr = 0x34710a0
	bp.ACPIRSDPAddr = 0xe0000
	if err := bp.SetE820([]bootparams.E820Entry{{Addr: 0x100000, Size: 0x9000, Type: bootparams.E820ACPI}}); err != nil {
		log.Fatal(err)
	}
	page := bp.Marshal()

	back, err := bootparams.Unmarshal(page)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Hdr.HasMagic(), back.Hdr.Protocol())
	fmt.Printf("cmdline at %#x\n", back.CmdLine())
	for _, e := range back.E820() {
		fmt.Printf("%#x-%#x %s\n", e.Addr, e.End(), bootparams.E820TypeName(e.Type))
	}
	fmt.Println(bootparams.FieldName(0x228))
	// Output:
	// true 2.15
	// cmdline at 0x34710a0
	// 0x100000-0x109000 ACPI
	// hdr.cmd_line_ptr
}
