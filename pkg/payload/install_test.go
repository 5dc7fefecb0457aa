package payload

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestInstallKeepsDefaultRuntime: a config whose CRI section names no
// runtime relies on containerd's default runc; adding ours must not take
// it away (containerd replaces the whole runtimes map).
func TestInstallKeepsDefaultRuntime(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.example/pause:3.9\"\n"))
	before := containerdDump(t, cfg)
	if _, err := Install(context.Background(), out, InstallOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	after := containerdDump(t, cfg)
	checkRuntime(t, after, p.Runtime)
	runc := runtimeOf(after, "runc")
	if runc == nil || runc["runtime_type"] != "io.containerd.runc.v2" {
		t.Fatalf("runc as containerd sees it after install: %v", runc)
	}
	// runc's options table is now empty where the default listed the
	// zero values of runc's options: the same options for the shim.
	for _, m := range []map[string]any{before, after} {
		delete(runtimeOf(m, "runc"), "options")
	}
	delete(lookupTable(after, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"}), p.Handler)
	if !reflect.DeepEqual(before, after) {
		t.Fatal("containerd's effective config changed beyond the runtime")
	}
}

// TestInstallIdempotent: a second install changes nothing, and the tree
// is the same.
func TestInstallIdempotent(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte(userConfig))
	ctx := context.Background()
	res, err := Install(ctx, out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Restart) != 2 || !strings.Contains(res.Restart[0], "restart containerd") {
		t.Fatalf("first install: %+v", res)
	}
	for _, f := range p.Plan.Files {
		st, err := os.Stat(filepath.Join(root, f.Path))
		if err != nil || st.Mode().Perm() != 0o644 || st.Size() != f.Size {
			t.Fatalf("%s: %v %v", f.Path, st, err)
		}
	}
	first := snapshot(t, root)
	res, err = Install(ctx, out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Method != MethodUnchanged || len(res.Restart) != 1 {
		t.Fatalf("second install: %+v", res)
	}
	if d := diffSnapshots(first, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("second install changed the tree: %v", d)
	}
	// A damaged installed file is replaced; the config stays.
	damaged := filepath.Join(root, p.Plan.Files[len(p.Plan.Files)-1].Path)
	os.WriteFile(damaged, []byte("x"), 0o644)
	res, err = Install(ctx, out, InstallOptions{Root: root})
	if err != nil || res.Method != MethodUnchanged || !res.Changed {
		t.Fatalf("repair: %+v %v", res, err)
	}
	if d := diffSnapshots(first, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("repair: %v", d)
	}
}

// TestInstallCorruptOutput: an output file that does not match the plan
// is refused, naming it, and nothing is installed.
func TestInstallCorruptOutput(t *testing.T) {
	out, _ := testPayload(t)
	f, err := os.OpenFile(filepath.Join(out, "initrd.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, 1000)
	f.Close()
	root := t.TempDir()
	_, err = Install(context.Background(), out, InstallOptions{Root: root})
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, "initrd.img") {
		t.Fatalf("err %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("a failed install left %v", entries)
	}
}

// failingInstall installs into root with a failure and checks that root
// is as it was.
func checkUnchanged(t *testing.T, root string, before map[string]string, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("install did not fail")
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("a failed install (%v) changed the tree: %v", err, d)
	}
}

func TestInstallFailureMidway(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte(userConfig))
	before := snapshot(t, root)
	// The third file fails: two are written already, none is named.
	n := 0
	testHookCopy = func(dst string) error {
		if n++; n == 3 {
			return errors.New("injected failure")
		}
		return nil
	}
	defer func() { testHookCopy = nil }()
	_, err := Install(context.Background(), out, InstallOptions{Root: root})
	checkUnchanged(t, root, before, err)
	testHookCopy = nil
	if _, err := Install(context.Background(), out, InstallOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(cfg); !strings.Contains(string(data), p.Handler) {
		t.Fatal("the install after the failure did not configure the runtime")
	}
}

// mountTmpfs mounts a tmpfs of size bytes at dir (root only).
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// TestInstallDiskFull installs onto a tmpfs too small for the root disk:
// the old configuration stays, nothing new is left.
func TestInstallDiskFull(t *testing.T) {
	out, _ := testPayload(t)
	root := t.TempDir()
	mountTmpfs(t, root, "128k")
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte(userConfig))
	before := snapshot(t, root)
	_, err := Install(context.Background(), out, InstallOptions{Root: root})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("want ENOSPC, got %v", err)
	}
	checkUnchanged(t, root, before, err)
}

// TestInstallReadOnly installs onto a read-only file system.
func TestInstallReadOnly(t *testing.T) {
	out, _ := testPayload(t)
	root := t.TempDir()
	mountTmpfs(t, root, "4m")
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte(userConfig))
	before := snapshot(t, root)
	if err := exec.Command("mount", "-o", "remount,ro", root).Run(); err != nil {
		t.Skipf("remount read-only: %v", err)
	}
	_, err := Install(context.Background(), out, InstallOptions{Root: root})
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("want EROFS, got %v", err)
	}
	checkUnchanged(t, root, before, err)
}

// TestInstallRefusesBadConfig: a containerd config that is not TOML, or
// of version 1, is an error naming it; nothing changes.
func TestInstallRefusesBadConfig(t *testing.T) {
	out, _ := testPayload(t)
	for name, cfgText := range map[string]string{
		"not toml":  "version = 2\n[plugins\n",
		"version 1": "[plugins.cri]\n  sandbox_image = \"x\"\n",
		"inline":    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
	} {
		root := t.TempDir()
		cfg := filepath.Join(root, "etc/containerd/config.toml")
		os.MkdirAll(filepath.Dir(cfg), 0o755)
		writeTestFile(t, cfg, []byte(cfgText))
		before := snapshot(t, root)
		_, err := Install(context.Background(), out, InstallOptions{Root: root})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.File != DefaultContainerdConfig {
			t.Errorf("%s: %v", name, err)
		}
		checkUnchanged(t, root, before, err)
	}
}

// TestInstallRefusesLinkOutOfRoot: a node tree being baked may hold
// absolute symbolic links (/opt -> /var/opt) that name a path of the tree;
// followed from the host they lead out of --root. Install refuses them,
// naming the path, and writes nothing, neither outside nor under the root.
func TestInstallRefusesLinkOutOfRoot(t *testing.T) {
	out, _ := testPayload(t)
	for _, link := range []string{"opt", "etc/containerd", "etc/containerd/config.toml"} {
		t.Run(link, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			target := outside
			if strings.HasSuffix(link, ".toml") {
				os.MkdirAll(filepath.Join(root, "etc/containerd"), 0o755)
				target = filepath.Join(outside, "config.toml")
				writeTestFile(t, target, []byte(userConfig))
			}
			if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
			before, beforeOut := snapshot(t, root), snapshot(t, outside)
			_, err := Install(context.Background(), out, InstallOptions{Root: root})
			var ie *InstallError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "outside the root") {
				t.Errorf("err %v", err)
			}
			checkUnchanged(t, root, before, err)
			if d := diffSnapshots(beforeOut, snapshot(t, outside)); len(d) > 0 {
				t.Errorf("install wrote outside the root: %v", d)
			}
		})
	}
	// A link that stays inside the root is followed.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var/opt"), 0o755)
	os.Symlink("var/opt", filepath.Join(root, "opt"))
	if _, err := Install(context.Background(), out, InstallOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "var/opt")); len(ents) != 1 {
		t.Errorf("var/opt: %v", ents)
	}
}
