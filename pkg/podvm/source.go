package podvm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imagebuilder/imagebuilder/pkg/source"
)

// SourceSyntax is the syntax a source string takes, for messages: that of
// pkg/source (source.Kinds), which reads it.
const SourceSyntax = source.Kinds

// Source is a root file system or initrd source in the syntax of
// pkg/source (source.Kinds): oci-layout:DIR[:TAG|@sha256:HEX],
// oci-archive:FILE[:TAG|@sha256:HEX], docker-archive:FILE, dir:PATH,
// tar:FILE[@sha256:HEX], or a registry reference
// [docker://]REGISTRY/REPO[:TAG|@sha256:HEX]. Written is the string as in
// the file; Parsed is it read by source.Parse with its path made absolute
// (relative to the config file, ${IMAGEBUILDER_CACHE} expanded), and
// Resolved is Parsed's string form.
type Source struct {
	Written  string
	Resolved string
	Kind     string // "oci-layout", ..., "registry"
	Parsed   source.Source
}

func (s *Source) decodeNode(d *decoder, n *yaml.Node, path string) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return d.errorf(n, path, "want a source string, got %s", kindName(n))
	}
	if w := n.Value; strings.HasPrefix(w, "/") || strings.HasPrefix(w, "./") || strings.HasPrefix(w, "../") || strings.HasPrefix(w, CacheVar) {
		return d.errorf(n, path, "%q is not a source: a host path needs its scheme, e.g. dir:%s or tar:%s (sources are %s)", w, w, w, SourceSyntax)
	}
	src, err := source.Parse(n.Value)
	if err != nil {
		var se *source.SyntaxError
		if errors.As(err, &se) {
			return d.errorf(n, path, "%s", se.Msg)
		}
		return d.errorf(n, path, "%v", err)
	}
	switch src.Kind {
	case source.Registry:
		// A reference that names a path beside the config file is a
		// host path written without its scheme (source.Parse looks in
		// the working directory only).
		if p, err := d.res.resolve(n.Value); err == nil {
			if _, err := os.Lstat(p); err == nil {
				return d.errorf(n, path, "%q names %s beside the config file, not a registry image: a host path needs its scheme (%s)", n.Value, filepath.Base(p), SourceSyntax)
			}
		}
	default:
		r, err := d.res.resolve(src.Path)
		if err != nil {
			return d.errorf(n, path, "%q: %v", src.Path, err)
		}
		src.Path = r
	}
	s.Written, s.Kind, s.Parsed, s.Resolved = n.Value, string(src.Kind), src, src.String()
	return nil
}

// checkSourceFiles checks that a local source's path exists and is of the
// right kind.
func checkSourceFiles(s Source) error {
	p := s.Parsed
	switch p.Kind {
	case source.Registry, "":
		return nil
	case source.Dir:
		return checkKind(p.Path, true)
	case source.OCILayout:
		if err := checkKind(p.Path, true); err != nil {
			return err
		}
		if err := checkKind(filepath.Join(p.Path, "index.json"), false); err != nil {
			return fmt.Errorf("not an OCI layout (no index.json)")
		}
		return nil
	default:
		return checkKind(p.Path, false)
	}
}
