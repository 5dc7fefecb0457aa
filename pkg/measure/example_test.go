package measure_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"

	"github.com/imagebuilder/imagebuilder/pkg/igvm"
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

// The kvm profile depends on the vCPU count and model: every vCPU after
// the first adds a VMSA built by KVM from the model's reset state.
func ExampleMeasureIGVM_kvm() {
	data, err := os.ReadFile("../../testdata/measure/kvm-ready.igvm")
	if err != nil {
		log.Fatal(err)
	}
	genoa, err := measure.LookupCPU("genoa")
	if err != nil {
		log.Fatal(err)
	}
	res, err := measure.MeasureIGVMFile(context.Background(), bytes.NewReader(data), int64(len(data)),
		measure.Options{Profile: measure.ProfileKVM, VCPUs: 4, CPU: &genoa})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Digest)
	// Output:
	// 3f9b9c5d1bf5e06182693ea1b49370b8f37a11820e2359993ab43f5a9f804c8c436394e7061d0dffe55cc6a66d720553
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
