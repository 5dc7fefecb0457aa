package payload

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Placeholder stands for the runtime handler name in the template form of
// a file or path (Contrast's node installer uses the same string). A file
// whose content names the handler (the Kata configuration names the install
// prefix, which by default holds the handler) is hashed for the name with
// every occurrence of the name replaced by Placeholder; otherwise the name
// would depend on itself.
const Placeholder = "@@runtimeName@@"

// HashedFile is one installed file as the handler name hashes it.
type HashedFile struct {
	// Path is the install path relative to the install prefix, in
	// template form ("share/rootfs.img", "etc/configuration-qemu.toml").
	Path string `json:"path"`
	// SHA256 is the hex sha256 of the file's content in template form.
	SHA256 string `json:"sha256"`
}

// HandlerDigest is the sha256 that names the handler: of the lines
// "<sha256>  <path>\n" (sha256sum's output format), one per installed
// file, sorted by path in byte order. It is what
//
//	cd PREFIX && find * -type f | LC_ALL=C sort | xargs sha256sum | sha256sum
//
// prints for the installed tree in template form.
func HandlerDigest(files []HashedFile) (string, error) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b HashedFile) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	for i, f := range sorted {
		if f.Path == "" || strings.ContainsAny(f.Path, "\n\\") || strings.HasPrefix(f.Path, "/") {
			return "", fmt.Errorf("handler digest: file %q: want a relative path without newline or backslash", f.Path)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return "", fmt.Errorf("handler digest: file %q listed twice", f.Path)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return "", fmt.Errorf("handler digest: file %q: sha256 %q is not 64 hex digits", f.Path, f.SHA256)
		}
		fmt.Fprintf(h, "%s  %s\n", strings.ToLower(f.SHA256), f.Path)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HandlerName is prefix + platform + "-" + the first 8 hex digits of the
// handler digest, as Contrast names its handlers
// ("contrast-cc-metal-qemu-snp-1a2b3c4d"): any change to any installed
// file changes it, identical files give the same name.
func HandlerName(prefix, platform string, files []HashedFile) (string, error) {
	d, err := HandlerDigest(files)
	if err != nil {
		return "", err
	}
	name := prefix + platform + "-" + d[:8]
	if err := checkHandlerName(name); err != nil {
		return "", err
	}
	return name, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// checkHandlerName requires a DNS-1123 label: a RuntimeClass name and a
// containerd runtime key.
func checkHandlerName(name string) error {
	if len(name) > 63 || !dnsLabel.MatchString(name) {
		return fmt.Errorf("runtime handler name %q: want a DNS label (lower case letters, digits and '-', at most 63 characters); shorten the prefix or platform", name)
	}
	return nil
}
