package audit

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// testTool is the tool the test builds record.
var testTool = podvm.Tool{Name: "imagebuilder", Version: "(test)", Revision: "test"}

// reproTree copies pkg/podvm's reproducibility config and its inputs
// (testdata/repro and the synthetic bzImage) into root, keeping their
// relative places, and returns the config's path.
func reproTree(t testing.TB, root string) string {
	t.Helper()
	src := filepath.Join("..", "podvm", "testdata", "repro")
	dst := filepath.Join(root, "pkg", "podvm", "testdata", "repro")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	// os.CopyFS drops the executable bits the agent and init have.
	for _, n := range []string{"agent", "init"} {
		if err := os.Chmod(filepath.Join(dst, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	k := filepath.Join(root, "testdata", "igvm", "inputs", "synthetic-bzImage")
	if err := os.MkdirAll(filepath.Dir(k), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "igvm", "inputs", "synthetic-bzImage"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dst, "podvm.yaml")
}

// firmwarePath is the repro config's OVMF image (its qemu-ovmf target's).
func firmwarePath(cfg string) string {
	return filepath.Join(filepath.Dir(cfg), "ovmf_AmdSev_suffix.bin")
}

// buildRepro builds the config at cfgPath into out.
func buildRepro(t testing.TB, cfgPath, out string) *podvm.Manifest {
	t.Helper()
	cfg, err := podvm.Load(cfgPath, podvm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := podvm.Build(context.Background(), cfg, podvm.BuildOptions{Output: out, Tool: testTool})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	reproOnce sync.Once
	reproDir  string
	reproCfg  string
	reproErr  error
)

// fresh returns a private copy of one build of the reproducibility
// config (built once per test binary) and the config's path.
func fresh(t *testing.T) (out, cfg string) {
	t.Helper()
	reproOnce.Do(func() {
		dir, err := os.MkdirTemp("", "audit-test-")
		if err != nil {
			reproErr = err
			return
		}
		reproCfg = reproTree(t, dir)
		reproDir = filepath.Join(dir, "out")
		buildRepro(t, reproCfg, reproDir)
	})
	if reproErr != nil {
		t.Fatal(reproErr)
	}
	out = filepath.Join(t.TempDir(), "out")
	if err := os.CopyFS(out, os.DirFS(reproDir)); err != nil {
		t.Fatal(err)
	}
	return out, reproCfg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if reproDir != "" {
		os.RemoveAll(filepath.Dir(reproDir))
	}
	if fuzzBase != nil {
		os.RemoveAll(fuzzBase.root)
	}
	os.Exit(code)
}
