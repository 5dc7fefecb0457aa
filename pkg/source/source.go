package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Kind is the form of a source.
type Kind string

// The kinds of source. Each but Image has a string form that Parse reads
// (see Kinds).
const (
	OCILayout     Kind = "oci-layout"     // an OCI image layout directory
	OCIArchive    Kind = "oci-archive"    // a tar of an OCI image layout
	DockerArchive Kind = "docker-archive" // a docker save archive
	Dir           Kind = "dir"            // a host directory tree
	Tar           Kind = "tar"            // a tar file (plain, gzip or zstd)
	Registry      Kind = "registry"       // an image in a registry
	Image         Kind = "image"          // a v1.Image the caller holds (FromImage)
)

// Kinds lists the source forms Parse accepts, for help texts.
const Kinds = `oci-layout:DIR[:TAG|@sha256:DIGEST], oci-archive:FILE[:TAG|@sha256:DIGEST], docker-archive:FILE, dir:PATH, tar:FILE[@sha256:DIGEST], or a registry reference REGISTRY/REPO[:TAG|@sha256:DIGEST]`

// Source is one source of an image tree, as Parse reads it from its string
// form or FromImage makes it.
type Source struct {
	Kind Kind
	// Path is the directory or file of a local source.
	Path string
	// Repository is a registry source's repository ("ghcr.io/org/app",
	// "alpine"), or the name of an Image source (for messages).
	Repository string
	// Tag names the image: the org.opencontainers.image.ref.name of an
	// OCI layout's index, or a registry tag.
	Tag string
	// Digest pins the source, "sha256:" and 64 hex digits: the image
	// manifest of an OCI layout, archive or registry source, the file's
	// own sha256 of a tar source.
	Digest string

	image v1.Image
}

// FromImage makes a source of an image the caller already holds. name
// stands for it in messages and in String; the image's layers are read
// through go-containerregistry and checked against the config's diff_ids.
func FromImage(name string, img v1.Image) Source {
	return Source{Kind: Image, Repository: name, image: img}
}

// String is the source's string form. Parse(s.String()) gives s back for
// every s that Parse returned (an Image source is written "image:NAME",
// which Parse does not read).
func (s Source) String() string {
	switch s.Kind {
	case OCILayout, OCIArchive:
		return string(s.Kind) + ":" + s.Path + s.refSuffix(":")
	case Tar:
		return "tar:" + s.Path + s.refSuffix(":")
	case DockerArchive, Dir:
		return string(s.Kind) + ":" + s.Path
	case Registry:
		plain := s.Repository + s.refSuffix(":")
		if back, err := parse(plain, false); err != nil || back != s {
			// "tar:x" would read back as a tar file: say it is a
			// registry reference.
			return "docker://" + plain
		}
		return plain
	case Image:
		return "image:" + s.Repository
	}
	return string(s.Kind) + ":" + s.Path
}

func (s Source) refSuffix(tagSep string) string {
	r := ""
	if s.Tag != "" {
		r += tagSep + s.Tag
	}
	if s.Digest != "" {
		r += "@" + s.Digest
	}
	return r
}

// MarshalText writes the string form.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the string form (Parse).
func (s *Source) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// ErrNotPinnable is returned by Pin for sources that have no digest of
// their own: directories, docker archives and images held by the caller.
var ErrNotPinnable = errors.New("source has no digest to pin")

// Pin returns the source fixed to digest ("sha256:HEX", as Resolved
// records it: the image manifest's digest, or a tar file's sha256), so that
// a later build reads exactly what this one read or fails. The tag is
// dropped: a digest names one image.
func (s Source) Pin(digest string) (Source, error) {
	if !validDigest(digest) {
		return Source{}, fmt.Errorf("source %s: pin: %q is not sha256:HEX", s, digest)
	}
	switch s.Kind {
	case OCILayout, OCIArchive, Registry, Tar:
		s.Tag, s.Digest = "", digest
		return s, nil
	}
	return Source{}, fmt.Errorf("source %s: %w", s, ErrNotPinnable)
}

