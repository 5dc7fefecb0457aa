package podvm

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse: whatever the bytes, Parse does not panic, fails with one
// *Error on one line, and a config it accepts round-trips through its
// canonical JSON.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	if b, err := os.ReadFile("../../examples/podvm.yaml"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("../../docs/config.md"); err == nil {
		for _, p := range strings.Split(string(b), "```yaml\n")[1:] {
			if end := strings.Index(p, "```"); end > 0 {
				f.Add([]byte(p[:end]))
			}
		}
	}
	f.Add([]byte(base + "  igvm: {layout: {kind: kvm}}\n  measurements:\n    targets:\n      - {platform: igvm-kvm, vcpus: [1, \"2-3\"], cpus: [milan]}\n"))
	f.Add([]byte(base + "  idBlock: {keyless: true}\n  measurements:\n    targets:\n      - {platform: qemu-ovmf, firmware: f.fd, cpus: [milan, genoa]}\n" +
		"  runtime: {target: qemu-ovmf, cpu: \"0xa00f11\", labels: {a: b}, podAnnotations: [], overheadMemoryMiB: 0}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := LoadOptions{CacheDir: "/cache"}
		c, err := Parse(data, "podvm.yaml", "/conf", opts)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v (%T) is not a *Error", err, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		roundTrip(t, c, opts)
	})
}
