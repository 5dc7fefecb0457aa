package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/ocitest"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

// writeLayout writes an OCI image layout with the given (uncompressed) layer
// tars, gzip-compressing every second one, and returns its directory.
func writeLayout(t testing.TB, dir, arch string, layers [][]byte) string {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	os.MkdirAll(blobs, 0o755)
	put := func(b []byte) string {
		d := fmt.Sprintf("%x", sha256.Sum256(b))
		writeFile(t, filepath.Join(blobs, d), b)
		return "sha256:" + d
	}
	var diffIDs []string
	var descs []map[string]any
	for i, l := range layers {
		diffIDs = append(diffIDs, fmt.Sprintf("sha256:%x", sha256.Sum256(l)))
		blob, mt := l, "application/vnd.oci.image.layer.v1.tar"
		if i%2 == 1 {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(l)
			zw.Close()
			blob, mt = buf.Bytes(), "application/vnd.oci.image.layer.v1.tar+gzip"
		}
		descs = append(descs, map[string]any{"mediaType": mt, "digest": put(blob), "size": len(blob)})
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
		"layers": descs})
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{{
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(man), "size": len(man),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "v1"}}}})
	writeFile(t, filepath.Join(dir, "index.json"), idx)
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return dir
}

// multiPlatform rewrites a layout so that index.json points to an image
// index holding its image (as linux/amd64) and an arm64 image of other
// layers, as multi-platform images are published.
func multiPlatform(t testing.TB, layout string) {
	t.Helper()
	idx, _ := os.ReadFile(filepath.Join(layout, "index.json"))
	var ix struct {
		Manifests []map[string]any `json:"manifests"`
	}
	json.Unmarshal(idx, &ix)
	amd := ix.Manifests[0]
	delete(amd, "annotations")
	amd["platform"] = map[string]string{"os": "linux", "architecture": "amd64"}
	arm := writeLayout(t, filepath.Join(layout, "..", "arm"), "arm64", [][]byte{rootfstest.Tar(t, []rootfstest.TarEntry{{Name: "arm", Body: "arm"}})})
	aidx, _ := os.ReadFile(filepath.Join(arm, "index.json"))
	var ax struct {
		Manifests []map[string]any `json:"manifests"`
	}
	json.Unmarshal(aidx, &ax)
	armM := ax.Manifests[0]
	delete(armM, "annotations")
	armM["platform"] = map[string]string{"os": "linux", "architecture": "arm64"}
	filepath.Walk(filepath.Join(arm, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			writeFile(t, filepath.Join(layout, "blobs", "sha256", filepath.Base(p)), b)
		}
		return nil
	})
	inner, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{armM, amd}})
	d := fmt.Sprintf("%x", sha256.Sum256(inner))
	writeFile(t, filepath.Join(layout, "blobs", "sha256", d), inner)
	outer, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{{
		"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + d, "size": len(inner),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "multi"}}}})
	writeFile(t, filepath.Join(layout, "index.json"), outer)
}

// flatPlatforms copies a layout made by multiPlatform into dir with the
// platform manifests listed directly in index.json, all under the name
// "flat" (arm64 first), as some tools write multi-platform layouts.
func flatPlatforms(t testing.TB, multi, dir string) string {
	t.Helper()
	var outer, inner struct {
		Manifests []map[string]any `json:"manifests"`
	}
	b, _ := os.ReadFile(filepath.Join(multi, "index.json"))
	if err := json.Unmarshal(b, &outer); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(multi, "blobs", "sha256", strings.TrimPrefix(outer.Manifests[0]["digest"].(string), "sha256:")))
	if err := json.Unmarshal(b, &inner); err != nil {
		t.Fatal(err)
	}
	for _, m := range inner.Manifests {
		m["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "flat"}
	}
	ents, _ := os.ReadDir(filepath.Join(multi, "blobs", "sha256"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(multi, "blobs", "sha256", e.Name()))
		writeFile(t, filepath.Join(dir, "blobs", "sha256", e.Name()), b)
	}
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": inner.Manifests})
	writeFile(t, filepath.Join(dir, "index.json"), idx)
	return dir
}

// tarDir archives a directory (an oci-archive).
func tarDir(t testing.TB, dir, out string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var names []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if !fi.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, p := range names {
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	writeFile(t, out, buf.Bytes())
}

func TestSourceKinds(t *testing.T) {
	dir := t.TempDir()
	layers := rootfstest.SmallLayers(t)
	agent := fakeAgent(t, dir)
	m := newModel()
	for _, l := range layers {
		m.applyTar(t, l)
	}
	m.applyTar(t, additions(t, agent))
	want := m.describe()

	layout := writeLayout(t, filepath.Join(dir, "layout"), "amd64", layers)
	tarDir(t, layout, filepath.Join(dir, "image.oci.tar"))
	multi := writeLayout(t, filepath.Join(dir, "multi", "layout"), "amd64", layers)
	multiPlatform(t, multi)
	flat := flatPlatforms(t, multi, filepath.Join(dir, "flat"))
	// docker save format through go-containerregistry.
	img := ocitest.Image(t, mutate.MediaType(empty.Image, "application/vnd.docker.distribution.manifest.v2+json"), layers...)
	tag, _ := name.NewTag("example.com/test:v1")
	if err := tarball.WriteToFile(filepath.Join(dir, "docker.tar"), tag, img); err != nil {
		t.Fatal(err)
	}

	var ix struct{ Manifests []struct{ Digest string } }
	if b, err := os.ReadFile(filepath.Join(layout, "index.json")); err != nil || json.Unmarshal(b, &ix) != nil || len(ix.Manifests) != 1 {
		t.Fatalf("layout index.json: %v", err)
	}
	var sums []string
	for _, src := range []string{
		"oci-layout:" + layout + ":v1",
		"oci-layout:" + layout,
		"oci-layout:" + layout + "@" + ix.Manifests[0].Digest,
		"oci-archive:" + filepath.Join(dir, "image.oci.tar") + ":v1",
		"oci-archive:" + filepath.Join(dir, "image.oci.tar"),
		"oci-layout:" + multi + ":multi",
		"oci-layout:" + flat + ":flat",
		"docker-archive:" + filepath.Join(dir, "docker.tar"),
	} {
		t.Run(strings.ReplaceAll(strings.ReplaceAll(src, dir+"/", ""), "/", "_"), func(t *testing.T) {
			out := filepath.Join(dir, "out.img")
			_, err := buildFile(t, Options{Sources: srcs(t, src), Agent: agent, Seed: "s"}, out)
			if err != nil {
				t.Fatal(err)
			}
			rootfstest.CompareTrees(t, rootfstest.ReadBack(t, out), want)
			sums = append(sums, sha256File(t, out))
		})
	}
	// An oci-archive build leaves no descriptor open.
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	before := fds()
	buildOK(t, Options{Sources: srcs(t, "oci-archive:"+filepath.Join(dir, "image.oci.tar")), Agent: agent, Seed: "s"}, filepath.Join(dir, "fd.img"))
	if after := fds(); after != before {
		t.Errorf("oci-archive build: %d open descriptors before, %d after", before, after)
	}
	// A digest that the index does not list is an error naming it.
	bad := "sha256:" + strings.Repeat("0", 64)
	if _, err := buildFile(t, Options{Sources: srcs(t, "oci-layout:"+layout+"@"+bad), Agent: agent, Seed: "s"}, filepath.Join(dir, "bad.img")); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("unknown digest: err = %v", err)
	}
	// --platform picks the other image of the index.
	out := filepath.Join(dir, "arm.img")
	if _, err := buildFile(t, Options{Sources: srcs(t, "oci-layout:"+multi+":multi"), Platform: "linux/arm64", Agent: agent, Seed: "s"}, out); err != nil {
		t.Fatal(err)
	}
	if got := rootfstest.ReadBack(t, out); got["/arm"] == "" || got["/bin/sh"] != "" {
		t.Errorf("linux/arm64 did not pick the arm64 image")
	}
	if got := rootfstest.ReadBack(t, buildOK(t, Options{Sources: srcs(t, "oci-layout:"+flat+":flat"), Platform: "linux/arm64", Agent: agent, Seed: "s"}, filepath.Join(dir, "flat-arm.img"))); got["/arm"] == "" {
		t.Errorf("linux/arm64 did not pick the arm64 entry of a flat index")
	}
	if _, err := buildFile(t, Options{Sources: srcs(t, "oci-layout:"+flat+":flat"), Platform: "linux/s390x", Agent: agent, Seed: "s"}, filepath.Join(dir, "none.img")); err == nil || !strings.Contains(err.Error(), `no image for linux/s390x named "flat"`) {
		t.Errorf("no matching platform: err = %v", err)
	}
	for _, s := range sums[1:] {
		if s != sums[0] {
			t.Errorf("the same layers from different source kinds give different images: %v", sums)
		}
	}
}

// TestRegistry pulls a multi-layer image (whiteouts, opaque directory, hard
// links, symlinks) from an in-process registry on 127.0.0.1, and checks
// that a second build takes the layer blobs from the cache.
func TestRegistry(t *testing.T) {
	var blobGets atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	layers := rootfstest.SmallLayers(t)
	img := ocitest.Image(t, nil, layers...)
	ref, err := name.ParseReference(host + "/pod/base:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	agent := fakeAgent(t, dir)
	opts := Options{Sources: srcs(t, host+"/pod/base:v1"), Agent: agent, Seed: "s", CacheDir: cache}
	out := filepath.Join(dir, "a.img")
	if _, err := buildFile(t, opts, out); err != nil {
		t.Fatal(err)
	}
	m := newModel()
	for _, l := range layers {
		m.applyTar(t, l)
	}
	m.applyTar(t, additions(t, agent))
	rootfstest.CompareTrees(t, rootfstest.ReadBack(t, out), m.describe())

	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		if _, err := os.Stat(filepath.Join(cache, "sha256", d.Hex)); err != nil {
			t.Errorf("layer %s not cached: %v", d, err)
		}
	}
	before := blobGets.Load()
	if _, err := buildFile(t, opts, filepath.Join(dir, "b.img")); err != nil {
		t.Fatal(err)
	}
	// Only the config blob is fetched again; the layers come from the cache.
	if got := blobGets.Load() - before; got > 1 {
		t.Errorf("second build fetched %d blobs, want at most the config", got)
	}
	if sha256File(t, out) != sha256File(t, filepath.Join(dir, "b.img")) {
		t.Error("cached rebuild differs")
	}
	// The same image by digest, from the cache too.
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	before = blobGets.Load()
	byDigest := opts
	byDigest.Sources = srcs(t, host+"/pod/base@"+md.String())
	if _, err := buildFile(t, byDigest, filepath.Join(dir, "d.img")); err != nil {
		t.Fatal(err)
	}
	if got := blobGets.Load() - before; got > 1 {
		t.Errorf("build by digest fetched %d blobs, want at most the config", got)
	}
	if sha256File(t, out) != sha256File(t, filepath.Join(dir, "d.img")) {
		t.Error("build by digest differs from build by tag")
	}
	// A corrupted cache entry is caught by the digest check.
	d, _ := ls[0].Digest()
	p := filepath.Join(cache, "sha256", d.Hex)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, err := buildFile(t, opts, filepath.Join(dir, "c.img")); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Errorf("corrupted cached blob: err = %v", err)
	}
}

