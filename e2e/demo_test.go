package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagebuilder/imagebuilder/internal/fixtures"
	"github.com/imagebuilder/imagebuilder/pkg/igvm"
	"github.com/imagebuilder/imagebuilder/pkg/igvm/linuxboot"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
)

// demoBuild builds the demo image (examples/podvm.yaml, as 'make demo'
// does) into dir/out with binaries built from this tree: the config is
// copied to dir/examples and the binaries to dir/bin, keeping the
// config's relative path to the stand-in agent. It returns the output
// directory, the build's stdout and its manifest.
func demoBuild(t *testing.T, dir string) (string, string, *podvm.Manifest) {
	t.Helper()
	fixtures.DebianKernelDeb(t)
	fixtures.DebianSystemd(t)
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.MkdirAll(filepath.Join(dir, "examples"), 0o755)
	cfg, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "podvm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "examples", "podvm.yaml"), cfg, 0o644)
	ib := buildImagebuilder(t, bin)
	buildGuestInit(t, bin)
	buildStandin(t, bin)
	out := filepath.Join(dir, "out")
	cmd := exec.Command(ib, "build", "-f", filepath.Join(dir, "examples", "podvm.yaml"), "-o", out, "--cache", filepath.Join(dir, "cache"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("imagebuilder build: %v\n%s", err, stderr.String())
	}
	t.Logf("demo build: %.1fs\n%s", time.Since(start).Seconds(), stdout.String())
	b, err := os.ReadFile(filepath.Join(out, podvm.FileManifest))
	if err != nil {
		t.Fatal(err)
	}
	var m podvm.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return out, stdout.String(), &m
}

// checkIGVMPayload reads podvm.igvm with our IGVM reader and checks that
// the kernel payload, the initrd and the command line pages it holds are
// byte for byte vmlinuz's payload, initrd.img and cmdline.txt.
func checkIGVMPayload(t *testing.T, out string, m *podvm.Manifest) {
	t.Helper()
	kernel, err := os.ReadFile(filepath.Join(out, podvm.FileKernel))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := os.ReadFile(filepath.Join(out, podvm.FileInitrd))
	if err != nil {
		t.Fatal(err)
	}
	line, err := os.ReadFile(filepath.Join(out, podvm.FileCmdline))
	if err != nil {
		t.Fatal(err)
	}
	bz, err := linuxboot.ParseBzImage(kernel)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, podvm.FileIGVM))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	file, err := igvm.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	mem := file.Memory()
	for _, c := range []struct {
		what string
		gpa  uint64
		want []byte
	}{
		{"kernel payload (vmlinuz after its setup sectors)", bz.Header.PrefAddress, bz.Payload},
		{"initrd (initrd.img)", uint64(m.IGVM.Ramdisk), rd},
		{"command line (cmdline.txt and a NUL)", uint64(m.IGVM.Cmdline), append(bytes.TrimSuffix(line, []byte("\n")), 0)},
	} {
		got := make([]byte, len(c.want))
		if _, err := mem.ReadAt(got, int64(c.gpa)); err != nil {
			t.Fatalf("%s at %#x: %v", c.what, c.gpa, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("podvm.igvm's %s at %#x differs from what QEMU boots", c.what, c.gpa)
		} else {
			t.Logf("podvm.igvm holds the %s at %#x: %d bytes, identical", c.what, c.gpa, len(c.want))
		}
	}
}