// SyntaxError is a source string Parse cannot read.
type SyntaxError struct {
	Source string // as given
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("source %q: %s", e.Source, e.Msg) }

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func validDigest(d string) bool { return digestRE.MatchString(d) }

// foreignSchemes are transports of other tools (containers/image, buildah,
// skopeo, ...) that a user may write out of habit; naming them beats a
// registry lookup of "oci".
var foreignSchemes = map[string]string{
	"oci":                "oci-layout:DIR for an OCI image layout directory, oci-archive:FILE for a tar of one",
	"docker-daemon":      "docker-archive:FILE (docker save -o FILE IMAGE)",
	"containers-storage": "oci-archive:FILE (podman save --format oci-archive -o FILE IMAGE)",
	"ostree":             "dir:PATH",
	"sif":                "dir:PATH or tar:FILE",
	"tarball":            "tar:FILE",
	"file":               "dir:PATH or tar:FILE",
	"http":               "a registry reference REGISTRY/REPO[:TAG]",
	"https":              "a registry reference REGISTRY/REPO[:TAG]",
}

var portRE = regexp.MustCompile(`^[0-9]+(/|$)`)

// Parse reads a source string (see Kinds). A string without a scheme is a
// registry reference ("docker://" may precede it), unless it names an
// existing file or directory: that is an error saying which scheme to
// write, since looking up "." or "./base" in a registry only confuses.
func Parse(s string) (Source, error) { return parse(s, true) }

