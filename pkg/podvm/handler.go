package podvm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Runtime handler names. A node runs a pod-VM image through a containerd
// runtime handler, and Contrast keys its reference values by the
// handler's name; the name must change whenever anything the node
// installs changes, and stay the same for identical builds. The rule, as
// Contrast names its handlers:
//
//	NAME = PREFIX + PLATFORM + "-" + first 8 hex digits of DIGEST
//	DIGEST = sha256 of the lines "SHA256  PATH\n", one per installed file,
//	         sorted by PATH in byte order
//
// where PATH is the file's path below the install prefix (so that the
// prefix, which may hold the name itself, stays out of the digest) and
// SHA256 its content's sha256 in lowercase hex: exactly the lines
// sha256sum prints. An auditor recomputes it with
//
//	(cd PREFIX && sha256sum FILE... | LC_ALL=C sort -k2) | sha256sum | cut -c1-8
//
// with the FILEs given as relative paths.

// DefaultHandlerPrefix is the prefix Contrast's coordinator expects of a
// runtime handler name ("contrast-cc-" PLATFORM "-" HASH).
const DefaultHandlerPrefix = "contrast-cc-"

// InstalledFile is one file a node installs: its path below the install
// prefix and its sha256.
type InstalledFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

var (
	sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	handlerRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// HandlerDigest is the sha256 (hex) of the installed files' list, as the
// package comment's rule says.
func HandlerDigest(files []InstalledFile) (string, error) {
	if len(files) == 0 {
		return "", fmt.Errorf("runtime handler: no installed files")
	}
	sorted := append([]InstalledFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	for i, f := range sorted {
		switch {
		case f.Path == "" || strings.HasPrefix(f.Path, "/") || strings.ContainsAny(f.Path, "\n\r\x00\\"):
			return "", fmt.Errorf("runtime handler: installed file %q: want a relative path without newlines or backslashes", f.Path)
		case !sha256HexRE.MatchString(f.SHA256):
			return "", fmt.Errorf("runtime handler: installed file %s: sha256 %q is not 64 lowercase hex digits", f.Path, f.SHA256)
		case i > 0 && sorted[i-1].Path == f.Path:
			return "", fmt.Errorf("runtime handler: installed file %s given twice", f.Path)
		}
		fmt.Fprintf(h, "%s  %s\n", f.SHA256, f.Path)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HandlerName is PREFIX + PLATFORM + "-" + the first 8 hex digits of
// HandlerDigest(files). The name must be a DNS label (RuntimeClass names
// and handlers are): lower case letters, digits and '-', at most 63.
func HandlerName(prefix, platform string, files []InstalledFile) (string, error) {
	d, err := HandlerDigest(files)
	if err != nil {
		return "", err
	}
	name := prefix + platform + "-" + d[:8]
	if len(name) > 63 || !handlerRE.MatchString(name) {
		return "", fmt.Errorf("runtime handler name %q: want a DNS label (lower case letters, digits, '-', at most 63)", name)
	}
	return name, nil
}

// PlatformNames are, per target platform, the platform part of runtime
// handler names and Contrast's platform name.
var PlatformNames = map[string]struct{ Handler, Contrast string }{
	PlatformIGVMMSHV: {"aks-clh-snp", "AKS-CLH-SNP"},
	PlatformQEMUOVMF: {"metal-qemu-snp", "Metal-QEMU-SNP"},
	PlatformIGVMKVM:  {"metal-qemu-snp-igvm", "Metal-QEMU-SNP-IGVM"},
}
