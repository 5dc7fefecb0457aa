package initrd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/imagebuilder/imagebuilder/internal/meter"
)

// WriteOptions say how Archive.Write stores the entries.
type WriteOptions struct {
	// Compression is None, Gzip or Zstd; "" means Zstd.
	Compression Compression
	// Level is the compression level; 0 is DefaultLevel. It must be 0
	// with None.
	Level int
	// KeepOwners keeps each entry's UID and GID; otherwise all are 0:0
	// except for entries marked KeepOwner.
	KeepOwners bool
	// SourceDateEpoch is the mtime of every entry, in seconds since 1970
	// (0 .. 4294967295).
	SourceDateEpoch int64
	// Early, when set, is an uncompressed newc archive (CPU microcode,
	// ACPI tables) written before the main archive, as the kernel's
	// early loaders expect.
	Early []byte
	// Progress, when set, is told how the main archive advances (see
	// internal/meter for the contract): one step, "compress", whose done
	// is the uncompressed newc bytes given to the compressor and whose
	// total is the uncompressed archive's size.
	Progress func(step string, done, total int64)
}

func (o *WriteOptions) check() error {
	if o.Compression == "" {
		o.Compression = Zstd
	}
	if _, err := ParseCompression(string(o.Compression)); err != nil {
		return err
	}
	if err := CheckLevel(o.Compression, o.Level); err != nil {
		return err
	}
	if o.SourceDateEpoch < 0 || o.SourceDateEpoch > 1<<32-1 {
		return fmt.Errorf("SourceDateEpoch %d does not fit the newc 32-bit mtime (0 .. 4294967295)", o.SourceDateEpoch)
	}
	return nil
}

// CheckEarly verifies that b is a complete uncompressed newc archive (with
// its trailer, optionally followed by zero padding), as the kernel's early
// microcode loader needs.
func CheckEarly(b []byte) error {
	r := NewReader(bytes.NewReader(b))
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	for _, c := range b[r.Offset():] {
		if c != 0 {
			return fmt.Errorf("data after the trailer at offset %d", r.Offset())
		}
	}
	return nil
}

// Write writes the archive to w: the early archive if any, then the
// entries as a newc archive compressed as asked. It returns the complete
// Result (without the modules and init, which only Build knows) or an
// error, never both; after an error w may hold part of an archive.
func (a *Archive) Write(ctx context.Context, w io.Writer, opts WriteOptions) (*Result, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	hw := &hashWriter{w: w, h: sha256.New()}
	res := &Result{Compression: opts.Compression, Level: opts.Level}
	if res.Level == 0 {
		res.Level = DefaultLevel(opts.Compression)
	}
	if opts.Early != nil {
		if err := CheckEarly(opts.Early); err != nil {
			return nil, fmt.Errorf("initrd: early cpio: %w", err)
		}
		if _, err := hw.Write(opts.Early); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		// The next archive must start 4-byte aligned.
		if _, err := hw.Write(zeros[:pad4(int64(len(opts.Early)))]); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		res.EarlySize = hw.n
	}
	cw, err := NewCompressor(hw, opts.Compression, opts.Level)
	if err != nil {
		return nil, err
	}
	res.Entries = []Header{}
	var step *meter.Step
	err = a.writeCPIO(ctx, cw, opts, func(total int64) *meter.Step {
		step = meter.Start(opts.Progress, "compress", total)
		return step
	}, func(h *Header) { res.Entries = append(res.Entries, *h) })
	if ab, ok := cw.(interface{ abort() }); ok && err != nil {
		ab.abort()
	} else if cerr := cw.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", opts.Compression, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	step.End()
	res.Size = hw.n
	res.SHA256 = hex.EncodeToString(hw.h.Sum(nil))
	return res, nil
}

// hashWriter counts and hashes what it passes on.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// AddInitSkeleton adds what an init needs before it can mount devtmpfs:
// /dev/console (the kernel opens it for init's stdio), and the mount
// points /dev, /proc and /sys.
func AddInitSkeleton(a *Archive) error {
	if err := addInitSkeleton(a); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}

func addInitSkeleton(a *Archive) error {
	for _, e := range []Entry{
		{Path: "dev", Mode: TypeDir | 0o755},
		{Path: "dev/console", Mode: TypeChar | 0o600, RDevMajor: 5, RDevMinor: 1},
		{Path: "proc", Mode: TypeDir | 0o755},
		{Path: "sys", Mode: TypeDir | 0o755},
	} {
		if err := a.add(e); err != nil {
			return err
		}
	}
	return nil
}
