// Package linuxboot lays out a Linux bzImage, an initrd, a kernel command
// line and ACPI tables as the initial guest memory of a direct SEV-SNP boot,
// page for page as Microsoft igvm-tooling's igvmgen does (boot mode x64), so
// that an IGVM file made from the result has the same launch digest as the
// one igvmgen makes from the same inputs.
//
// Options.Layout selects the hypervisor loader: LayoutMSHV (the default)
// is igvmgen's layout below; LayoutKVM, for QEMU (>= 10.1) on KVM, is the
// same guest memory without the parameter and VMSA pages at 0x802000 and
// 0x803000, with vCPU 0's VP context last, at KVMVMSAGPA, holding the
// register values KVM measures (see LayoutKVM).
// pkg/measure's CheckLayout says which measurement profile each kind
// satisfies.
//
// The guest memory, in ascending GPA order:
//
//	[0 or 0xA0000, ACPI end)  ACPI pages, RSDP at 0xE0000, XSDT at 0x100000
//	0x800000                  CPUID page
//	0x801000                  secrets page
//	0x802000                  parameter area (VP count, memory map; mshv)
//	0x803000                  VMSA of vCPU 0 (mshv; kvm: at KVMVMSAGPA)
//	pref_address ...          the protected-mode kernel (vmlinux.bin), with
//	                          pvalidate-opt only its pages, the boot stack and
//	                          the early page tables, else all of init_size
//	P = pref_address+init_size
//	P, P+0x1000               identity-map PML4 and PDPT (1 GiB pages)
//	P+0x2000                  TSS (104 bytes), then the GDT (56 bytes)
//	P+0x20A0                  boot_params (the zero page), then the command
//	                          line and a NUL
//	page aligned              the initrd, then a 4 KiB stack and the SEV
//	                          cc_blob, both unaligned
//
// Build computes this layout into an Image (a list of pages that refer to the
// kernel and initrd bytes without copying them, and the initial VMSA), and
// Image.Write writes it as an IGVM file and returns a Result (what "igvm
// build --json" prints). ParseBzImage checks the kernel's setup header (a
// *BzImageError names the field at fault), Build the combination of inputs
// (a *LayoutError names the input); the ACPI functions make the ACPI pages
// from compiled tables, from a pages file, or from the built-in default.
// The zero page is a pkg/bootparams struct.
package linuxboot