// TestHostile feeds bad layers; each must fail with one line naming the
// layer and entry, leave no output and write nothing outside it.
func TestHostile(t *testing.T) {
	cases := []struct {
		name   string
		layers [][]rootfstest.TarEntry
		want   string
	}{
		{"path traversal", [][]rootfstest.TarEntry{{{Name: "../../evil", Body: "x"}}}, `entry "../../evil": path has a ".." component`},
		{"inner traversal", [][]rootfstest.TarEntry{{{Name: "a/../../evil", Body: "x"}}}, `".." component`},
		{"absolute hard link", [][]rootfstest.TarEntry{{{Name: "pw", Type: tar.TypeLink, Link: "/etc/passwd"}}}, `entry "pw": hard link to absolute path "/etc/passwd"`},
		{"hard link escape", [][]rootfstest.TarEntry{{{Name: "x", Type: tar.TypeLink, Link: "../outside"}}}, `entry "x": hard link target "../outside"`},
		{"hard link to missing", [][]rootfstest.TarEntry{{{Name: "x", Type: tar.TypeLink, Link: "nope"}}}, `entry "x": hard link to "nope", which does not exist`},
		{"hard link to directory", [][]rootfstest.TarEntry{{{Name: "d", Type: tar.TypeDir}, {Name: "x", Type: tar.TypeLink, Link: "d"}}}, `hard link to directory "d"`},
		{"absurd size", [][]rootfstest.TarEntry{{{Name: "huge", Size: 1 << 40}}}, `entry "huge": file size 1099511627776 is out of range`},
		{"truncated data", [][]rootfstest.TarEntry{{{Name: "short", Size: 1 << 20, Body: "abc"}}}, `unexpected EOF`},
		{"through a symlink", [][]rootfstest.TarEntry{{{Name: "lib", Type: tar.TypeSymlink, Link: "/etc"}}, {{Name: "lib/passwd", Body: "x"}}}, `layer1.tar: entry "lib/passwd": parent "lib" is not a directory`},
		{"long name", [][]rootfstest.TarEntry{{{Name: strings.Repeat("n", 300), Body: "x"}}}, `name component longer than 255 bytes`},
		{"xattr namespace", [][]rootfstest.TarEntry{{{Name: "f", Body: "x", Xattrs: map[string]string{"system.foo": "1"}}}}, `entry "f": extended attribute "system.foo"`},
		{"root as file", [][]rootfstest.TarEntry{{{Name: ".", Body: "x"}}}, `the root must be a directory`},
		{"device out of range", [][]rootfstest.TarEntry{{{Name: "d", Type: tar.TypeChar, Major: 1 << 13}}}, `device number`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Agent: fakeAgent(t, dir), Seed: "s"}
			for i, l := range c.layers {
				p := writeFile(t, filepath.Join(dir, fmt.Sprintf("layer%d.tar", i)), rootfstest.Tar(t, l))
				opts.Sources = append(opts.Sources, srcs(t, "tar:"+p)...)
			}
			hostileBuild(t, dir, opts, c.want)
		})
	}

	t.Run("corrupted blob", func(t *testing.T) {
		dir := t.TempDir()
		layout := writeLayout(t, filepath.Join(dir, "layout"), "amd64", rootfstest.SmallLayers(t))
		var manifest struct {
			Layers []struct{ Digest string }
		}
		idx, _ := os.ReadFile(filepath.Join(layout, "index.json"))
		var ix struct{ Manifests []struct{ Digest string } }
		json.Unmarshal(idx, &ix)
		mb, _ := os.ReadFile(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(ix.Manifests[0].Digest, "sha256:")))
		json.Unmarshal(mb, &manifest)
		blob := filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(manifest.Layers[0].Digest, "sha256:"))
		b, _ := os.ReadFile(blob)
		b[len(b)-2000] ^= 0x55 // inside the tar's zero padding: tar reads fine, the digest does not
		os.WriteFile(blob, b, 0o644)
		opts := Options{Sources: srcs(t, "oci-layout:"+layout), Agent: fakeAgent(t, dir), Seed: "s"}
		hostileBuild(t, dir, opts, "layer 1/2 ("+manifest.Layers[0].Digest[:19]+"): blob digest mismatch")
	})
	t.Run("wrong architecture", func(t *testing.T) {
		dir := t.TempDir()
		layout := writeLayout(t, filepath.Join(dir, "layout"), "arm64", rootfstest.SmallLayers(t))
		opts := Options{Sources: srcs(t, "oci-layout:"+layout), Agent: fakeAgent(t, dir), Seed: "s"}
		hostileBuild(t, dir, opts, "image is for linux/arm64, not linux/amd64")
	})
}

// buildOK builds into out and fails the test on an error.
func buildOK(t testing.TB, opts Options, out string) string {
	t.Helper()
	if _, err := buildFile(t, opts, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// hostileBuild builds as the CLI does (atomicfile) in dir/out and checks
// the error and that nothing is left behind.
func hostileBuild(t *testing.T, dir string, opts Options, want string) {
	t.Helper()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	before := listAll(t, filepath.Dir(dir))
	out := filepath.Join(work, "rootfs.img")
	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), opts, f)
	f.Abort()
	if err == nil {
		t.Fatalf("build succeeded, want error %q", want)
	}
	msg := err.Error()
	if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one line containing %q", msg, want)
	}
	if after := listAll(t, filepath.Dir(dir)); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("files changed: before %v, after %v", before, after)
	}
}

func listAll(t *testing.T, root string) []string {
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

var _ = v1.Hash{}
