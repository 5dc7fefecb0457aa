package verity_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imagebuilder/imagebuilder/pkg/verity"
)

// exampleData is 1 MiB of data that every example hashes.
func exampleData() []byte { return bytes.Repeat([]byte("imagebuilder"), 1<<20/12+1)[:1<<20] }

// Format the data of a file into a hash file, as `veritysetup format`
// does, with the salt and UUID derived from a seed.
func ExampleFormat() {
	dir, _ := os.MkdirTemp("", "verity-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "rootfs.img"), exampleData(), 0o644)

	data, err := os.Open(filepath.Join(dir, "rootfs.img"))
	if err != nil {
		log.Fatal(err)
	}
	defer data.Close()
	st, _ := data.Stat()
	hash, err := os.Create(filepath.Join(dir, "rootfs.verity"))
	if err != nil {
		log.Fatal(err)
	}
	defer hash.Close()

	p := verity.DefaultParams()
	p.Salt = verity.SaltFromSeed([]byte("build-42"))
	p.UUID = verity.UUIDFromSeed([]byte("build-42"))
	res, err := verity.Format(context.Background(), data, st.Size(), hash, p)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("root hash:", res.RootHashHex())
	fmt.Println("hash device:", res.HashDeviceSize(), "bytes")
	fmt.Println(res.DMModCreate("root", "/dev/vda1", "/dev/vda2"))
	// (veritysetup 2.6.1 format with that salt gives the same root hash.)

	// Output:
	// root hash: dd61f9eb40eb180d87dc89ea0d13c4cccc34b9c15aa262ba3ffdca57540bf560
	// hash device: 16384 bytes
	// dm-mod.create="root,,,ro,0 2048 verity 1 /dev/vda1 /dev/vda2 4096 4096 256 1 sha256 dd61f9eb40eb180d87dc89ea0d13c4cccc34b9c15aa262ba3ffdca57540bf560 e02a470c563227aa9261567197fe5df71641e857c4803fbbeff7748782d66a94"
}

// Verify data against its hash tree and root hash, as `veritysetup verify`
// does; the parameters come from the superblock. A changed byte is named
// by a *verity.CorruptError.
func ExampleVerify() {
	data := exampleData()
	var hash memFile
	res, err := verity.Format(context.Background(), bytes.NewReader(data), int64(len(data)), &hash, verity.DefaultParams())
	if err != nil {
		log.Fatal(err)
	}

	checked, err := verity.Verify(context.Background(), bytes.NewReader(data), int64(len(data)),
		bytes.NewReader(hash.b), res.RootHash, verity.VerifyOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(checked.DataBlocks, "data blocks match", checked.RootHashHex())

	data[123456] ^= 1
	_, err = verity.Verify(context.Background(), bytes.NewReader(data), int64(len(data)),
		bytes.NewReader(hash.b), res.RootHash, verity.VerifyOptions{})
	var corrupt *verity.CorruptError
	if errors.As(err, &corrupt) {
		fmt.Println("corrupt data block:", corrupt.Block)
	}
	fmt.Println(err)
	// Output:
	// 256 data blocks match 924932f5cb3a3eda6c7d26a0b7e9aeb2dcec7d71efec590b911e19a8e6fb1521
	// corrupt data block: 30
	// verity: data block 30 is corrupt: it does not match its hash in the tree
}

// Append the hash area to the file that holds the data (data and hash on
// one device, as `veritysetup format disk.img disk.img` does): the hash
// area is computed first and the file only grows in the final step.
func ExampleFormatAppended() {
	dir, _ := os.MkdirTemp("", "verity-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.img")
	os.WriteFile(path, exampleData(), 0o644)

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	p := verity.DefaultParams()
	p.NoSuperblock = true // HashOffset 0: right after the data
	res, err := verity.FormatAppended(context.Background(), f, p)
	if err != nil {
		log.Fatal(err)
	}
	st, _ := f.Stat()
	fmt.Println("hash area at", res.Params.HashOffset, "file now", st.Size(), "bytes")
	fmt.Println(res.Table("/dev/vda1", "/dev/vda1"))

	// Verify the file against itself: the data blocks end where the
	// hash area starts.
	if _, err := verity.Verify(context.Background(), f, st.Size(), f, res.RootHash, verity.VerifyOptions{Params: res.Params}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified")
	// Output:
	// hash area at 1048576 file now 1060864 bytes
	// 0 2048 verity 1 /dev/vda1 /dev/vda1 4096 4096 256 256 sha256 924932f5cb3a3eda6c7d26a0b7e9aeb2dcec7d71efec590b911e19a8e6fb1521 -
	// verified
}

// memFile is an in-memory io.WriterAt.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}
