package payload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// testOutputDir is a synthetic output set with its payload and manifest.
func testOutputDir(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	set := writeOutputSet(t, out)
	writePayload(t, set, Options{Target: "qemu", CPU: "milan"})
	return out
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	sa, sb := snapshot(t, a), snapshot(t, b)
	delete(sa, ".")
	delete(sb, ".")
	if d := diffSnapshots(sa, sb); len(d) > 0 {
		t.Fatalf("%s and %s differ: %v", a, b, d)
	}
}

func localRegistry(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func TestPushPullInProcess(t *testing.T) {
	ctx := context.Background()
	out := testOutputDir(t)
	host := localRegistry(t, registry.New(registry.Logger(nilLogger())))
	ref := host + "/podvm/demo:v1"
	res, err := Push(ctx, out, ref)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 12 || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Fatalf("push: %+v", res)
	}
	// The manifest as the registry holds it.
	r, _ := name.ParseReference(ref)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	var m artifactManifest
	json.Unmarshal(desc.Manifest, &m)
	if desc.Digest.String() != res.Digest || m.ArtifactType != ArtifactType || m.Config.MediaType != emptyMediaType ||
		m.Layers[0].Annotations[titleKey] != "cmdline.txt" || bytes.Contains(desc.Manifest, []byte("created")) {
		t.Fatalf("manifest %s", desc.Manifest)
	}
	// Pull by tag and by digest: byte-identical files.
	for _, from := range []string{ref, host + "/podvm/demo@" + res.Digest} {
		dst := filepath.Join(t.TempDir(), "pulled")
		pr, err := Pull(ctx, from, dst, PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Digest != res.Digest || len(pr.Files) != 12 {
			t.Fatalf("pull: %+v", pr)
		}
		sameTree(t, out, dst)
	}
	// The verify hook sees the complete directory; its failure publishes
	// nothing.
	dst := filepath.Join(t.TempDir(), "pulled")
	_, err = Pull(ctx, ref, dst, PullOptions{Verify: func(_ context.Context, dir string) error {
		if _, err := os.Stat(filepath.Join(dir, "rootfs.img")); err != nil {
			return err
		}
		return errors.New("verify says no")
	}})
	if err == nil || !strings.Contains(err.Error(), "verify says no") {
		t.Fatalf("verify hook: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a failed verify left %s", dst)
	}
}

// TestPushReproducible: the same files give the same manifest digest,
// whatever the directory, mtimes or order of creation.
func TestPushReproducible(t *testing.T) {
	ctx := context.Background()
	a := testOutputDir(t)
	b := filepath.Join(t.TempDir(), "elsewhere")
	os.MkdirAll(b, 0o755)
	entries, _ := os.ReadDir(a)
	for i := len(entries) - 1; i >= 0; i-- {
		data, _ := os.ReadFile(filepath.Join(a, entries[i].Name()))
		writeTestFile(t, filepath.Join(b, entries[i].Name()), data)
		os.Chtimes(filepath.Join(b, entries[i].Name()), time.Unix(int64(i)*1000, 0), time.Unix(int64(i)*1000, 0))
	}
	x, err := NewArtifact(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := NewArtifact(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if x.Digest != y.Digest || !bytes.Equal(x.Manifest, y.Manifest) {
		t.Fatalf("digests %s and %s", x.Digest, y.Digest)
	}
	host := localRegistry(t, registry.New(registry.Logger(nilLogger())))
	r1, err := Push(ctx, a, host+"/x/a:1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Push(ctx, b, host+"/y/b:2")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Digest != r2.Digest || r1.Digest != x.Digest.String() {
		t.Fatalf("pushed digests %s, %s, computed %s", r1.Digest, r2.Digest, x.Digest)
	}
}

// tamperingHandler serves one blob with a flipped byte.
type tamperingHandler struct {
	next   http.Handler
	digest string
}

func (h tamperingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+h.digest) {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if len(body) > 0 {
		body[len(body)/2] ^= 1
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

func TestPullTamperedBlob(t *testing.T) {
	ctx := context.Background()
	out := testOutputDir(t)
	data, _ := os.ReadFile(filepath.Join(out, "initrd.img"))
	host := localRegistry(t, tamperingHandler{registry.New(registry.Logger(nilLogger())), "sha256:" + sumHex(data)})
	ref := host + "/podvm/demo:v1"
	if _, err := Push(ctx, out, ref); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	_, err := Pull(ctx, ref, dst, PullOptions{})
	var pe *PullError
	if !errors.As(err, &pe) || pe.File != "initrd.img" {
		t.Fatalf("pull of a tampered blob: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a failed pull left %s", dst)
	}
}

// TestPullChecksManifest: files that match their layer digests but not
// manifest.json (an artifact pushed from a tampered output directory)
// are refused, naming the file.
func TestPullChecksManifest(t *testing.T) {
	ctx := context.Background()
	out := testOutputDir(t)
	f, _ := os.OpenFile(filepath.Join(out, "vmlinuz"), os.O_WRONLY, 0)
	f.WriteAt([]byte{1}, 10)
	f.Close()
	host := localRegistry(t, registry.New(registry.Logger(nilLogger())))
	if _, err := Push(ctx, out, host+"/p/d:1"); err != nil {
		t.Fatal(err)
	}
	_, err := Pull(ctx, host+"/p/d:1", filepath.Join(t.TempDir(), "x"), PullOptions{})
	var pe *PullError
	if !errors.As(err, &pe) || pe.File != "vmlinuz" || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("err %v", err)
	}
}

// TestBadReference: a reference outside the distribution grammar is
// refused before any request (pkg/source's rule, which go-containerregistry
// alone would let through).
func TestBadReference(t *testing.T) {
	ctx := context.Background()
	for _, ref := range []string{"reg.example/./x:1", "Not A Ref!", ""} {
		if _, err := Push(ctx, t.TempDir(), ref); err == nil || !strings.Contains(err.Error(), "reference") {
			t.Errorf("Push to %q: %v", ref, err)
		}
		if _, err := Pull(ctx, ref, filepath.Join(t.TempDir(), "x"), PullOptions{}); err == nil || !strings.Contains(err.Error(), "reference") {
			t.Errorf("Pull from %q: %v", ref, err)
		}
	}
}

func TestLayout(t *testing.T) {
	ctx := context.Background()
	out := testOutputDir(t)
	lay := filepath.Join(t.TempDir(), "layout")
	res, err := WriteLayout(ctx, out, lay)
	if err != nil {
		t.Fatal(err)
	}
	// Twice: one entry in the index, same bytes.
	index1, _ := os.ReadFile(filepath.Join(lay, "index.json"))
	if res2, err := WriteLayout(ctx, out, lay); err != nil || res2.Digest != res.Digest {
		t.Fatal(err)
	}
	index2, _ := os.ReadFile(filepath.Join(lay, "index.json"))
	if !bytes.Equal(index1, index2) {
		t.Fatal("a second write changed index.json")
	}
	// go-containerregistry reads the layout.
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != res.Digest || im.Manifests[0].ArtifactType != ArtifactType {
		t.Fatalf("index %+v %v", im, err)
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	if _, err := PullLayout(ctx, lay, "", dst, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, out, dst)
	// Pulling again over an output set replaces it.
	if _, err := PullLayout(ctx, lay, res.Digest, dst, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	// A directory that is not an output set is not replaced.
	other := t.TempDir()
	writeTestFile(t, filepath.Join(other, "notes.txt"), []byte("mine"))
	if _, err := PullLayout(ctx, lay, "", other, PullOptions{}); err == nil {
		t.Fatal("pull replaced an unrelated directory")
	}
	// A tampered blob is named.
	data, _ := os.ReadFile(filepath.Join(out, "rootfs.img"))
	blob := filepath.Join(lay, "blobs", "sha256", sumHex(data))
	data[12345] ^= 0x80
	writeTestFile(t, blob, data)
	_, err = PullLayout(ctx, lay, "", filepath.Join(t.TempDir(), "x"), PullOptions{})
	var pe *PullError
	if !errors.As(err, &pe) || pe.File != "rootfs.img" {
		t.Fatalf("tampered layout blob: %v", err)
	}
}

// TestPullRefusesHostileManifest: titles that are paths, duplicates, a
// foreign artifact type.
func TestPullRefusesHostileManifest(t *testing.T) {
	out := testOutputDir(t)
	a, err := NewArtifact(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(m *artifactManifest){
		"path title":   func(m *artifactManifest) { m.Layers[0].Annotations = map[string]string{titleKey: "../etc/passwd"} },
		"dot title":    func(m *artifactManifest) { m.Layers[0].Annotations = map[string]string{titleKey: ".hidden"} },
		"no title":     func(m *artifactManifest) { m.Layers[0].Annotations = nil },
		"duplicate":    func(m *artifactManifest) { m.Layers[1].Annotations = m.Layers[0].Annotations },
		"foreign type": func(m *artifactManifest) { m.ArtifactType = "application/vnd.example" },
		"docker":       func(m *artifactManifest) { m.MediaType = "application/vnd.docker.distribution.manifest.v2+json" },
	} {
		var m artifactManifest
		json.Unmarshal(a.Manifest, &m)
		mod(&m)
		raw, _ := json.Marshal(m)
		dst := filepath.Join(t.TempDir(), "x")
		_, err := pullInto(context.Background(), raw, layoutBlobs{"/nonexistent"}, dst, PullOptions{})
		var pe *PullError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// TestRealRegistry pushes to and pulls from Debian's docker-registry
// (distribution 2.8), started on a free loopback port with its own
// storage, and tampers with a blob in that storage.
func TestRealRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		fixtures.Missing(t, "docker-registry not installed (Debian package docker-registry; make deps installs it)")
	}
	host, storage := startRegistry(t, bin)
	ctx := context.Background()
	out := testOutputDir(t)
	ref := host + "/podvm/demo:v1"
	res, err := Push(ctx, out, ref)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Push(ctx, out, ref)
	if err != nil || again.Digest != res.Digest {
		t.Fatalf("second push: %v %v", again, err)
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	if _, err := Pull(ctx, host+"/podvm/demo@"+res.Digest, dst, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, out, dst)

	data, _ := os.ReadFile(filepath.Join(out, "rootfs.img"))
	sum := sumHex(data)
	blob := filepath.Join(storage, "docker/registry/v2/blobs/sha256", sum[:2], sum, "data")
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("registry storage: %v", err)
	}
	data[777] ^= 1
	writeTestFile(t, blob, data)
	_, err = Pull(ctx, ref, filepath.Join(t.TempDir(), "x"), PullOptions{})
	var pe *PullError
	if !errors.As(err, &pe) || pe.File != "rootfs.img" {
		t.Fatalf("pull after tampering with the registry's storage: %v", err)
	}
}

// startRegistry runs docker-registry on 127.0.0.1 with a free port and a
// temporary storage directory, stopped when the test ends.
func startRegistry(t testing.TB, bin string) (host, storage string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host = l.Addr().String()
	l.Close()
	storage = t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeTestFile(t, cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, storage, host)))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return host, storage
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not start on %s: %v\n%s", host, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
