package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagebuilder/imagebuilder/internal/ocitest"
)

// ent is one entry of a test tar.
type ent struct {
	name string
	typ  byte
	mode int64
	body string
	link string
	size int64 // the header's size when not len(body): the tar ends after body
	pax  map[string]string
}

func tarOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link, PAXRecords: e.pax}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
			if e.size != 0 {
				h.Size = e.size
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
			if e.size != 0 && e.size != int64(len(e.body)) {
				return buf.Bytes() // cut short on purpose
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeTar(t testing.TB, dir, name string, b []byte) Source {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Source{Kind: Tar, Path: p}
}

// contents reads every file of a Flat back, by path.
func contents(t testing.TB, f *Flat) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := f.Contents(context.Background(), func(i int, r io.Reader) error {
		b, err := io.ReadAll(r)
		out[f.Entries[i].Path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeLayout writes img as an OCI layout in dir, tagged tag.
func writeLayout(t testing.TB, dir string, img v1.Image, tag string) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
}

// hexDigest returns a digest's hex, failing the test on an error.
func hexDigest(t testing.TB) func(v1.Hash, error) string {
	return func(h v1.Hash, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return h.Hex
	}
}

// TestResolved checks what sources resolve to against go-containerregistry's
// own digests, and that a pinned source reads the same image, also when
// the pinned manifest sits below an image index.
func TestResolved(t *testing.T) {
	ctx := context.Background()
	hx := hexDigest(t)
	dir := t.TempDir()
	l1 := tarOf(t, ent{name: "etc/os-release", body: "ID=test\n"})
	l2 := tarOf(t, ent{name: "usr/bin/tool", body: "tool", mode: 0o755})
	img := ocitest.Image(t, nil, l1, l2)
	lay := filepath.Join(dir, "layout")
	writeLayout(t, lay, img, "v1")

	want := Resolved{Source: "oci-layout:" + lay + ":v1", Kind: OCILayout, Platform: "linux/amd64",
		ManifestDigest: hx(img.Digest()), ConfigDigest: hx(img.ConfigName())}
	want.Pinned = "oci-layout:" + lay + "@sha256:" + want.ManifestDigest
	ls, _ := img.Layers()
	for _, l := range ls {
		size, _ := l.Size()
		mt, _ := l.MediaType()
		want.Layers = append(want.Layers, LayerDigest{Digest: hx(l.Digest()), DiffID: hx(l.DiffID()), MediaType: string(mt), Size: size})
	}
	src, _ := Parse("oci-layout:" + lay + ":v1")
	tarSrc := writeTar(t, dir, "extra.tar", tarOf(t, ent{name: "etc/extra", body: "x"}))
	f, err := Flatten(ctx, []Source{src, tarSrc}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sources) != 2 || fmt.Sprint(f.Sources[0]) != fmt.Sprint(want) {
		t.Fatalf("resolved:\n%+v\nwant\n%+v", f.Sources, want)
	}
	tarSum := fmt.Sprintf("%x", sha256.Sum256(mustRead(t, tarSrc.Path)))
	if r := f.Sources[1]; r.SHA256 != tarSum || r.Pinned != tarSrc.String()+"@sha256:"+tarSum || r.Kind != Tar {
		t.Errorf("tar resolved to %+v, want sha256 %s", r, tarSum)
	}
	base := contents(t, f)

	// Resolve, without reading layers, says the same as Flatten.
	for i, s := range []Source{src, tarSrc} {
		r, err := Resolve(ctx, s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(*r) != fmt.Sprint(f.Sources[i]) {
			t.Errorf("Resolve(%s) = %+v, Flatten resolved %+v", s, *r, f.Sources[i])
		}
	}
	if _, err := Resolve(ctx, Source{Kind: OCILayout, Path: lay, Tag: "nope"}, Options{}); err == nil {
		t.Error("Resolve of a tag the layout lacks succeeded")
	}

	// The pinned sources give the same tree.
	var pinned []Source
	for _, r := range f.Sources {
		p, err := r.Pin()
		if err != nil {
			t.Fatal(err)
		}
		pinned = append(pinned, p)
	}
	f2, err := Flatten(ctx, pinned, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(contents(t, f2)) != fmt.Sprint(base) {
		t.Error("pinned sources read a different tree")
	}
	// A pinned tar that changed is refused.
	os.WriteFile(tarSrc.Path, tarOf(t, ent{name: "etc/extra", body: "y"}), 0o644)
	var ce *CorruptError
	if _, err := Resolve(ctx, pinned[1], Options{}); !errors.As(err, &ce) {
		t.Errorf("Resolve of a changed pinned tar: %v, want a *CorruptError", err)
	}
	if _, err := Flatten(ctx, pinned, Options{}); !errors.As(err, &ce) || ce.Kind != "file" {
		t.Errorf("changed pinned tar: %v, want a CorruptError", err)
	}

	// A multi-platform index: the manifest for linux/arm64 is resolved
	// and pinned, though index.json lists only the index.
	arm := ocitest.Image(t, nil, tarOf(t, ent{name: "arm", body: "arm"}))
	cf, _ := arm.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, _ = mutate.ConfigFile(arm, cf)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	multi := filepath.Join(dir, "multi")
	p, _ := layout.Write(multi, empty.Index)
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "multi"})); err != nil {
		t.Fatal(err)
	}
	msrc, _ := Parse("oci-layout:" + multi + ":multi")
	f3, err := Flatten(ctx, []Source{msrc}, Options{Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f3.Sources[0]; got.ManifestDigest != hx(arm.Digest()) || got.Platform != "linux/arm64" {
		t.Errorf("multi-platform: resolved %+v", got)
	}
	mp, _ := f3.Sources[0].Pin()
	f4, err := Flatten(ctx, []Source{mp}, Options{Platform: "linux/arm64"})
	if err != nil {
		t.Fatalf("pinned platform manifest %s: %v", mp, err)
	}
	if c := contents(t, f4); c["arm"] != "arm" {
		t.Errorf("pinned arm64 manifest read %v", c)
	}

	// An image the caller holds.
	f5, err := Flatten(ctx, []Source{FromImage("held", img)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := f5.Sources[0]; r.Source != "image:held" || r.ManifestDigest != want.ManifestDigest || r.Pinned != "" {
		t.Errorf("image source resolved to %+v", r)
	}
	if fmt.Sprint(contents(t, f5)) != fmt.Sprint(contents(t, mustFlatten(t, src))) {
		t.Error("FromImage reads a different tree than the layout")
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustFlatten(t testing.TB, srcs ...Source) *Flat {
	t.Helper()
	f, err := Flatten(context.Background(), srcs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTypedErrors: hostile and malformed layers give errors a caller can
// test, each one line naming the layer and the entry.
func TestTypedErrors(t *testing.T) {
	dir := t.TempDir()
	insecureCases := []struct {
		ents   [][]ent
		entry  string
		reason string
	}{
		{[][]ent{{{name: "../../evil", body: "x"}}}, "../../evil", `path has a ".." component`},
		{[][]ent{{{name: "pw", typ: tar.TypeLink, link: "/etc/passwd"}}}, "pw", `hard link to absolute path "/etc/passwd"`},
		{[][]ent{{{name: "x", typ: tar.TypeLink, link: "a/../../out"}}}, "x", `hard link target "a/../../out": path has a ".." component`},
		{[][]ent{{{name: "lib", typ: tar.TypeSymlink, link: "/etc"}}, {{name: "lib/passwd", body: "x"}}}, "lib/passwd", `parent "lib" is not a directory`},
	}
	for i, c := range insecureCases {
		var srcs []Source
		for k, l := range c.ents {
			srcs = append(srcs, writeTar(t, dir, fmt.Sprintf("i%d-%d.tar", i, k), tarOf(t, l...)))
		}
		_, err := Flatten(context.Background(), srcs, Options{})
		var ip *InsecurePathError
		if !errors.Is(err, ErrInsecurePath) || !errors.As(err, &ip) || ip.Entry != c.entry || ip.Reason != c.reason ||
			ip.Layer != srcs[len(srcs)-1].String() || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v (%+v), want an InsecurePathError for %q: %s", c.entry, err, ip, c.entry, c.reason)
		}
	}
	formatCases := []struct {
		ents  []ent
		entry string
		want  string
	}{
		{[]ent{{name: "x", typ: tar.TypeLink, link: "nope"}}, "x", `hard link to "nope", which does not exist`},
		{[]ent{{name: "f", body: "x", pax: map[string]string{"SCHILY.xattr.system.foo": "1"}}}, "f", `extended attribute "system.foo"`},
		{[]ent{{name: strings.Repeat("n", 300), body: "x"}}, strings.Repeat("n", 300), "name component longer than 255 bytes"},
		{[]ent{{name: "huge", size: 1 << 40}}, "huge", "file size 1099511627776 is out of range"},
	}
	for i, c := range formatCases {
		_, err := Flatten(context.Background(), []Source{writeTar(t, dir, fmt.Sprintf("f%d.tar", i), tarOf(t, c.ents...))}, Options{})
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Entry != c.entry || !strings.Contains(err.Error(), c.want) || errors.Is(err, ErrInsecurePath) {
			t.Errorf("%.20s: %v, want a FormatError for the entry with %q", c.entry, err, c.want)
		}
	}
}

// TestTruncatedEntry is the recipe of issue 10: a layer entry whose size
// header says 60 GiB, with a body that ends after 4 KiB. The error names
// the entry, its declared size and what was there, and the work follows
// the real size.
func TestTruncatedEntry(t *testing.T) {
	layer := tarOf(t, ent{name: "big", size: 60 << 30, body: strings.Repeat("b", 4096)})
	img := ocitest.Image(t, nil, layer)
	dir := t.TempDir()
	writeLayout(t, dir, img, "v1")
	src, _ := Parse("oci-layout:" + dir + ":v1")
	_, err := Flatten(context.Background(), []Source{src}, Options{})
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Entry != "big" {
		t.Fatalf("err = %v, want a FormatError for entry big", err)
	}
	for _, want := range []string{"layer 1/1 (sha256:", `entry "big"`, "declared size 64424509440 bytes", "ends after 4096 bytes of it", "unexpected EOF"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The same as a plain tar file.
	_, err = Flatten(context.Background(), []Source{writeTar(t, t.TempDir(), "big.tar", layer)}, Options{})
	if err == nil || !strings.Contains(err.Error(), `entry "big": declared size 64424509440 bytes, but the stream ends after 4096 bytes of it`) {
		t.Errorf("tar source: %v", err)
	}
}

// TestEmptyTar: a tar: source must be a tar archive with entries.
func TestEmptyTar(t *testing.T) {
	dir := t.TempDir()
	var trailer bytes.Buffer
	tar.NewWriter(&trailer).Close()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty file, not a tar archive"},
		{"trailer only", trailer.Bytes(), "the archive holds no entries"},
		{"text", []byte("hello\n"), "not a tar archive: unexpected EOF"},
	} {
		src := writeTar(t, dir, c.name+".tar", c.data)
		_, err := Flatten(context.Background(), []Source{src}, Options{})
		var fe *FormatError
		if !errors.As(err, &fe) || err.Error() != src.String()+": "+c.want {
			t.Errorf("%s: %v, want %q", c.name, err, src.String()+": "+c.want)
		}
	}
}

// TestDirFileShrinks: a dir: file that shrinks between the listing (and
// the open) and the read is an error naming the file, every time.
func TestDirFileShrinks(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	os.MkdirAll("d4", 0o755)
	os.WriteFile("d4/grow", bytes.Repeat([]byte("g"), 100000), 0o644)
	os.WriteFile("d4/other", []byte("other"), 0o644)
	src, _ := Parse("dir:d4")
	for _, c := range []struct {
		name   string
		change func(p string)
		want   string
	}{
		{"shrinks", func(p string) { os.Truncate(p, 5000) }, "dir:d4: d4/grow changed during the build (it ended after 5000 of 100000 bytes)"},
		{"grows", func(p string) {
			f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}, "dir:d4: d4/grow changed during the build (it grew past 100000 bytes)"},
	} {
		os.WriteFile("d4/grow", bytes.Repeat([]byte("g"), 100000), 0o644)
		f := mustFlatten(t, src)
		testHookHostOpened = func(p string) {
			if p == "d4/grow" {
				c.change(p)
			}
		}
		// Read as the erofs writer does: exactly Size bytes, then the end.
		err := f.Contents(context.Background(), func(i int, r io.Reader) error {
			if _, err := io.ReadFull(r, make([]byte, f.Entries[i].Size)); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, r)
			return err
		})
		testHookHostOpened = nil
		var ce *ChangedError
		if !errors.As(err, &ce) || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// Changed before the open: caught by the size check.
	os.WriteFile("d4/grow", bytes.Repeat([]byte("g"), 100000), 0o644)
	f := mustFlatten(t, src)
	os.Truncate("d4/grow", 10)
	if err := f.Contents(context.Background(), func(int, io.Reader) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "d4/grow changed during the build (10 bytes, 100000 when listed)") {
		t.Errorf("shrunk before the read: %v", err)
	}
}

// TestTarChangedBetweenReads: a tar: file rewritten between the two reads
// is a CorruptError, not a tree of mixed content.
func TestTarChangedBetweenReads(t *testing.T) {
	dir := t.TempDir()
	src := writeTar(t, dir, "a.tar", tarOf(t, ent{name: "f", body: "one"}))
	f := mustFlatten(t, src)
	os.WriteFile(src.Path, tarOf(t, ent{name: "f", body: "two"}), 0o644)
	err := f.Contents(context.Background(), func(i int, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.What != src.Path {
		t.Errorf("err = %v, want a CorruptError naming %s", err, src.Path)
	}
}

// TestCancel: a cancelled context stops Flatten and Contents, with no
// result beside the error.
func TestCancel(t *testing.T) {
	dir := t.TempDir()
	var ents []ent
	for i := range 50 {
		ents = append(ents, ent{name: fmt.Sprintf("f%02d", i), body: strings.Repeat("x", 10000)})
	}
	src := writeTar(t, dir, "a.tar", tarOf(t, ents...))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if f, err := Flatten(ctx, []Source{src}, Options{}); f != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Flatten with a cancelled context: %v, %v", f, err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	f, err := Flatten(ctx, []Source{src}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	err = f.Contents(ctx, func(i int, r io.Reader) error {
		calls++
		cancel()
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("Contents after cancel: %v after %d files", err, calls)
	}
}

// TestRegistryCancel: a registry pull that stalls stops when the context
// is cancelled (remote.WithContext), and leaves no partial blob in the
// cache.
func TestRegistryCancel(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	stall := make(chan struct{})
	defer close(stall)
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 1000 { // a layer, not the config
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.WriteHeader(http.StatusOK)
				w.Write(body[:len(body)/2])
				w.(http.Flusher).Flush()
				select {
				case started <- struct{}{}:
				default:
				}
				select {
				case <-stall:
				case <-r.Context().Done():
				}
				return
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	// Incompressible, so that the gzip blob is large.
	var big []byte
	for sum := sha256.Sum256(nil); len(big) < 64<<10; sum = sha256.Sum256(sum[:]) {
		big = append(big, sum[:]...)
	}
	img := ocitest.Image(t, nil, tarOf(t, ent{name: "big", body: string(big)}))
	ref, _ := name.ParseReference(host + "/pod/base:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	src, _ := Parse(host + "/pod/base:v1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Flatten(ctx, []Source{src}, Options{CacheDir: cache})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Flatten returned before the stall: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the layer download never started")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flatten did not return after the context was cancelled")
	}
	var left []string
	filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("the cache holds %v after a cancelled download", left)
	}
}

// TestUpper: layers made by the caller follow the same rules, and a file
// over a directory is refused.
func TestUpper(t *testing.T) {
	dir := t.TempDir()
	base := writeTar(t, dir, "base.tar", tarOf(t, ent{name: "etc/", typ: tar.TypeDir, mode: 0o755}, ent{name: "etc/a", body: "a"}))
	host := filepath.Join(dir, "host.conf")
	os.WriteFile(host, []byte("conf"), 0o600)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o700)
	os.WriteFile(filepath.Join(tree, "etc", "b"), []byte("b"), 0o644)
	os.Chmod(tree, 0o700)
	f, err := Flatten(context.Background(), []Source{base}, Options{Upper: []Upper{
		{Name: "mem", Entries: []Entry{{Path: "/usr/bin/x", Mode: ModeRegular | 0o755, Data: []byte("x")},
			{Path: "etc/empty", Mode: ModeRegular | 0o444}, {Path: "lnk", Mode: ModeSymlink | 0o777, Linkname: "usr/bin/x"}}},
		{Name: "tree", Tree: tree},
		{Name: "files", Files: []File{{Src: host, Dst: "/etc/c"}, {Src: host, Dst: "/etc/d", Mode: Perm(0o640)}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range f.Entries {
		got[e.Path] = fmt.Sprintf("%o %d %d %s", e.Mode, e.Upper, e.Size, e.HostPath)
	}
	for p, want := range map[string]string{
		"etc/a": "100644 -1 1 ", "usr/bin/x": "100755 0 1 ", "etc/empty": "100444 0 0 ", "lnk": "120777 0 0 ",
		"etc/b": "100644 1 1 " + filepath.Join(tree, "etc", "b"), "etc": "40700 1 0 ",
		"etc/c": "100644 2 4 " + host, "etc/d": "100640 2 4 " + host,
	} {
		if got[p] != want {
			t.Errorf("%s: %q, want %q", p, got[p], want)
		}
	}
	if f.RootMode != ModeDir|0o755 {
		t.Errorf("an upper tree changed the root's mode to %o", f.RootMode)
	}
	if c := contents(t, f); c["etc/empty"] != "" || c["etc/c"] != "conf" || c["usr/bin/x"] != "x" {
		t.Errorf("contents %q", c)
	}
	_, err = Flatten(context.Background(), []Source{base}, Options{Upper: []Upper{{Name: "files", Files: []File{{Src: host, Dst: "/etc"}}}}})
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `files: entry "`+host+`:/etc": /etc is a directory`) {
		t.Errorf("file over a directory: %v", err)
	}
}
