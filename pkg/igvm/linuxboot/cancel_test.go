package linuxboot

import (
	"context"
	"errors"
	"testing"
)

// cancellingWriter cancels a context once more than after bytes were
// written, and counts what is written after that.
type cancellingWriter struct {
	n, after, overrun int64
	cancel            context.CancelFunc
}

func (w *cancellingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.after {
		w.cancel()
		w.overrun += int64(len(p))
	}
	return len(p), nil
}

// Build and Write stop soon after their context is cancelled: Write within
// a few MiB of a 64 MiB initrd.
func TestBuildCancel(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage([]byte("payload"), nil))
	if err != nil {
		t.Fatal(err)
	}
	initrd := make([]byte, 64<<20)
	for i := 0; i < len(initrd); i += 4096 {
		initrd[i] = byte(i >> 12)
		initrd[i+1] = byte(i >> 20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, k, Options{Initrd: initrd}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	img, err := Build(ctx, k, Options{Initrd: initrd})
	if err != nil {
		t.Fatal(err)
	}
	w := &cancellingWriter{after: 8 << 20, cancel: cancel}
	if _, err := img.Write(ctx, w); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write: %v", err)
	}
	if w.overrun > 8<<20 {
		t.Errorf("%d bytes written after the cancellation", w.overrun)
	}
}
