package podvm

// ContrastPlatforms are Contrast's names of the target platforms, as its
// reference values carry them (the runtime handler names are
// pkg/payload's: HandlerName).
var ContrastPlatforms = map[string]string{
	PlatformIGVMMSHV: "AKS-CLH-SNP",
	PlatformQEMUOVMF: "Metal-QEMU-SNP",
	PlatformIGVMKVM:  "Metal-QEMU-SNP-IGVM",
}
