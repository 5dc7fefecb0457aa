package podvm

import (
	"fmt"
	"regexp"
	"strings"
)

// SourceSyntax is the syntax a source string takes, for messages.
const SourceSyntax = "oci-layout:DIR[:TAG|@sha256:DIGEST], oci-archive:FILE[:TAG], docker-archive:FILE, dir:PATH, tar:FILE, or a registry reference [docker://]REGISTRY/REPO[:TAG][@sha256:DIGEST]"

// ParsedSource is a source string taken apart.
type ParsedSource struct {
	Kind string // oci-layout, oci-archive, docker-archive, dir, tar or registry
	Path string // the host path of a file or directory source
	Ref  string // ":TAG" or "@sha256:HEX" after an OCI layout or archive path
	Name string // a registry reference as given, without docker://
}

// otherTransports are image transports of other tools (skopeo, podman)
// that a user may write by habit; "oci:NAME" would otherwise be read as
// the registry image docker.io/library/oci.
var otherTransports = map[string]string{
	"oci":                ", did you mean oci-layout:?",
	"docker":             ", did you mean docker://?",
	"docker-daemon":      "",
	"containers-storage": "",
	"ostree":             "",
	"sif":                "",
	"file":               ", did you mean dir: or tar:?",
	"http":               "",
	"https":              "",
}

// pathKinds are the source kinds that name a host path.
var pathKinds = []string{"oci-layout", "oci-archive", "docker-archive", "dir", "tar"}

var (
	// The reference grammar of github.com/distribution/reference, in short.
	refComponent = `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
	refDomain    = `(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9]+|(?:[a-zA-Z0-9.-]+):[0-9]+)`
	referenceRE  = regexp.MustCompile(`^(?:` + refDomain + `/)?` + refComponent + `(?:/` + refComponent + `)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$`)
	tagRE        = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	schemeRE     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*$`)
)

// CheckSource parses a source string in the syntax of 'rootfs build
// --source' (see SourceSyntax). It checks the syntax only: whether a path
// exists or a reference resolves is for the build. (pkg/source.Parse will
// own this syntax; the pipeline then calls it here instead.)
func CheckSource(s string) (ParsedSource, error) {
	if strings.TrimSpace(s) == "" {
		return ParsedSource{}, fmt.Errorf("empty source (want %s)", SourceSyntax)
	}
	if strings.ContainsAny(s, "\x00\n\r") {
		return ParsedSource{}, fmt.Errorf("source %q holds a control character", s)
	}
	if name, ok := strings.CutPrefix(s, "docker://"); ok {
		if !referenceRE.MatchString(name) {
			return ParsedSource{}, fmt.Errorf("%q is not a registry reference (REGISTRY/REPO[:TAG][@sha256:DIGEST], lower case)", s)
		}
		return ParsedSource{Kind: "registry", Name: name}, nil
	}
	kind, arg, hasColon := strings.Cut(s, ":")
	for _, k := range pathKinds {
		if kind != k {
			continue
		}
		if arg == "" {
			return ParsedSource{}, fmt.Errorf("source %q names no path", s)
		}
		p := ParsedSource{Kind: k, Path: arg}
		if k == "oci-layout" || k == "oci-archive" {
			p.Path, p.Ref = splitRef(arg)
			switch {
			case p.Path == "":
				return ParsedSource{}, fmt.Errorf("source %q names no path", s)
			case strings.HasPrefix(p.Ref, "@"):
				if k == "oci-archive" || !digestRE.MatchString(p.Ref[1:]) {
					return ParsedSource{}, fmt.Errorf("source %q: %q is not a sha256 digest reference", s, p.Ref)
				}
			case p.Ref != "" && !tagRE.MatchString(p.Ref[1:]):
				return ParsedSource{}, fmt.Errorf("source %q: %q is not a tag", s, p.Ref[1:])
			}
		}
		return p, nil
	}
	if hint, ok := otherTransports[kind]; ok && hasColon {
		return ParsedSource{}, fmt.Errorf("unknown source scheme %q%s (want %s)", kind+":", hint, SourceSyntax)
	}
	if referenceRE.MatchString(s) {
		return ParsedSource{Kind: "registry", Name: s}, nil
	}
	if hasColon && schemeRE.MatchString(kind) {
		return ParsedSource{}, fmt.Errorf("unknown source scheme %q (want %s)", kind+":", SourceSyntax)
	}
	return ParsedSource{}, fmt.Errorf("%q is not a source: a host path needs its scheme, e.g. dir:%s or tar:%s (want %s)", s, s, s, SourceSyntax)
}

// splitRef splits "PATH:TAG" or "PATH@sha256:HEX"; a colon followed by a
// slash belongs to the path (as pkg/rootfs reads it).
func splitRef(s string) (string, string) {
	if i := strings.LastIndex(s, "@sha256:"); i >= 0 {
		return s[:i], s[i:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		return s[:i], s[i:]
	}
	return s, ""
}
