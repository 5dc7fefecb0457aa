// Command library builds a pod VM's root disk, initrd and IGVM file and
// measures the IGVM through the imagebuilder packages alone, without the
// imagebuilder command: what `imagebuilder rootfs build`, `initrd build`,
// `igvm build --kata` and `measure igvm` do, as one Go program. Its test
// checks that it writes the same bytes as those commands.
//
//	library -source tar:base.tar -agent kata-agent -init guest-init \
//	    -kernel vmlinuz -seed demo -o out/
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/initrd"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/rootfs"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// Inputs are the program's inputs.
type Inputs struct {
	Source  string // a source in pkg/source's syntax
	Agent   string // the kata-agent binary
	Init    string // the guest init, /init of the initrd
	Kernel  string // a bzImage
	Seed    string
	Cmdline string // base kernel parameters; the root fragment is appended
	Policy  snp.GuestPolicy
	Out     string // output directory: rootfs.img, initrd.img, podvm.igvm
}

// build writes the three artifacts and returns the IGVM's mshv launch
// digest.
func build(ctx context.Context, in Inputs) (measure.Digest, error) {
	var none measure.Digest
	src, err := source.Parse(in.Source)
	if err != nil {
		return none, err
	}

	// The root disk: erofs + dm-verity in a GPT.
	disk, err := os.Create(filepath.Join(in.Out, "rootfs.img"))
	if err != nil {
		return none, err
	}
	defer disk.Close()
	desc, err := rootfs.Build(ctx, rootfs.Options{Sources: []source.Source{src}, Agent: in.Agent, Seed: in.Seed}, disk)
	if err != nil {
		return none, err
	}

	// The initrd: the guest init with the skeleton it needs.
	rd, err := os.Create(filepath.Join(in.Out, "initrd.img"))
	if err != nil {
		return none, err
	}
	defer rd.Close()
	if _, err := initrd.Build(ctx, initrd.Config{Init: initrd.Init{Path: in.Init, Skeleton: true}}, rd); err != nil {
		return none, err
	}
	initrdData, err := os.ReadFile(rd.Name())
	if err != nil {
		return none, err
	}

	// The IGVM file: kernel, initrd and the command line that names the
	// root hash, laid out as Kata builds it.
	kernel, err := os.ReadFile(in.Kernel)
	if err != nil {
		return none, err
	}
	k, err := linuxboot.ParseBzImage(kernel)
	if err != nil {
		return none, err
	}
	opts := linuxboot.Kata()
	opts.Cmdline = in.Cmdline + " " + desc.Cmdline.IBRoot
	opts.Initrd = initrdData
	opts.Policy = in.Policy
	img, err := linuxboot.Build(ctx, k, opts)
	if err != nil {
		return none, err
	}
	f, err := os.Create(filepath.Join(in.Out, "podvm.igvm"))
	if err != nil {
		return none, err
	}
	defer f.Close()
	if _, err := img.Write(ctx, f); err != nil {
		return none, err
	}
	st, err := f.Stat()
	if err != nil {
		return none, err
	}

	// The launch digest under cloud-hypervisor on Microsoft's hypervisor.
	res, err := measure.MeasureIGVMFile(ctx, f, st.Size(), measure.Options{Profile: measure.ProfileMSHV})
	if err != nil {
		return none, err
	}
	return res.Digest, nil
}

func main() {
	var in Inputs
	policy := uint64(0x30000)
	flag.StringVar(&in.Source, "source", "", "the root file system's source")
	flag.StringVar(&in.Agent, "agent", "", "the kata-agent binary")
	flag.StringVar(&in.Init, "init", "", "the guest init")
	flag.StringVar(&in.Kernel, "kernel", "", "the bzImage")
	flag.StringVar(&in.Seed, "seed", "library-example", "the seed of the disk's UUIDs and verity salt")
	flag.StringVar(&in.Cmdline, "cmdline", "console=ttyS0 panic=-1", "base kernel parameters")
	flag.Uint64Var(&policy, "policy", policy, "SEV-SNP guest policy")
	flag.StringVar(&in.Out, "o", ".", "output directory")
	flag.Parse()
	in.Policy = snp.GuestPolicy(policy)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	d, err := build(ctx, in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "library:", err)
		os.Exit(1)
	}
	fmt.Printf("%x\n", d[:])
}
