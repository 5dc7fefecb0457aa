// Package deb reads Debian binary packages (.deb) without dpkg: the ar
// archive (debian-binary, control.tar.*, data.tar.*, each tar compressed
// with xz, zstd, gzip or not at all), the control fields, and a
// streaming walk of data.tar; Extract writes the data tree into a
// directory, Spool keeps it as one spool file read as an fs.FS (SpoolFS),
// and ExtractKernel and ExtractKernelFS take the kernel and its modules
// out of a linux-image package in either form.
//
// Packages are hostile input. Every entry name is checked before it is
// used: absolute names, ".." elements, entries below a symlink or a file,
// hard links to anything but an earlier regular file, duplicates and
// device nodes are refused with an InsecurePathError or a FormatError,
// and extraction goes through an os.Root, so nothing is ever written
// outside the target directory; a SpoolFS follows symlinks inside the
// package tree only. Work and memory follow the bytes really
// present: declared sizes are checked against the file and never
// allocated; an xz dictionary is bounded by MaxXZDict.
package deb
