// Package payload makes and ships the node payload of a pod-VM image: what
// a Kubernetes worker needs to run it under Kata Containers, and the output
// set as one OCI artifact.
//
// Generate turns an output set (the artifacts of a build with their sha256,
// the measured command line, the targets) and runtime Options into a
// Payload: the runtime handler name derived from the content of every file
// the payload installs (HandlerName), the Kata configuration for the target
// (its hypervisor keys set in a template that is otherwise kept byte for
// byte), the containerd runtime entry (config version 2 or 3), the
// RuntimeClass, and the install plan. Payload.Outputs lists the files to
// put into the output directory: runtimeclass.yaml, containerd-runtime.toml,
// configuration-<target>.toml, install-plan.json (and the QEMU target's
// firmware).
//
// Install does on a node file system what a node installer does: it copies
// the files of an install plan under a root, and merges the runtime into
// the containerd configuration there, all or nothing, idempotently, without
// restarting anything.
//
// Push, Pull, WriteLayout and ReadLayout move an output directory as one
// OCI artifact (an image manifest with artifactType ArtifactType, one layer
// per file) to and from a registry or an OCI layout; the manifest digest
// depends only on the files.
//
// docs/node-payload.md describes the handler name recipe, the file names,
// how containerd versions merge configuration, and the commands.
package payload
