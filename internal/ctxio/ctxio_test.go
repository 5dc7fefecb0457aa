package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, strings.NewReader("abc"))
	ra := ReaderAt(ctx, strings.NewReader("abc"))
	var out bytes.Buffer
	w := Writer(ctx, &out)
	p := make([]byte, 2)
	if n, err := r.Read(p); n != 2 || err != nil {
		t.Fatalf("Read before cancel: %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, 1); n != 2 || err != nil || string(p) != "bc" {
		t.Fatalf("ReadAt before cancel: %d, %v, %q", n, err, p)
	}
	if n, err := w.Write(p); n != 2 || err != nil || out.String() != "bc" {
		t.Fatalf("Write before cancel: %d, %v", n, err)
	}
	cancel()
	if _, err := r.Read(p); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel: %v", err)
	}
	if _, err := ra.ReadAt(p, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt after cancel: %v", err)
	}
	if _, err := w.Write(p); !errors.Is(err, context.Canceled) {
		t.Errorf("Write after cancel: %v", err)
	}
}

func TestReadBounded(t *testing.T) {
	src := bytes.Repeat([]byte{7}, 3*maxRead)
	p := make([]byte, len(src))
	n, err := Reader(context.Background(), bytes.NewReader(src)).Read(p)
	if n != maxRead || err != nil {
		t.Fatalf("one Read of %d bytes returned %d, %v; want %d", len(p), n, err, maxRead)
	}
	b, err := io.ReadAll(Reader(context.Background(), bytes.NewReader(src)))
	if err != nil || !bytes.Equal(b, src) {
		t.Fatalf("ReadAll: %d bytes, %v", len(b), err)
	}
}
