package initrd

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestBuildProgress: the "compress" step's total is the uncompressed
// archive's size (hard links, symlinks, empty files and padding
// included), all of it is reported done, and the callback changes no
// byte of the output.
func TestBuildProgress(t *testing.T) {
	tree := filepath.Join(t.TempDir(), "tree")
	makeTree(t, tree, time.Unix(1e9, 0))
	for _, c := range []Compression{None, Zstd} {
		cfg := Config{Sources: []Source{Dir{Path: tree}}, Init: Init{Data: []byte("init"), Skeleton: true},
			Compression: c, SourceDateEpoch: 1700000000}
		var plain bytes.Buffer
		if _, err := Build(context.Background(), cfg, &plain); err != nil {
			t.Fatal(err)
		}
		type call struct {
			step        string
			done, total int64
		}
		var calls []call
		cfg.Progress = func(step string, done, total int64) { calls = append(calls, call{step, done, total}) }
		var out bytes.Buffer
		if _, err := Build(context.Background(), cfg, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), plain.Bytes()) {
			t.Errorf("%s: the progress callback changed the output", c)
		}
		if len(calls) < 2 || calls[0] != (call{"compress", 0, calls[0].total}) {
			t.Fatalf("%s: calls %v, want compress from 0", c, calls)
		}
		last := calls[len(calls)-1]
		if last.step != "compress" || last.done != last.total || last.total != calls[0].total {
			t.Errorf("%s: last call %v, first %v", c, last, calls[0])
		}
		if c == None && last.total != int64(plain.Len()) {
			t.Errorf("compress total %d, want the uncompressed archive's %d bytes", last.total, plain.Len())
		}
	}
}
