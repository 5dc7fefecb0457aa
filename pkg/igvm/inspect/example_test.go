package inspect_test

import (
	"fmt"
	"log"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/inspect"
)

// Inspect describes a file igvm.Open accepted: its platforms, guest policy,
// directives, VMSAs, the Linux boot it sets up and its ID block. The
// Report is what `imagebuilder igvm inspect --json` prints; WriteText
// writes the text form.
func ExampleInspect() {
	fh, err := os.Open("../../../testdata/igvm/d01_kata_clh_short.igvm")
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
		log.Fatal(err) // a *igvm.FormatError
	}
	r, err := inspect.Inspect(f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Platforms[0].Type, "policy", r.Policies[0].Value)
	fmt.Printf("vCPU 0 at %v, rip %v\n", r.VMSAs[0].GPA, r.VMSAs[0].Registers["rip"])
	fmt.Println("ID block:", r.IDBlock != nil)
	// Output:
	// SEV_SNP policy 0x3001f
	// vCPU 0 at 0x803000, rip 0x1a00200
	// ID block: true
}
