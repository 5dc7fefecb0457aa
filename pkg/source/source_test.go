package source

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

var digestA = "sha256:" + strings.Repeat("a", 64)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "layout")
	treeDir := filepath.Join(dir, "tree")
	file := filepath.Join(dir, "base.tar")
	os.MkdirAll(layoutDir, 0o755)
	os.MkdirAll(treeDir, 0o755)
	os.WriteFile(filepath.Join(layoutDir, "index.json"), []byte("{}"), 0o644)
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		in   string
		want Source
		str  string // String(), when not in
	}{
		{in: "oci-layout:./base", want: Source{Kind: OCILayout, Path: "./base"}},
		{in: "oci-layout:/a/b:v1", want: Source{Kind: OCILayout, Path: "/a/b", Tag: "v1"}},
		{in: "oci-layout:/a:b/c", want: Source{Kind: OCILayout, Path: "/a:b/c"}},
		{in: "oci-layout:img@" + digestA, want: Source{Kind: OCILayout, Path: "img", Digest: digestA}},
		{in: "oci-layout:img:v2@" + digestA, want: Source{Kind: OCILayout, Path: "img", Tag: "v2", Digest: digestA}},
		{in: "oci-archive:img.tar", want: Source{Kind: OCIArchive, Path: "img.tar"}},
		{in: "oci-archive:img.tar:latest", want: Source{Kind: OCIArchive, Path: "img.tar", Tag: "latest"}},
		{in: "docker-archive:save.tar", want: Source{Kind: DockerArchive, Path: "save.tar"}},
		{in: "dir:/srv/root", want: Source{Kind: Dir, Path: "/srv/root"}},
		{in: "dir:a:b", want: Source{Kind: Dir, Path: "a:b"}},
		{in: "tar:root.tar.zst", want: Source{Kind: Tar, Path: "root.tar.zst"}},
		{in: "tar:root.tar@" + digestA, want: Source{Kind: Tar, Path: "root.tar", Digest: digestA}},
		{in: "alpine", want: Source{Kind: Registry, Repository: "alpine"}},
		{in: "ubuntu:22.04", want: Source{Kind: Registry, Repository: "ubuntu", Tag: "22.04"}},
		{in: "docker:24-dind", want: Source{Kind: Registry, Repository: "docker", Tag: "24-dind"}},
		{in: "ghcr.io/org/app:v1", want: Source{Kind: Registry, Repository: "ghcr.io/org/app", Tag: "v1"}},
		{in: "localhost:5000/pod/base:v1", want: Source{Kind: Registry, Repository: "localhost:5000/pod/base", Tag: "v1"}},
		{in: "localhost:5000/pod/base", want: Source{Kind: Registry, Repository: "localhost:5000/pod/base"}},
		{in: "127.0.0.1:5000/x@" + digestA, want: Source{Kind: Registry, Repository: "127.0.0.1:5000/x", Digest: digestA}},
		{in: "docker://alpine:3.19", want: Source{Kind: Registry, Repository: "alpine", Tag: "3.19"}, str: "alpine:3.19"},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		str := tc.in
		if tc.str != "" {
			str = tc.str
		}
		if got.String() != str {
			t.Errorf("Parse(%q).String() = %q", tc.in, got.String())
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q) does not round-trip: %+v, %v", got.String(), again, err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "empty source"},
		{"oci:/tmp/layout", `unknown scheme "oci"; write oci-layout:DIR`},
		{"oci:layout", `unknown scheme "oci"`},
		{"containers-storage:alpine", `unknown scheme "containers-storage"`},
		{"foo:/some/dir", `unknown scheme "foo"`},
		{"Not A Ref!", "not a registry reference"},
		{"oci-layout:", "no directory after oci-layout:"},
		{"tar:", "no file after tar:"},
		{"dir:", "no path after dir:"},
		{"tar:x.tar@sha256:abc", "is not sha256: and 64 lowercase hex digits"},
		{"registry:alpine", `"registry" is not a scheme`},
		{"alpine@sha256:1234", "not a registry reference"},
		{treeDir, "write dir:" + treeDir + " for the tree, or oci-layout:" + treeDir},
		{layoutDir, "write oci-layout:" + layoutDir + " (it holds an index.json)"},
		{file, "write tar:" + file + " for a tar file, oci-archive:" + file},
	}
	for _, tc := range bad {
		_, err := Parse(tc.in)
		var se *SyntaxError
		if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want a SyntaxError with %q", tc.in, err, tc.want)
		}
	}
	// "." names the working directory, not an image on Docker Hub.
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(treeDir)
	if _, err := Parse("."); err == nil || !strings.Contains(err.Error(), "write dir:. for the tree") {
		t.Errorf(`Parse("."): %v`, err)
	}
}

