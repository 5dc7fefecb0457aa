package measure_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/measure"
)

// The launch digest of an IGVM file as cloud-hypervisor on Microsoft's
// hypervisor (mshv) measures it: here igvm-tooling's vector d01, whose ID
// block igvmgen signed with this digest.
func ExampleMeasureIGVM() {
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
		log.Fatal(err)
	}
	res, err := measure.MeasureIGVM(context.Background(), f, measure.Options{Profile: measure.ProfileMSHV})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Digest)
	fmt.Println(res.Pages, "pages, policy", res.Policy)
	// Output:
	// 83b61499f9c1ef2627211cd295bedff977cf2cbebf5d6d1f00df82210636a243840c40d3aba3de2e21be5d6daf578e14
	// 126 pages, policy 0x3001f (ABI >= 0.31, SMT RESERVED_1)
}

// A Linux direct boot laid out for QEMU + KVM (linuxboot.LayoutKVM), and
// its digests under the kvm profile, which depend on the vCPU count and
// model: every vCPU after the first adds a VMSA KVM builds from QEMU's
// reset state with the model's signature. The file passes QEMU's and KVM's
// checks and holds the VMSA KVM measures. (The kvm digests follow the QEMU
// and Linux sources; no attestation report has confirmed them yet.)
func ExampleMeasureIGVM_kvm() {
	ctx := context.Background()
	kdata, err := os.ReadFile("../../testdata/igvm/inputs/synthetic-bzImage")
	if err != nil {
		log.Fatal(err)
	}
	k, err := linuxboot.ParseBzImage(kdata)
	if err != nil {
		log.Fatal(err)
	}
	img, err := linuxboot.Build(ctx, k, linuxboot.Options{Layout: linuxboot.LayoutKVM, Cmdline: "console=ttyS0"})
	if err != nil {
		log.Fatal(err)
	}
	var file bytes.Buffer // a file, in a real program
	if _, err := img.Write(ctx, &file); err != nil {
		log.Fatal(err)
	}
	f, err := igvm.Parse(file.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	genoa, err := measure.LookupCPU("genoa")
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range []int{1, 4} {
		res, err := measure.MeasureIGVM(ctx, f, measure.Options{Profile: measure.ProfileKVM, VCPUs: n, CPU: &genoa})
		if err != nil {
			log.Fatal(err) // a *measure.KVMCheckError names the rules a file breaks
		}
		fmt.Println(n, res.Digest, len(res.VMSAChanges))
	}
	// Output:
	// 1 bedbee5320fd3314a783b9b6fdd08caa2c4dbd55f1a73a8e07c2fa8dd33f79541a00de040b5130bc4280f6bb5ae5cb7a 0
	// 4 8db30a1f51881a34a8c48c975054b583db6f5e52f009be2af72b7dd20691911624035f407ad559b6150a09813cf003ad 0
}

// An OVMF boot with a measured direct kernel boot (QEMU -kernel), as
// sev-snp-measure computes it: its vector dev05.
func ExampleMeasureOVMF() {
	ctx := context.Background()
	fw, err := measure.ReadOVMF("../../testdata/measure/ovmf/ovmf_AmdSev_suffix.bin")
	if err != nil {
		log.Fatal(err)
	}
	kernel, err := os.Open("../../testdata/measure/ovmf/kernel-synthetic.bin")
	if err != nil {
		log.Fatal(err)
	}
	defer kernel.Close()
	kh, err := measure.HashKernel(ctx, kernel, nil, "")
	if err != nil {
		log.Fatal(err)
	}
	genoa, err := measure.LookupCPU("EPYC-Genoa")
	if err != nil {
		log.Fatal(err)
	}
	m, err := measure.MeasureOVMF(ctx, fw, measure.OVMFConfig{
		VCPUs: 2, VCPUSig: genoa.Signature, GuestFeatures: 0x1, VMM: measure.VMMQEMU, Kernel: &kh,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Digest)
	// Output:
	// 8bc55176d760fe2bc380e6b80f4617e705585b479fc9f261c7f0eff1e4244c6bd46138ffeacf9b94a36c86ab6fdb4a26
}

// Sign an IGVM file without a key (a fixed signature and a recovered ID
// key, so anyone can recreate it) and write the signed file.
func ExampleSignIGVM() {
	ctx := context.Background()
	data, err := os.ReadFile("../../testdata/igvm/d03_clh_empty_cpio.igvm")
	if err != nil {
		log.Fatal(err)
	}
	f, err := igvm.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	s, err := measure.SignIGVM(ctx, f, measure.IGVMSignOptions{Measure: measure.Options{Profile: measure.ProfileMSHV}})
	if err != nil {
		log.Fatal(err)
	}
	var out bytes.Buffer // a file, in a real program
	if _, err := s.WriteIGVM(ctx, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Println("digest", s.Digest)
	fmt.Println("id key digest", s.IDKeyDigest)
	// Output:
	// digest 0889411978c7873d9c823f3d9e53b1341c55f6ca9f667797602446c0756e8d575aa6a6451e1cb98d598bd9f78eab0e6d
	// id key digest 4009fd6aa5d0ac08cb27a33cacbb7d1108b19790beac3b9c4c7e869e2a5e2ec7a1ccd6cf43cc14131e6e2916a02b5cfc
}

// Reference values: what an attestation service should accept, per
// profile, CPU model and vCPU count. A profile the file's layout cannot
// satisfy is skipped, with the reason.
func ExampleComputeReferenceValues() {
	data, err := os.ReadFile("../../testdata/igvm/d01_kata_clh_short.igvm")
	if err != nil {
		log.Fatal(err)
	}
	f, err := igvm.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	milan, _ := measure.LookupCPU("milan")
	rv, err := measure.ComputeReferenceValues(context.Background(), f, measure.RefSpec{
		CPUs: []measure.CPUModel{milan}, VCPUs: []int{1, 2},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range rv.Entries {
		fmt.Println(e.Profile, e.Digest)
	}
	for _, s := range rv.Skipped {
		fmt.Println("skipped", s.Profile)
	}
	// Output:
	// mshv 83b61499f9c1ef2627211cd295bedff977cf2cbebf5d6d1f00df82210636a243840c40d3aba3de2e21be5d6daf578e14
	// skipped kvm
}

// A build pipeline checks, before it builds, that the IGVM layout it will
// make can satisfy each measurement target: igvmgen's layout cannot
// launch under QEMU + KVM.
func ExampleCheckLayout() {
	for _, k := range linuxboot.LayoutKinds {
		for _, p := range measure.Profiles {
			err := measure.CheckLayout(k, p)
			var pe *measure.ProfileError
			fmt.Println(k, p, err == nil, errors.As(err, &pe))
		}
	}
	fmt.Println(measure.LayoutProfiles(linuxboot.LayoutKVM))
	// Output:
	// mshv mshv true false
	// mshv kvm false true
	// kvm mshv false true
	// kvm kvm true false
	// [kvm]
}
