package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagebuilder/imagebuilder/internal/ocitest"
)

// imagebuilderChild starts `imagebuilder args...` in a child process.
func imagebuilderChild(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := cliCommand(args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// stallingRegistry serves an image whose layer blob stops halfway until
// the test ends; started receives a value when a download has stalled.
func stallingRegistry(t *testing.T) (ref string, started chan struct{}) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	stall := make(chan struct{})
	started = make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if len(body) < 4096 { // the config
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stall); srv.Close() })
	// An incompressible layer, so that its blob is large.
	var body []byte
	for sum := sha256.Sum256(nil); len(body) < 256<<10; sum = sha256.Sum256(sum[:]) {
		body = append(body, sum[:]...)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "usr/lib/big", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	img := ocitest.Image(t, nil, layer.Bytes())
	ref = strings.TrimPrefix(srv.URL, "http://") + "/pod/base:v1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref, started
}

// filesUnder lists the files below dir.
func filesUnder(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestRootfsBuildKilled signals a real `imagebuilder rootfs build` while it
// pulls a layer (the disk and the JSON output already open, a blob being
// written into the cache): whatever the signal, nothing is left behind,
// neither in the output directory nor in the blob cache; SIGINT and
// SIGTERM exit with 128+N after removing what they started.
func TestRootfsBuildKilled(t *testing.T) {
	ref, started := stallingRegistry(t)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("agent"), 0o755)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
			os.MkdirAll(out, 0o755)
			cmd, stderr := imagebuilderChild(t, "rootfs", "build", "--source", ref, "--agent", agent, "--seed", "s",
				"-o", filepath.Join(out, "rootfs.img"), "--json="+filepath.Join(out, "rootfs.json"), "--cache", cache)
			select {
			case <-started:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the layer download never started: %s", stderr)
			}
			// The outputs are open (unnamed files) while the layer
			// downloads: the disk and the JSON in out, the blob in the
			// cache.
			inOut, inCache := inDir(out), inDir(cache)
			twoOutputs := func(string) bool {
				n := 0
				for _, p := range openFiles(cmd.Process.Pid) {
					if inOut(p) {
						n++
					}
				}
				return n == 2
			}
			if !waitOpen(cmd.Process.Pid, 20*time.Second, inCache) || !waitOpen(cmd.Process.Pid, time.Second, twoOutputs) {
				t.Errorf("open in the child before the signal: %v; want the disk and the JSON in %s and a blob in %s",
					openFiles(cmd.Process.Pid), out, cache)
			}
			sent := time.Now()
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			took := time.Since(sent)
			code := cmd.ProcessState.ExitCode()
			if sig == syscall.SIGKILL {
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Errorf("child: %v", err)
				}
			} else if want := "imagebuilder: rootfs build: interrupted by " + sig.String(); code != 128+int(sig) || !strings.Contains(stderr.String(), want) {
				// That line comes from the command returning: the build
				// stopped by itself, before the forced exit a second
				// after the signal (main.go's interruptGrace).
				t.Errorf("exit %d (%v), stderr %q; want %d and %q", code, err, stderr, 128+int(sig), want)
			}
			t.Logf("%v: exited after %v", sig, took)
			if left := append(filesUnder(out), filesUnder(cache)...); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}