// TestDemoBoot builds the demo image with 'imagebuilder build' and boots
// its artifacts under QEMU TCG (-kernel vmlinuz -initrd initrd.img -append
// "$(cat cmdline.txt)", rootfs.img as a virtio disk), after checking that
// podvm.igvm holds exactly that kernel, initrd and command line: systemd
// reaches kata-containers.target and the stand-in agent, started by
// kata-agent.service, prints its ready line. Then a copy of rootfs.img with
// one byte flipped in systemd's binary: the console shows dm-verity's
// corruption error and the VM stops without reaching the agent. It also
// checks the demo output shown in docs/build.md against this build.
func TestDemoBoot(t *testing.T) {
	const vmTimeout = 5 * time.Minute
	needTools(t, qemuBinary)
	dir := t.TempDir()
	out, stdout, m := demoBuild(t, dir)
	checkIGVMPayload(t, out, m)
	checkDemoDoc(t, stdout, m)
	line, _ := os.ReadFile(filepath.Join(out, podvm.FileCmdline))
	cmdline := strings.TrimSuffix(string(line), "\n")
	kernel := fixtures.DebianKernel(t)

	t.Run("boot", func(t *testing.T) {
		v := startVM(t, vmConfig{Kernel: filepath.Join(out, podvm.FileKernel), Initrd: filepath.Join(out, podvm.FileInitrd),
			Cmdline: cmdline, Disk: filepath.Join(out, podvm.FileRootfs), Timeout: vmTimeout})
		reached := regexp.MustCompile(`Reached target (kata-containers\.target|.* - Kata Containers Agent Target\.)`)
		target, err := v.waitFor(reached)
		if err != nil {
			t.Fatalf("systemd did not reach kata-containers.target: %v; console:\n%s", err, v.consoleTail())
		}
		ready := regexp.MustCompile(regexp.QuoteMeta(standinReady) + ` kernel=` + regexp.QuoteMeta(kernel.Version) + ` root=/dev/dm-\d+:erofs:ro\b`)
		agent, err := v.waitFor(ready)
		if err != nil {
			t.Fatalf("no ready line of the stand-in agent: %v; console:\n%s", err, v.consoleTail())
		}
		total, err := v.wait()
		if err != nil {
			t.Fatalf("%v; console:\n%s", err, v.consoleTail())
		}
		log := v.console()
		for _, want := range []string{"ibroot: root " + m.Rootfs.Verity.RootHash[:16], "Started kata-agent.service", "reboot: Power down"} {
			if !strings.Contains(log, want) {
				t.Errorf("boot log lacks %q", want)
			}
		}
		t.Logf("kata-containers.target after %.1fs, agent ready after %.1fs, power-off after %.1fs (load average %s)\n%s",
			target.At.Seconds(), agent.At.Seconds(), total.Seconds(), loadAvg(),
			grep(log, `ibroot: root|Reached target .*Kata Containers|`+standinReady+`|Power down`))
	})

	t.Run("flipped-byte", func(t *testing.T) {
		img, err := os.ReadFile(filepath.Join(out, podvm.FileRootfs))
		if err != nil {
			t.Fatal(err)
		}
		block := systemdBlock(t)
		off := bytes.Index(img, block)
		if off < 0 || bytes.Contains(img[off+1:], block) {
			t.Fatalf("systemd's first block found at %d (want once)", off)
		}
		img[off+100] ^= 0x01
		bad := filepath.Join(t.TempDir(), "rootfs-flipped.img")
		if err := os.WriteFile(bad, img, 0o644); err != nil {
			t.Fatal(err)
		}
		v := startVM(t, vmConfig{Kernel: filepath.Join(out, podvm.FileKernel), Initrd: filepath.Join(out, podvm.FileInitrd),
			Cmdline: cmdline, Disk: bad, Timeout: vmTimeout})
		if _, err := v.waitFor(regexp.MustCompile(`device-mapper: verity: .*data block \d+ is corrupted`)); err != nil {
			t.Fatalf("no dm-verity corruption error: %v; console:\n%s", err, v.consoleTail())
		}
		took, err := v.wait()
		if err != nil {
			t.Fatalf("the VM did not stop: %v; console:\n%s", err, v.consoleTail())
		}
		log := v.console()
		if strings.Contains(log, standinReady) || strings.Contains(log, "Started kata-agent.service") {
			t.Errorf("the corrupt root reached the agent")
		}
		t.Logf("stopped after %.1fs:\n%s", took.Seconds(), grep(log, `verity|Kernel panic|ibroot:`))
	})
}

// systemdBlock is the first 4 KiB of /usr/lib/systemd/systemd of the
// Debian systemd fixture, the program the guest init starts as PID 1.
func systemdBlock(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtures.DebianSystemd(t), "rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("no usr/lib/systemd/systemd in the fixture")
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") == "usr/lib/systemd/systemd" && h.Typeflag == tar.TypeReg {
			b := make([]byte, 4096)
			if _, err := io.ReadFull(tr, b); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// checkDemoDoc compares the demo output in docs/build.md and README.md
// with this build's table: every line but the stage times, when the doc's
// run used the same kernel package (the fixture follows Debian's current
// kernel).
func checkDemoDoc(t *testing.T, stdout string, m *podvm.Manifest) {
	t.Helper()
	for _, name := range []string{filepath.Join("docs", "build.md"), "README.md"} {
		checkDemoBlock(t, name, stdout, m)
	}
}

func checkDemoBlock(t *testing.T, name, stdout string, m *podvm.Manifest) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), name))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- demo output: kernel package "
	i := bytes.Index(doc, []byte(marker))
	if i < 0 {
		t.Fatalf("%s has no demo output block", name)
	}
	rest := doc[i+len(marker):]
	pkg, rest, _ := bytes.Cut(rest, []byte(" -->\n```text\n"))
	block := string(rest[:bytes.Index(rest, []byte("```"))])
	if string(pkg) != m.Inputs.Kernel.Package+" "+m.Inputs.Kernel.Version {
		t.Logf("%s shows a build of kernel package %s, not %s %s: not compared", name, pkg, m.Inputs.Kernel.Package, m.Inputs.Kernel.Version)
		return
	}
	stable := func(s string) []string {
		var out []string
		inStages := false
		for _, l := range strings.Split(s, "\n") {
			switch {
			case strings.HasPrefix(l, "STAGE"):
				inStages = true
			case l == "":
				inStages = false
			}
			if inStages || strings.HasPrefix(l, "$ ") || strings.HasPrefix(l, "time=") || strings.Contains(l, "manifest.json:") {
				continue // times, the command, stderr, the revision-dependent manifest
			}
			out = append(out, l)
		}
		return out
	}
	got, want := strings.Join(stable(stdout), "\n"), strings.Join(stable(block), "\n")
	if got != want {
		t.Errorf("%s: the demo output differs from this build's:\n%s\nbuilt:\n%s", name, want, got)
	}
}

