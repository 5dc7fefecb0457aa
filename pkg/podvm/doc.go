// Package podvm is the PodVMImage: one file that describes a whole pod-VM
// image (kernel, initrd, root file system, command line, IGVM, launch
// measurements, ID blocks), and the pipeline that builds it.
//
// The configuration: the types, their defaults, strict loading (an
// unknown field, a wrong type or a bad value is one *Error naming the
// file, line and field path) and validation; docs/config.md describes
// every field.
//
//	cfg, err := podvm.Load("podvm.yaml", podvm.LoadOptions{CacheDir: cache})
//	full := cfg.Defaulted()             // every default filled in
//	b, err := podvm.CanonicalJSON(full) // stable bytes for the manifest and cache keys
//
// The pipeline: Build runs the stages (kernel, sources → rootfs, initrd
// beside it, command line, IGVM in the layout spec.igvm.layout.kind
// names, launch digests, ID blocks, and with spec.runtime the node
// payload of pkg/payload) as typed calls of the stage packages, each
// reused from the stage cache when its inputs are unchanged, and
// publishes the output directory with its manifest.json (Manifest),
// reference values (ReferenceValues, and ContrastReferenceValues in
// Contrast's shape, keyed by the payload's runtime handler name), ID
// block files (IDBlocks) and the payload's files all at once. A failed
// stage is a *StageError. docs/build.md describes the pipeline and the
// cache, docs/manifest.md the documents.
//
//	m, err := podvm.Build(ctx, cfg, podvm.BuildOptions{Output: "out", CacheDir: cache,
//		GuestInit: podvm.GuestInit{Path: "bin/guest-init"}})
package podvm
