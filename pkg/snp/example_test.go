package snp_test

import (
	"crypto/sha512"
	"fmt"
	"log"

	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// A key-less ID block: anyone can recreate it from the digest and policy,
// and the firmware checks it like any other.
func ExampleKeylessIDAuth() {
	digest := snp.Digest(sha512.Sum384([]byte("a launch")))
	blk := snp.NewIDBlock(digest, 0x30000)
	auth, err := snp.KeylessIDAuth(blk)
	if err != nil {
		log.Fatal(err)
	}
	if err := auth.Verify(blk); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(blk.Marshal()), len(auth.Marshal()))
	fmt.Println(auth.IDKeyDigest())
	// Output:
	// 96 4096
	// 10d991ff54aff32e0e3e7d35e77060c4786c92f4282b7fd1273bbeff5b53545bee8b72c8f8b09e9edfe7aa4c248e3a30
}
