// Package diff explains the differences between two artifacts of a pod VM
// image in terms of what they mean, not of their bytes: two root disks by
// their partition tables, verity parameters and the files of their erofs
// (type, mode, owner, content with the first differing offset, xattrs, link
// target, hard links); two IGVM files by their headers, their guest pages by
// GPA with the region each belongs to (kernel, initrd, command line,
// boot_params field, ACPI table, CPUID page entry), their VMSA registers and
// their launch digests; two initrds by their entries and module load order;
// two JSON documents (manifest.json, reference-values.json, ID blocks) by
// their fields; two output directories file by file.
//
// Compare takes two artifacts of one kind, detected from their content
// (Detect), ComparePaths two files or two directories. The Result lists
// every Difference with the section of the artifact it is in, what differs
// (a path, a field, a GPA range), both values and what it means. A
// difference that follows from others (a root hash, a partition size, a
// launch digest, an IGVM checksum) is marked Derived, so a caller sees the
// causes first; "Identical" always means byte for byte.
//
// Everything is read through io.ReaderAt and streamed: two root disks are
// walked in step, in path order, each file's content read once, side by
// side, never a whole image in memory. Work and memory follow the real size
// of the inputs; a malformed artifact is an *InputError naming it, wrapping
// the reader's own error (*gpt.FormatError, *erofs.FormatError,
// *igvm.FormatError, *initrd.FormatError, ...).
package diff
