// Package ctxio makes long copies stop when their context is cancelled:
// readers and writers that fail with the context's error at the first
// call after it is done, so a copy stops within one buffer.
package ctxio

import (
	"context"
	"io"
)

// maxRead bounds one Read, so that a caller asking for a large buffer
// (bytes.Buffer.ReadFrom, io.ReadFull) still checks the context every
// MiB.
const maxRead = 1 << 20

// Reader returns a reader of r whose reads fail with ctx's error once ctx
// is done. A read returns at most 1 MiB.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > maxRead {
		p = p[:maxRead]
	}
	return c.r.Read(p)
}

// ReaderAt returns a ReaderAt of r whose reads fail with ctx's error once
// ctx is done.
func ReaderAt(ctx context.Context, r io.ReaderAt) io.ReaderAt { return readerAt{ctx, r} }

type readerAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c readerAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}

// Writer returns a writer to w whose writes fail with ctx's error once
// ctx is done.
func Writer(ctx context.Context, w io.Writer) io.Writer { return writer{ctx, w} }

type writer struct {
	ctx context.Context
	w   io.Writer
}

func (c writer) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