// parse is Parse; lookLocal says whether a string without a scheme that
// names an existing path is refused (Parse) or read as the registry
// reference it spells (the syntax alone, for tests of String).
func parse(s string, lookLocal bool) (Source, error) {
	bad := func(format string, args ...any) (Source, error) {
		return Source{}, &SyntaxError{Source: s, Msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return bad("empty source")
	}
	scheme, arg, hasColon := strings.Cut(s, ":")
	switch Kind(scheme) {
	case OCILayout, OCIArchive:
		path, tag, digest := splitRef(arg)
		if tag == "" && strings.HasSuffix(strings.TrimSuffix(arg, "@"+digest), ":") {
			return bad("empty tag after the last colon")
		}
		if path == "" {
			return bad("no %s after %s:", map[Kind]string{OCILayout: "directory", OCIArchive: "file"}[Kind(scheme)], scheme)
		}
		if digest != "" && !validDigest(digest) {
			return bad("digest %q is not sha256: and 64 lowercase hex digits", digest)
		}
		return Source{Kind: Kind(scheme), Path: path, Tag: tag, Digest: digest}, nil
	case Tar:
		path, digest := arg, ""
		if i := strings.LastIndex(arg, "@sha256:"); i >= 0 {
			path, digest = arg[:i], arg[i+1:]
			if !validDigest(digest) {
				return bad("digest %q is not sha256: and 64 lowercase hex digits", digest)
			}
		}
		if path == "" {
			return bad("no file after tar:")
		}
		return Source{Kind: Tar, Path: path, Digest: digest}, nil
	case DockerArchive, Dir:
		if arg == "" {
			return bad("no path after %s:", scheme)
		}
		return Source{Kind: Kind(scheme), Path: arg}, nil
	case Registry, Image:
		return bad("%q is not a scheme: write a registry reference as REGISTRY/REPO[:TAG|@sha256:DIGEST]", scheme)
	}
	ref := strings.TrimPrefix(s, "docker://")
	if hint, ok := foreignSchemes[scheme]; hasColon && ok && ref == s {
		return bad("unknown scheme %q; write %s", scheme, hint)
	}
	if hasColon && ref == s && !strings.Contains(scheme, "/") && !strings.Contains(scheme, ".") &&
		strings.Contains(arg, "/") && !portRE.MatchString(arg) {
		// A tag never holds a slash and a port is a number: "x:a/b" is
		// a scheme we do not know.
		return bad("unknown scheme %q; sources are %s", scheme, Kinds)
	}
	if fi, err := os.Lstat(s); err == nil && lookLocal {
		return bad("%s", pathHint(s, fi))
	}
	if ref == s && (strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || s == "." || s == "..") {
		return bad("%q is a host path, not a registry image: write dir:%s for a tree, tar:%s for a tar file or oci-layout:%s for an OCI image layout", s, s, s, s)
	}
	_, repo, tag, digest, err := parseRegistry(ref)
	var de digestError
	if errors.As(err, &de) {
		return bad("%v", err)
	}
	if err != nil {
		return bad("not a registry reference (%v), and no scheme; sources are %s", err, Kinds)
	}
	return Source{Kind: Registry, Repository: repo, Tag: tag, Digest: digest}, nil
}

// ParseReference reads a registry reference,
// [docker://]REGISTRY/REPO[:TAG|@sha256:HEX], by the grammar Parse applies
// to a Registry source: the distribution specification's, stricter than
// go-containerregistry's alone (which takes "." as a path component).
func ParseReference(s string) (name.Reference, error) {
	r, _, _, _, err := parseRegistry(strings.TrimPrefix(s, "docker://"))
	return r, err
}

// digestError is a reference whose digest is not sha256 and 64 lowercase
// hex digits.
type digestError string

func (e digestError) Error() string {
	return fmt.Sprintf("digest %q is not sha256: and 64 lowercase hex digits", string(e))
}

// parseRegistry reads a registry reference without a scheme, returning it
// and its repository, tag and digest as written.
func parseRegistry(ref string) (r name.Reference, repo, tag, digest string, err error) {
	if r, err = name.ParseReference(ref); err != nil {
		return nil, "", "", "", err
	}
	repo, tag, digest = splitRegistryRef(ref)
	if err := checkRepository(repo); err != nil {
		return nil, "", "", "", err
	}
	if digest != "" && !validDigest(digest) {
		return nil, "", "", "", digestError(digest)
	}
	return r, repo, tag, digest, nil
}

// repoComponentRE is a repository path component as the distribution
// specification defines it (go-containerregistry accepts more, such as
// ".").
var repoComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// hostRE is a registry host: a DNS name or a bracketed IPv6 address, with
// an optional port.
var hostRE = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$`)

// checkRepository checks the path components of a repository, after the
// registry host if one is given.
func checkRepository(repo string) error {
	parts := strings.Split(repo, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:[") || parts[0] == "localhost") {
		if !hostRE.MatchString(parts[0]) {
			return fmt.Errorf("registry %q is not a host name or address with an optional port", parts[0])
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !repoComponentRE.MatchString(p) {
			return fmt.Errorf("repository %q: path component %q is not lower-case letters and digits separated by . _ __ or -", repo, p)
		}
	}
	return nil
}

// pathHint says which scheme to write for an existing path given without
// one.
func pathHint(p string, fi os.FileInfo) string {
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "index.json")); err == nil {
			return fmt.Sprintf("names a local directory, not a registry image: write oci-layout:%s (it holds an index.json), or dir:%s for the tree as is", p, p)
		}
		return fmt.Sprintf("names a local directory, not a registry image: write dir:%s for the tree, or oci-layout:%s for an OCI image layout", p, p)
	}
	return fmt.Sprintf("names a local file, not a registry image: write tar:%s for a tar file, oci-archive:%s for an OCI image archive, or docker-archive:%s for docker save output", p, p, p)
}

// splitRef splits "PATH:TAG", "PATH@sha256:HEX" or "PATH:TAG@sha256:HEX";
// a colon followed by a slash belongs to the path.
func splitRef(s string) (path, tag, digest string) {
	if i := strings.LastIndex(s, "@sha256:"); i >= 0 {
		s, digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		return s[:i], s[i+1:], digest
	}
	return s, "", digest
}

// splitRegistryRef splits a reference that name.ParseReference accepted
// into repository, tag and digest, as written.
func splitRegistryRef(s string) (repo, tag, digest string) {
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s, digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		return s[:i], s[i+1:], digest
	}
	return s, "", digest
}

// Options say how sources are read.
type Options struct {
	// Platform selects the image of a multi-platform index and must match
	// each image's config: OS/ARCH[/VARIANT]; default "linux/amd64".
	Platform string
	// CacheDir keeps registry blobs by digest; "" disables the cache.
	CacheDir string
	// Keychain resolves registry credentials; nil means
	// authn.DefaultKeychain.
	Keychain authn.Keychain
	// Upper holds layers the caller puts over the sources, in order
	// (pkg/rootfs: its additions, then added trees and files).
	Upper []Upper
	// Progress, when set, is told how Flatten advances (see
	// internal/meter for the contract): step "pull" downloads the
	// registry blobs CacheDir lacks (compressed bytes of the layer
	// descriptors' sizes), then "flatten" reads every layer once for its
	// metadata (bytes as stored; total 0 when a layer's stored size is
	// unknown). Steps with no work are not reported.
	Progress func(step string, done, total int64)
}

// DefaultPlatform is the platform of a pod VM's root.
const DefaultPlatform = "linux/amd64"

// DefaultCacheDir is where registry blobs are kept by default:
// $IMAGEBUILDER_CACHE/blobs, else the user cache directory's
// imagebuilder/blobs ($XDG_CACHE_HOME or ~/.cache).
func DefaultCacheDir() string {
	if c := os.Getenv("IMAGEBUILDER_CACHE"); c != "" {
		return filepath.Join(c, "blobs")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "imagebuilder", "blobs")
}

// Operating systems and architectures as OCI image configs name them (the
// Go names, which the image spec adopts).
var (
	knownOS = map[string]bool{"linux": true, "windows": true, "freebsd": true, "netbsd": true, "openbsd": true,
		"darwin": true, "dragonfly": true, "illumos": true, "solaris": true, "aix": true, "android": true,
		"ios": true, "plan9": true, "js": true, "wasip1": true, "zos": true}
	knownArch = map[string]bool{"amd64": true, "386": true, "arm": true, "arm64": true, "ppc64": true,
		"ppc64le": true, "s390x": true, "riscv64": true, "mips": true, "mipsle": true, "mips64": true,
		"mips64le": true, "loong64": true, "wasm": true, "sparc64": true}
	variantRE = regexp.MustCompile(`^[a-z0-9.]{1,16}$`)
)

// ParsePlatform reads OS/ARCH[/VARIANT] ("linux/amd64", "linux/arm64/v8");
// "" is DefaultPlatform. OS and ARCH must be names OCI images use.
func ParsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		s = DefaultPlatform
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], for example %s", s, DefaultPlatform)
	}
	if !knownOS[parts[0]] {
		return v1.Platform{}, fmt.Errorf("platform %q: unknown operating system %q", s, parts[0])
	}
	if !knownArch[parts[1]] {
		return v1.Platform{}, fmt.Errorf("platform %q: unknown architecture %q", s, parts[1])
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		if !variantRE.MatchString(parts[2]) {
			return v1.Platform{}, fmt.Errorf("platform %q: bad variant %q", s, parts[2])
		}
		p.Variant = parts[2]
	}
	return p, nil
}

// File is one host file added to a tree: Src on the host, Dst in the tree.
// pkg/rootfs (Options.Files) and pkg/initrd use it.
type File struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
	// Mode holds the permission bits (07777); nil means the consumer's
	// default (pkg/rootfs: 0755 when Src is executable, else 0644).
	Mode *uint32 `json:"mode,omitempty"`
}

// Perm returns a pointer to the permission bits m, for File.Mode.
func Perm(m uint32) *uint32 { return &m }

// ParseFile reads the form SRC:DST[:MODE] (MODE in octal).
func ParseFile(s string) (File, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return File{}, fmt.Errorf("file %q: want SRC:DST[:MODE]", s)
	}
	f := File{Src: parts[0], Dst: parts[1]}
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m > 0o7777 {
			return File{}, fmt.Errorf("file %q: bad octal mode %q", s, parts[2])
		}
		f.Mode = Perm(uint32(m))
	}
	return f, nil
}

// String is the SRC:DST[:MODE] form.
func (f File) String() string {
	s := f.Src + ":" + f.Dst
	if f.Mode != nil {
		s += fmt.Sprintf(":%04o", *f.Mode)
	}
	return s
}
