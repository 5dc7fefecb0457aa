// Package podvm is the PodVMImage: one file that describes a whole pod-VM
// image (kernel, initrd, root file system, command line, IGVM, launch
// measurements, ID blocks), and the pipeline that builds it.
//
// This file set holds the configuration: the types, their defaults,
// strict loading (an unknown field, a wrong type or a bad value is one
// *Error naming the file, line and field path) and validation. See
// docs/config.md for every field.
//
//	cfg, err := podvm.Load("podvm.yaml", podvm.LoadOptions{CacheDir: cache})
//	full := cfg.Defaulted()           // every default filled in
//	b, err := podvm.CanonicalJSON(full) // stable bytes for the manifest and cache keys
package podvm
