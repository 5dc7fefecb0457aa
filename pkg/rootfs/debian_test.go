package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/internal/rootfstest"
)

// debianFixture returns the cache directory of the Debian bookworm minbase
// + systemd fixture made by scripts/fixtures/debian-systemd.sh.
func debianFixture(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("Debian fixture tests skipped with -short")
	}
	return fixtures.DebianSystemd(t)
}

// TestDebianSystemd builds the real systemd root and checks it with the
// reference tools and a full read-back against the flattened source.
func TestDebianSystemd(t *testing.T) {
	fix := debianFixture(t)
	dir := t.TempDir()
	agent := fakeAgent(t, dir)
	img := filepath.Join(dir, "rootfs.img")
	opts := Options{Sources: srcs(t, "oci-layout:"+filepath.Join(fix, "oci")+":latest"), Agent: agent, Seed: "debian"}
	d, err := buildFile(t, opts, img)
	if err != nil {
		t.Fatal(err)
	}
	checkOracles(t, img, d)
	checkGeometry(t, d)

	tarball, err := os.ReadFile(filepath.Join(fix, "rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	m.applyTar(t, tarball)
	tarball = nil
	m.applyTar(t, additions(t, agent))
	got := rootfstest.ReadBack(t, img)
	rootfstest.CompareTrees(t, got, m.describe())
	for p, want := range map[string]string{
		"/usr/sbin/init":                     "-> /lib/systemd/systemd",
		"/etc/systemd/system/default.target": "-> /usr/lib/systemd/system/kata-containers.target",
		"/etc/machine-id":                    "100444 0:0 size=0",
	} {
		if !strings.Contains(got[p], want) {
			t.Errorf("%s: %q, want %q", p, got[p], want)
		}
	}

	// The same tree from the tar gives the same bytes.
	opts.Sources = srcs(t, "tar:"+filepath.Join(fix, "rootfs.tar"))
	img2 := filepath.Join(dir, "rootfs2.img")
	if _, err := buildFile(t, opts, img2); err != nil {
		t.Fatal(err)
	}
	if sha256File(t, img) != sha256File(t, img2) {
		t.Error("oci-layout and tar sources of one tree give different images")
	}
}
