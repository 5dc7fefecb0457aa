package source

import (
	"errors"
	"fmt"
)

// ErrInsecurePath is matched by errors.Is for every InsecurePathError, like
// archive/tar's ErrInsecurePath.
var ErrInsecurePath = errors.New("insecure path in archive")

// InsecurePathError is an archive entry that would reach outside the tree:
// a ".." component, an absolute or escaping hard link, an entry below a
// symlink or a file.
type InsecurePathError struct {
	Layer  string // the layer ("tar:base.tar", "oci-layout:img layer 2/3 (sha256:ab12…)")
	Entry  string // the entry's name as the layer spells it
	Reason string
}

func (e *InsecurePathError) Error() string {
	return fmt.Sprintf("%s: entry %q: %s", e.Layer, e.Entry, e.Reason)
}

// Is makes errors.Is(err, ErrInsecurePath) true.
func (e *InsecurePathError) Is(target error) bool { return target == ErrInsecurePath }

// FormatError is a malformed source: a bad or truncated tar stream, an
// entry the tree cannot hold, a bad index, manifest or config.
type FormatError struct {
	Layer string // the layer or source
	Entry string // the entry concerned, "" when the error is not about one
	Err   error
}

func (e *FormatError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("%s: %v", e.Layer, e.Err)
	}
	return fmt.Sprintf("%s: entry %q: %v", e.Layer, e.Entry, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

// CorruptError is content whose sha256 is not the digest that names it: an
// OCI blob, a layer's uncompressed stream (diff_id), a cached blob, or a
// tar file that changed between the two reads of a build.
type CorruptError struct {
	Kind string // "blob" (OCI blobs and layer streams) or "file" (tar sources)
	What string // "sha256:…" (a blob), "uncompressed layer", "cached blob PATH", "base.tar"
	Got  string // "sha256:HEX"
	Want string // "sha256:HEX"
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s digest mismatch: %s has %s, want %s", e.Kind, e.What, e.Got, e.Want)
}

// ChangedError is a host file that changed while the build read it.
type ChangedError struct {
	Path   string
	Detail string
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("%s changed during the build (%s)", e.Path, e.Detail)
}

// entryErr wraps an entry check's failure in the typed error its reason
// calls for.
func entryErr(layer, raw string, err error) error {
	var ip insecure
	if errors.As(err, &ip) {
		return &InsecurePathError{Layer: layer, Entry: raw, Reason: ip.reason}
	}
	return &FormatError{Layer: layer, Entry: raw, Err: err}
}

// insecure is the internal form of an insecure path, before the layer and
// entry are known.
type insecure struct{ reason string }

func (e insecure) Error() string { return e.reason }