func TestPin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"oci-layout:img:v1", "oci-layout:img@" + digestA},
		{"oci-archive:img.tar", "oci-archive:img.tar@" + digestA},
		{"ghcr.io/org/app:v1", "ghcr.io/org/app@" + digestA},
		{"tar:base.tar", "tar:base.tar@" + digestA},
	} {
		s, _ := Parse(tc.in)
		p, err := s.Pin(digestA)
		if err != nil || p.String() != tc.want {
			t.Errorf("%s pinned: %q, %v; want %q", tc.in, p, err, tc.want)
		}
	}
	for _, in := range []string{"dir:/x", "docker-archive:x.tar"} {
		s, _ := Parse(in)
		if _, err := s.Pin(digestA); !errors.Is(err, ErrNotPinnable) {
			t.Errorf("%s: Pin: %v, want ErrNotPinnable", in, err)
		}
	}
	s, _ := Parse("alpine")
	if _, err := s.Pin("sha256:xyz"); err == nil {
		t.Error("a malformed digest was accepted")
	}
}

func TestParsePlatform(t *testing.T) {
	for _, in := range []string{"", "linux/amd64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64"} {
		if _, err := ParsePlatform(in); err != nil {
			t.Errorf("ParsePlatform(%q): %v", in, err)
		}
	}
	for _, in := range []string{"bogus", "linux", "linux/bogus", "bogus/amd64", "linux/amd64/v8/x", "linux//", "/amd64", "linux/amd64/V 8"} {
		if _, err := ParsePlatform(in); err == nil {
			t.Errorf("ParsePlatform(%q) accepted", in)
		}
	}
	p, _ := ParsePlatform("")
	if p.OS != "linux" || p.Architecture != "amd64" {
		t.Errorf("default platform %v", p)
	}
}

func TestParseFile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want File
	}{
		{"agent.toml:/etc/kata/agent.toml", File{Src: "agent.toml", Dst: "/etc/kata/agent.toml"}},
		{"shadow:/etc/shadow:0000", File{Src: "shadow", Dst: "/etc/shadow", Mode: Perm(0)}},
		{"s:/usr/bin/s:4755", File{Src: "s", Dst: "/usr/bin/s", Mode: Perm(0o4755)}},
	} {
		got, err := ParseFile(tc.in)
		if err != nil || got.Src != tc.want.Src || got.Dst != tc.want.Dst || (got.Mode == nil) != (tc.want.Mode == nil) ||
			(got.Mode != nil && *got.Mode != *tc.want.Mode) {
			t.Errorf("ParseFile(%q) = %+v, %v", tc.in, got, err)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	for _, in := range []string{"nocolon", ":dst", "src:", "a:b:c:d", "a:b:999", "a:b:10000", "a:b:-1"} {
		if _, err := ParseFile(in); err == nil || strings.Contains(err.Error(), "--") {
			t.Errorf("ParseFile(%q): %v, want an error that names no flag", in, err)
		}
	}
}

// FuzzParse: whatever Parse accepts, its String form parses back to the
// same Source (read as syntax: whether a path of that name exists where
// the test runs is not part of the form).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"oci-layout:/a:b/c:v1", "oci-archive:x@" + digestA, "tar:t.tar", "dir:d",
		"docker-archive:s.tar", "localhost:5000/a/b:c", "alpine@" + digestA, "docker://x", "oci:x", "a:b:c", "docker://.", "docker://tar:x", "docker://oci:v1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := Parse(s)
		if err != nil {
			return
		}
		again, err := parse(src.String(), false)
		if err != nil || again != src {
			t.Fatalf("Parse(%q) = %+v; its String %q parses to %+v, %v", s, src, src.String(), again, err)
		}
	})
}

// TestParseReference: the registry grammar of Parse, for callers that
// take a registry reference alone (payload's push and pull).
func TestParseReference(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{"localhost:5000/pod/vm:1", "localhost:5000/pod/vm:1"},
		{"docker://127.0.0.1:5000/x/a:1", "127.0.0.1:5000/x/a:1"},
		{"ghcr.io/a/b@sha256:" + hex, "ghcr.io/a/b@sha256:" + hex},
	} {
		r, err := ParseReference(tc.in)
		if err != nil || r.String() != tc.want {
			t.Errorf("ParseReference(%q) = %v, %v; want %s", tc.in, r, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in, want string
		ggcr     bool // go-containerregistry alone accepts it
	}{
		{"reg.io/./x:1", `path component "."`, true},
		{"Not A Ref!", "", false},
		{"x@sha256:abc", "", false},
		{"", "", false},
	} {
		_, ggcrErr := name.ParseReference(tc.in)
		if (ggcrErr == nil) != tc.ggcr {
			t.Errorf("name.ParseReference(%q): %v", tc.in, ggcrErr)
		}
		if _, err := ParseReference(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseReference(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}
