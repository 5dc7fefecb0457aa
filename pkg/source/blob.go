package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/internal/meter"
)

// digestReader hashes what it reads; at EOF it reports the sum to onSum
// and fails unless the sum is want (when want is set).
type digestReader struct {
	r     io.Reader
	h     hash.Hash
	want  string // "sha256:HEX", or "" to only compute the sum
	kind  string // CorruptError.Kind
	what  string // CorruptError.What
	onSum func(sum string)
}

func verifying(r io.Reader, want, kind, what string) *digestReader {
	return &digestReader{r: r, h: sha256.New(), want: want, kind: kind, what: what}
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	if err == io.EOF {
		got := "sha256:" + hex.EncodeToString(d.h.Sum(nil))
		if d.onSum != nil {
			d.onSum(got)
		}
		if d.want != "" && got != d.want {
			return n, &CorruptError{Kind: d.kind, What: d.what, Got: got, Want: d.want}
		}
	}
	return n, err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decompress detects gzip or zstd by magic number; anything else is read as
// a plain tar. Closing the result closes c. raw counts the bytes of the
// stream as stored.
func decompress(r io.Reader, c io.Closer) (*drainCloser, error) {
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			c.Close()
			return nil, err
		}
		return &drainCloser{Reader: zr, raw: br, rawCount: cr, c: c}, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			c.Close()
			return nil, err
		}
		return &drainCloser{Reader: zr, raw: br, rawCount: cr, c: c, zc: zr.Close}, nil
	}
	return &drainCloser{Reader: br, raw: br, rawCount: cr, c: c}, nil
}

// drainCloser is a layer's decompressed stream. finish reads the rest of
// the raw stream (the tar trailer, compressed padding) so that a digest
// check at its EOF runs.
type drainCloser struct {
	io.Reader
	raw      io.Reader
	rawCount *countingReader
	c        io.Closer
	zc       func()
}

func (d *drainCloser) Close() error {
	if d.c == nil {
		return nil
	}
	if d.zc != nil {
		d.zc()
	}
	err := d.c.Close()
	d.c = nil
	return err
}

func (d *drainCloser) finish() error {
	_, err := io.Copy(io.Discard, d.Reader)
	// The raw stream's own end runs the digest check, which explains a
	// decompression error better than the error itself.
	if _, rerr := io.Copy(io.Discard, d.raw); rerr != nil {
		return rerr
	}
	return err
}

// digestFirst reports a digest mismatch of the stream, if there is one,
// in place of the error it caused: that is the real cause.
func digestFirst(d *drainCloser, err error) error {
	var ce *CorruptError
	if ferr := d.finish(); errors.As(ferr, &ce) {
		return ferr
	}
	return err
}

// cachedBlob makes sure the compressed blob dig of layer l is in the cache
// and returns its path. A download is written as an unnamed file and
// named only once its digest checked out, so an interrupted or killed
// build leaves nothing behind. The bytes downloaded count on step.
func cachedBlob(ctx context.Context, dir string, dig v1.Hash, l v1.Layer, step *meter.Step) (string, error) {
	p := filepath.Join(dir, dig.Algorithm, dig.Hex)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	f, err := atomicfile.Create(p, 0o644)
	if err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	defer f.Abort()
	vr := verifying(ctxio.Reader(ctx, meter.Reader(rc, step)), dig.String(), "blob", dig.String())
	if _, err := io.Copy(f, vr); err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) || ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("fetching blob %s: %w", dig, err)
	}
	if err := f.Commit(); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	return p, nil
}
