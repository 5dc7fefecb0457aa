package payload

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
)

// containerdDump runs the real containerd's `config dump` on a config
// file and returns the effective configuration.
func containerdDump(t *testing.T, config string) map[string]any {
	t.Helper()
	return containerdDumpIn(t, config, "/")
}

// containerdDumpIn runs it in the working directory cwd (the node's root
// directory, which relative import patterns are taken from).
func containerdDumpIn(t *testing.T, config, cwd string) map[string]any {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		fixtures.Missing(t, "containerd not installed (Debian package containerd; make deps installs it)")
	}
	cmd := exec.Command(bin, "--config", config, "config", "dump")
	cmd.Dir = cwd
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("containerd --config %s config dump: %v\n%s", config, err, out)
	}
	var m map[string]any
	if err := toml.Unmarshal(out, &m); err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	return m
}

func containerdVersion(t *testing.T) string {
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("containerd --version: %q", out)
	}
	return f[2]
}

func criTable(m map[string]any) map[string]any {
	return lookupTable(m, []string{"plugins", "io.containerd.grpc.v1.cri"})
}

func runtimeOf(m map[string]any, handler string) map[string]any {
	return lookupTable(m, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", handler})
}

// checkRuntime says whether the dumped runtime entry is ours.
func checkRuntime(t *testing.T, m map[string]any, r ContainerdRuntime) {
	t.Helper()
	got := runtimeOf(m, r.Handler)
	if got == nil {
		t.Fatalf("containerd does not see runtime %s", r.Handler)
	}
	opts, _ := got["options"].(map[string]any)
	if got["runtime_type"] != r.RuntimeType || got["runtime_path"] != r.RuntimePath ||
		got["privileged_without_host_devices"] != r.PrivilegedWithoutHostDevices ||
		!reflect.DeepEqual(got["pod_annotations"], decodedForm(r.PodAnnotations)) ||
		opts["ConfigPath"] != r.ConfigPath {
		t.Fatalf("runtime %s as containerd sees it: %v", r.Handler, got)
	}
}

func testPayload(t *testing.T) (string, *Payload) {
	out := t.TempDir()
	set := writeOutputSet(t, out)
	p := writePayload(t, set, Options{Target: "qemu", CPU: "milan", RuntimePath: "/opt/" + Placeholder + "/bin/containerd-shim-kata-v2"})
	return out, p
}

// TestContainerdLoadsDropIn: the real containerd reads
// containerd-runtime.toml through imports and sees our runtime.
func TestContainerdLoadsDropIn(t *testing.T) {
	_, p := testPayload(t)
	dir := t.TempDir()
	dropIn := filepath.Join(dir, ContainerdDropInFile)
	writeTestFile(t, dropIn, p.ContainerdDropIn())
	main := filepath.Join(dir, "config.toml")
	writeTestFile(t, main, []byte("version = 2\nimports = ["+quoteTOML(dropIn)+"]\n"))
	checkRuntime(t, containerdDump(t, main), p.Runtime)
}

// TestContainerd1xImportReplacesCRI pins the measured behaviour that
// decides how install edits the config: containerd 1.x replaces the main
// config's whole CRI section with an imported file's.
func TestContainerd1xImportReplacesCRI(t *testing.T) {
	_, p := testPayload(t)
	dir := t.TempDir()
	dropIn := filepath.Join(dir, ContainerdDropInFile)
	writeTestFile(t, dropIn, p.ContainerdDropIn())
	main := filepath.Join(dir, "config.toml")
	user := "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.example/pause:3.9\"\n"
	writeTestFile(t, main, []byte(user))
	if got := criTable(containerdDump(t, main))["sandbox_image"]; got != "registry.example/pause:3.9" {
		t.Fatalf("without the import: sandbox_image %v", got)
	}
	writeTestFile(t, main, []byte("imports = ["+quoteTOML(dropIn)+"]\n"+user))
	got := criTable(containerdDump(t, main))["sandbox_image"]
	if v := containerdVersion(t); strings.HasPrefix(v, "1.") {
		if got == "registry.example/pause:3.9" {
			t.Fatalf("containerd %s kept sandbox_image through an import of the CRI plugin; docs/node-payload.md says 1.x drops it", v)
		}
	} else {
		t.Logf("containerd %s: sandbox_image with the import: %v", v, got)
	}
}

// userConfig is a user's containerd 1.x config with settings of its own.
const userConfig = `# Node containerd config, managed by hand.
version = 2
root = "/var/lib/containerd"
oom_score = -999

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.example/pause:3.9" # pinned
  enable_unprivileged_ports = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
`

// TestInstallKeepsUserSettings: install adds the runtime to a user's
// config in place; containerd's effective config is the old one plus the
// runtime, nothing else.
func TestInstallKeepsUserSettings(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	writeTestFile(t, cfg, []byte(userConfig))
	before := containerdDump(t, cfg)
	res, err := Install(context.Background(), out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodEdited || res.ContainerdConfig != DefaultContainerdConfig || res.Backup == "" {
		t.Fatalf("result %+v", res)
	}
	after := containerdDump(t, cfg)
	checkRuntime(t, after, p.Runtime)
	delete(lookupTable(after, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"}), p.Handler)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("containerd's effective config changed beyond the runtime")
	}
	data, _ := os.ReadFile(cfg)
	if !bytes.HasPrefix(data, []byte(userConfig)) {
		t.Fatalf("the user's file is not kept byte for byte:\n%s", data)
	}
	backup, err := os.ReadFile(filepath.Join(root, res.Backup))
	if err != nil || string(backup) != userConfig {
		t.Fatalf("backup %s: %v", res.Backup, err)
	}
}

// TestInstallWithoutConfig: on a node without a containerd config,
// install writes one that holds the runtime and keeps containerd's
// defaults (runc stays).
func TestInstallWithoutConfig(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	res, err := Install(context.Background(), out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodCreated {
		t.Fatalf("method %s", res.Method)
	}
	m := containerdDump(t, filepath.Join(root, "etc/containerd/config.toml"))
	checkRuntime(t, m, p.Runtime)
	if runtimeOf(m, "runc") == nil {
		t.Errorf("containerd lost its default runc runtime")
	}
}

// TestInstallIntoCRIImport: when an imported file configures the CRI
// plugin (so containerd 1.x takes the CRI section from it), install puts
// the runtime there, and containerd sees it with the file's settings.
func TestInstallIntoCRIImport(t *testing.T) {
	out, p := testPayload(t)
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Join(root, "etc/containerd/conf.d"), 0o755)
	// A relative import pattern: containerd takes it from its working
	// directory, which for the dump is the test's root, as "/" is for the
	// service on a node.
	confd := filepath.Join(root, "etc/containerd/conf.d")
	writeTestFile(t, cfg, []byte("version = 2\nimports = [\"etc/containerd/conf.d/*.toml\"]\n"))
	cri := filepath.Join(confd, "10-cri.toml")
	writeTestFile(t, cri, []byte("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.example/pause:3.9\"\n"))
	writeTestFile(t, filepath.Join(confd, "20-other.toml"), []byte("version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"/opt/containerd\"\n"))
	res, err := Install(context.Background(), out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodEdited || res.ContainerdConfig != "/etc/containerd/conf.d/10-cri.toml" {
		t.Fatalf("result %+v", res)
	}
	m := containerdDumpIn(t, cfg, root)
	checkRuntime(t, m, p.Runtime)
	if criTable(m)["sandbox_image"] != "registry.example/pause:3.9" {
		t.Errorf("sandbox_image lost")
	}
	if main, _ := os.ReadFile(cfg); string(main) != "version = 2\nimports = [\"etc/containerd/conf.d/*.toml\"]\n" {
		t.Errorf("main config changed: %s", main)
	}
}

// TestInstallDropInVersion3: a version 3 config (containerd 2.x, which
// merges imported plugin sections key by key) that imports a directory by
// pattern gets a drop-in there, and the main config stays as it is.
func TestInstallDropInVersion3(t *testing.T) {
	out := t.TempDir()
	set := writeOutputSet(t, out)
	p := writePayload(t, set, Options{Target: "azure", ContainerdConfigVersion: 3})
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/containerd/config.toml")
	os.MkdirAll(filepath.Join(root, "etc/containerd/conf.d"), 0o755)
	main := "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n"
	writeTestFile(t, cfg, []byte(main))
	res, err := Install(context.Background(), out, InstallOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	want := "/etc/containerd/conf.d/" + p.Handler + ".toml"
	if res.Method != MethodDropIn || res.ContainerdConfig != want || res.Backup != "" {
		t.Fatalf("result %+v", res)
	}
	got, _ := os.ReadFile(filepath.Join(root, want))
	if !bytes.Equal(got, p.ContainerdDropIn()) || !bytes.Contains(got, []byte(`[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.`+p.Handler+"]")) {
		t.Fatalf("drop-in:\n%s", got)
	}
	if data, _ := os.ReadFile(cfg); string(data) != main {
		t.Errorf("main config changed")
	}
	res, err = Install(context.Background(), out, InstallOptions{Root: root})
	if err != nil || res.Changed || res.Method != MethodUnchanged {
		t.Fatalf("second install: %+v %v", res, err)
	}
}
