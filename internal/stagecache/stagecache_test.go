package stagecache

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func store(t *testing.T, c *Cache, sum string, files map[string]string) *Entry {
	t.Helper()
	p, err := c.Begin("rootfs", sum)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		f, err := p.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(content)
	}
	e, err := p.Commit(context.Background(), map[string]string{"root_hash": "ab"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreLookup(t *testing.T) {
	c := Open(t.TempDir())
	k := Key{Stage: "rootfs", Revision: "r1", Config: json.RawMessage(`{"seed":"x"}`), Inputs: map[string]string{"agent": "sha256:00"}}
	sum, err := k.Sum()
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.Lookup(context.Background(), sum); e != nil || err != nil {
		t.Fatalf("empty cache: %v %v", e, err)
	}
	store(t, c, sum, map[string]string{"rootfs.img": "disk", "description.json": "{}"})
	e, err := c.Lookup(context.Background(), sum)
	if err != nil || e == nil {
		t.Fatalf("lookup: %v %v", e, err)
	}
	if b, _ := os.ReadFile(e.Path("rootfs.img")); string(b) != "disk" {
		t.Errorf("content %q", b)
	}
	if o, ok := e.Output("rootfs.img"); !ok || o.Size != 4 || o.SHA256 != fmt.Sprintf("%x", sha256.Sum256([]byte("disk"))) {
		t.Errorf("output %+v", o)
	}
	if string(e.Result) != `{"root_hash":"ab"}` {
		t.Errorf("result %s", e.Result)
	}

	// A corrupt file is detected, the entry removed, and the stage missed.
	os.WriteFile(e.Path("rootfs.img"), []byte("dusk"), 0o644)
	e2, err := c.Lookup(context.Background(), sum)
	var ce *CorruptError
	if e2 != nil || !errors.As(err, &ce) || ce.File != "rootfs.img" {
		t.Fatalf("corrupt entry: %v %v", e2, err)
	}
	if e3, err := c.Lookup(context.Background(), sum); e3 != nil || err != nil {
		t.Fatalf("after removal: %v %v", e3, err)
	}
	// Rebuilt over the removed entry.
	store(t, c, sum, map[string]string{"rootfs.img": "disk"})
	if e, err := c.Lookup(context.Background(), sum); e == nil || err != nil {
		t.Fatalf("rebuilt entry: %v %v", e, err)
	}
}

// TestCorruptDescription: an entry whose entry.json does not parse is a
// miss with one readable line (no stage is known before it is read).
func TestCorruptDescription(t *testing.T) {
	c := Open(t.TempDir())
	sum, _ := Key{Stage: "initrd"}.Sum()
	store(t, c, sum, map[string]string{"initrd.img": "cpio"})
	if err := os.WriteFile(filepath.Join(c.entryDir(sum), entryFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := c.Lookup(context.Background(), sum)
	var ce *CorruptError
	if e != nil || !errors.As(err, &ce) {
		t.Fatalf("lookup: %v %v", e, err)
	}
	if want := "stage cache: entry " + sum[:12] + ": entry.json: unreadable description"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestKeyChanges(t *testing.T) {
	base := Key{Stage: "initrd", Revision: "r1", Config: json.RawMessage(`{"compression":"zstd"}`), Inputs: map[string]string{"kernel": "sha256:01", "init": "sha256:02"}}
	sum0, _ := base.Sum()
	again := base
	again.Inputs = map[string]string{"init": "sha256:02", "kernel": "sha256:01"} // map order
	if s, _ := again.Sum(); s != sum0 {
		t.Error("key depends on map order")
	}
	for name, k := range map[string]Key{
		"stage":    {Stage: "rootfs", Revision: "r1", Config: base.Config, Inputs: base.Inputs},
		"revision": {Stage: "initrd", Revision: "r2", Config: base.Config, Inputs: base.Inputs},
		"config":   {Stage: "initrd", Revision: "r1", Config: json.RawMessage(`{"compression":"gzip"}`), Inputs: base.Inputs},
		"input":    {Stage: "initrd", Revision: "r1", Config: base.Config, Inputs: map[string]string{"kernel": "sha256:03", "init": "sha256:02"}},
		"schema":   {Stage: "initrd", Schema: Schema + 1, Revision: "r1", Config: base.Config, Inputs: base.Inputs},
	} {
		if s, _ := k.Sum(); s == sum0 {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
}

func TestLookupCancelled(t *testing.T) {
	c := Open(t.TempDir())
	sum, _ := Key{Stage: "x"}.Sum()
	store(t, c, sum, map[string]string{"f": "content"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Lookup(ctx, sum); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled lookup: %v", err)
	}
	// Cancellation is not corruption: the entry stays.
	if e, err := c.Lookup(context.Background(), sum); e == nil || err != nil {
		t.Fatalf("entry gone after a cancelled lookup: %v %v", e, err)
	}
}

func TestCanonical(t *testing.T) {
	b, err := Canonical(map[string]any{"b": "<&>", "a": 1})
	if err != nil || string(b) != `{"a":1,"b":"<&>"}` {
		t.Errorf("%s %v", b, err)
	}
}
