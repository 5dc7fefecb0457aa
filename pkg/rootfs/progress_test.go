package rootfs

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagebuilder/imagebuilder/internal/ocitest"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

// stepLog records the calls of an Options.Progress callback and checks
// its contract (internal/meter): a step begins with done 0, done grows,
// total stays.
type stepLog struct {
	t     *testing.T
	steps []stepRecord
}

type stepRecord struct {
	name        string
	done, total int64
}

func (l *stepLog) report(step string, done, total int64) {
	if done == 0 {
		l.steps = append(l.steps, stepRecord{name: step, total: total})
		return
	}
	if len(l.steps) == 0 {
		l.t.Fatalf("step %s reported %d done before it began", step, done)
	}
	s := &l.steps[len(l.steps)-1]
	if s.name != step || s.total != total || done < s.done {
		l.t.Errorf("step %s: %d of %d after %s's %d of %d", step, done, total, s.name, s.done, s.total)
	}
	s.done = done
}

func (l *stepLog) names() string {
	var n []string
	for _, s := range l.steps {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

func (l *stepLog) step(name string) stepRecord {
	for _, s := range l.steps {
		if s.name == name {
			return s
		}
	}
	return stepRecord{}
}

// TestProgress pulls an image from an in-process registry with a
// progress callback: the steps come in order, each with all of its total
// done; the pull counts the compressed layers; a rebuild from the blob
// cache has no pull; and the image is the one built without a callback.
func TestProgress(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img := ocitest.Image(t, nil, rootfstest.SmallLayers(t)...)
	ref, err := name.ParseReference(host + "/pod/base:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	var layerBytes int64
	for _, l := range ls {
		n, _ := l.Size()
		layerBytes += n
	}

	dir := t.TempDir()
	opts := Options{Sources: srcs(t, host+"/pod/base:v1"), Agent: fakeAgent(t, dir), Seed: "s", CacheDir: filepath.Join(dir, "cache")}
	plain, err := buildFile(t, opts, filepath.Join(dir, "plain.img"))
	if err != nil {
		t.Fatal(err)
	}

	// A fresh blob cache: the layers are pulled.
	for i, want := range []string{"pull,flatten,erofs,verity", "flatten,erofs,verity"} {
		rec := &stepLog{t: t}
		o := opts
		o.CacheDir = filepath.Join(dir, "cache2")
		o.Progress = rec.report
		out := filepath.Join(dir, "progress.img")
		d, err := buildFile(t, o, out)
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.names(); got != want {
			t.Errorf("build %d: steps %s, want %s", i+1, got, want)
		}
		for _, s := range rec.steps {
			if s.total <= 0 || s.done != s.total {
				t.Errorf("build %d: step %s: %d of %d bytes done", i+1, s.name, s.done, s.total)
			}
		}
		if p := rec.step("pull"); i == 0 && p.total != layerBytes {
			t.Errorf("pull of %d bytes, want the layers' %d", p.total, layerBytes)
		}
		if f := rec.step("flatten"); f.total != layerBytes {
			t.Errorf("flatten of %d bytes, want the layers' %d", f.total, layerBytes)
		}
		if v := rec.step("verity"); v.total != d.Filesystem.Size {
			t.Errorf("verity of %d bytes, want the file system's %d", v.total, d.Filesystem.Size)
		}
		if sha256File(t, out) != sha256File(t, filepath.Join(dir, "plain.img")) || d.Verity.RootHash != plain.Verity.RootHash {
			t.Errorf("build %d with a progress callback differs from the one without", i+1)
		}
	}
}