// TestDemoReproducible builds the demo image twice, in different
// directories, the second time without the stage cache and with another
// TZ, LC_ALL, GOMAXPROCS and umask: every output is identical. The
// first build's output then goes through the node payload's commands
// (checkDemoPayload).
func TestDemoReproducible(t *testing.T) {
	needTools(t)
	base := t.TempDir()
	outA, _, mA := demoBuild(t, filepath.Join(base, "a"))
	t.Run("payload", func(t *testing.T) { checkDemoPayload(t, filepath.Join(base, "a", "bin", "imagebuilder"), outA, mA) })
	// The second build: the binaries of the first, copied elsewhere with
	// the config, so that only the directory differs.
	dirB := filepath.Join(base, "b", "deeper")
	os.MkdirAll(filepath.Join(dirB, "bin"), 0o755)
	os.MkdirAll(filepath.Join(dirB, "examples"), 0o755)
	for _, f := range []string{"bin/imagebuilder", "bin/guest-init", "bin/kata-agent-standin", "examples/podvm.yaml"} {
		b, err := os.ReadFile(filepath.Join(base, "a", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dirB, f), b, 0o755)
	}
	outB := filepath.Join(dirB, "out")
	cmd := exec.Command("sh", "-c", `umask 077 && exec bin/imagebuilder build -q --no-cache -f examples/podvm.yaml -o "$0"`, outB)
	cmd.Dir = dirB
	cmd.Env = append(os.Environ(), "TZ=Asia/Kolkata", "LC_ALL=C.UTF-8", "GOMAXPROCS=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, b)
	}
	a, b := dirSHA256(t, outA), dirSHA256(t, outB)
	if len(a) != 12 {
		t.Errorf("%d outputs: %v", len(a), a)
	}
	for name, sum := range a {
		if b[name] != sum {
			t.Errorf("%s differs: %s and %s", name, sum, b[name])
		}
	}
	t.Logf("%d outputs identical", len(a))
}

// checkDemoPayload takes the demo output as a node and a registry would:
// 'imagebuilder install' lays the payload onto a node tree (a second run
// changes nothing) with the files the manifest lists, and 'push
// --oci-layout' and 'pull --oci-layout' give back every file identical.
func checkDemoPayload(t *testing.T, ib, out string, m *podvm.Manifest) {
	if m.Runtime == nil {
		t.Fatal("the demo output has no node payload (spec.runtime)")
	}
	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(ib, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("imagebuilder %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	node := t.TempDir()
	first := run("install", out, "--root", node)
	again := run("install", out, "--root", node)
	h := m.Runtime.Handler
	if !strings.Contains(first, h+": 3 files, 3 written") || !strings.Contains(again, h+": 3 files, 0 written, 3 unchanged") {
		t.Errorf("install:\n%s\nagain:\n%s", first, again)
	}
	sums := dirSHA256(t, out)
	for name, inst := range map[string]string{podvm.FileIGVM: "share/podvm.igvm", podvm.FileRootfs: "share/rootfs.img"} {
		if got := dirSHA256(t, filepath.Join(node, "opt", h, filepath.Dir(inst)))[filepath.Base(inst)]; got != sums[name] {
			t.Errorf("installed %s: sha256 %s, output %s", inst, got, sums[name])
		}
	}
	conf, err := os.ReadFile(filepath.Join(node, "etc", "containerd", "config.toml"))
	if err != nil || !bytes.Contains(conf, []byte("runtimes."+h+"]")) {
		t.Errorf("containerd config (%v):\n%s", err, conf)
	}
	t.Logf("install:\n%s", first)

	layout, pulled := filepath.Join(t.TempDir(), "layout"), filepath.Join(t.TempDir(), "pulled")
	t.Logf("%s%s", run("push", out, "--oci-layout", layout), run("pull", "--oci-layout", layout, "-o", pulled))
	got := dirSHA256(t, pulled)
	if len(got) != len(sums) {
		t.Errorf("pulled %d files, pushed %d", len(got), len(sums))
	}
	for name, sum := range sums {
		if got[name] != sum {
			t.Errorf("pulled %s: sha256 %s, pushed %s", name, got[name], sum)
		}
	}
}

func dirSHA256(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		sums[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return sums
}
