package audit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/audit"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// buildExample builds pkg/podvm's reproducibility config into dir/out.
func buildExample(dir string) string {
	cfg, err := podvm.Load("../podvm/testdata/repro/podvm.yaml", podvm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if _, err := podvm.Build(context.Background(), cfg, podvm.BuildOptions{Output: out,
		Tool: podvm.Tool{Name: "example", Version: "1", Revision: "r"}}); err != nil {
		log.Fatal(err)
	}
	return out
}

// Verify an output directory, link by link; the qemu-ovmf target's
// digests need its firmware.
func ExampleVerify() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := buildExample(dir)
	rep, err := audit.Verify(context.Background(), audit.Artifacts{Dir: out},
		audit.Options{Firmware: []string{"../podvm/testdata/repro/ovmf_AmdSev_suffix.bin"}})
	if err != nil {
		log.Fatal(err) // the artifacts could not be listed at all
	}
	for _, l := range rep.Links {
		fmt.Println(l.Number, l.Name, l.Status)
	}
	fmt.Println("ID key", rep.Links[5].Keys[0].IDKeyDigest.String()[:16])
	fmt.Println("ok:", rep.OK)
	// Output:
	// 1 outputs ok
	// 2 rootfs ok
	// 3 cmdline ok
	// 4 payload ok
	// 5 launch_digest ok
	// 6 id_block ok
	// 7 handler ok
	// ID key af505bae611515b0
	// ok: true
}

// Rebuild the config as the published build did and compare.
func ExampleReproduce() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := buildExample(dir)
	cfg, err := podvm.Load("../podvm/testdata/repro/podvm.yaml", podvm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	r, err := audit.Reproduce(context.Background(), cfg, out, audit.ReproduceOptions{
		Tool: podvm.Tool{Name: "example", Version: "1", Revision: "r"}})
	if err != nil {
		log.Fatal(err) // the rebuild failed, or the kernel file is not the published build's
	}
	if !r.Identical {
		r.First.Explanation.WriteText(os.Stdout) // the first stage that differs
	}
	fmt.Println(len(r.Artifacts), "artifacts, identical:", r.Identical)
	// Output:
	// 15 artifacts, identical: true
}
