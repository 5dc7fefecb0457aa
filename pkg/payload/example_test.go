package payload_test

import (
	"fmt"

	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

// The handler name of a QEMU payload from the sha256 of its installed
// files (paths relative to the install prefix, the Kata configuration in
// template form).
func ExampleHandlerName() {
	files := []payload.HashedFile{
		{Path: "share/rootfs.img", SHA256: "09b822bd5250f3b2b0619983eb1585a0ddd5bcd4202f68520c13b05fba611109"},
		{Path: "share/vmlinuz", SHA256: "52d9a93d4b31e4377836aae713a101a17e4d144b4a00b1f5b972e31138073efc"},
		{Path: "share/initrd.img", SHA256: "10f7d8458e00d89f63192ebb0162acc63482dc278232bf5ffd119164312d93ee"},
		{Path: "share/OVMF.fd", SHA256: "24b033877da428f75a3d0f31e879e1764e84aefd2c580910673f717a08469100"},
		{Path: "etc/configuration-qemu.toml", SHA256: "9b106d635dd523e3b6aa1468a789fea7376e123a97d6eecc7c84ced652662946"},
	}
	name, err := payload.HandlerName("contrast-cc-", "metal-qemu-snp", files)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(name)
	// Output: contrast-cc-metal-qemu-snp-d632d030
}
