package diff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Kind is what an artifact is.
type Kind string

// Kinds of artifacts.
const (
	// KindRootDisk is a root disk: a GPT with an erofs partition and its
	// dm-verity hash partition (rootfs.img).
	KindRootDisk Kind = "rootfs"
	// KindErofs is an erofs file system image on its own.
	KindErofs Kind = "erofs"
	// KindIGVM is an IGVM file (podvm.igvm).
	KindIGVM Kind = "igvm"
	// KindInitrd is an initramfs: newc archives, possibly compressed
	// (gzip, zstd, xz).
	KindInitrd Kind = "initrd"
	// KindKernel is a Linux bzImage (vmlinuz).
	KindKernel Kind = "kernel"
	// KindJSON is a JSON document (manifest.json, reference-values.json,
	// id-block-*.json).
	KindJSON Kind = "json"
	// KindText is UTF-8 text without NUL bytes (cmdline.txt).
	KindText Kind = "text"
	// KindData is anything else, compared byte by byte.
	KindData Kind = "data"
	// KindDirectory is a directory, compared file by file.
	KindDirectory Kind = "directory"
)

// Change says how a difference changes what it is about.
type Change string

// Changes.
const (
	Added   Change = "added"   // only in B
	Removed Change = "removed" // only in A
	Changed Change = "changed" // in both, with other values
)

// Sections of an artifact a Difference can be in.
const (
	SectionKind         = "kind"          // the two artifacts are of different kinds
	SectionBytes        = "bytes"         // bytes that differ where nothing else does
	SectionGPT          = "gpt"           // root disk: partition table
	SectionVerity       = "verity"        // root disk: dm-verity parameters
	SectionErofs        = "erofs"         // erofs superblock
	SectionCmdline      = "cmdline"       // root disk: kernel command-line fragments; IGVM: the command line
	SectionFiles        = "files"         // erofs tree: one path
	SectionHeader       = "header"        // IGVM fixed header and header counts
	SectionPlatform     = "platform"      // IGVM platforms, guest policy, initialization headers
	SectionDirectives   = "directives"    // IGVM directive headers other than pages
	SectionPages        = "pages"         // IGVM page runs by GPA
	SectionBootParams   = "boot_params"   // IGVM: Linux zero page fields
	SectionACPI         = "acpi"          // IGVM: ACPI tables by signature
	SectionCPUID        = "cpuid"         // IGVM: CPUID page entries
	SectionVMSA         = "vmsa"          // IGVM: VMSA registers
	SectionIDBlock      = "id_block"      // IGVM: SNP_ID_BLOCK
	SectionLaunchDigest = "launch_digest" // IGVM: launch digest per profile
	SectionInitrd       = "initrd"        // initrd: segments and entries (also the initrd inside an IGVM file)
	SectionModules      = "modules"       // initrd: module load order
	SectionKernel       = "kernel"        // bzImage setup header and version
	SectionFields       = "fields"        // JSON: one field
	SectionLines        = "lines"         // text: the first differing line
	SectionDirectory    = "directory"     // directories: a file only on one side
)

// Difference is one thing that differs between A and B.
type Difference struct {
	// File is the file of a directory comparison the difference is in
	// ("rootfs.img"), "" when two files are compared.
	File string `json:"file,omitempty"`
	// Section is the part of the artifact (see the Section constants).
	Section string `json:"section"`
	Kind    Change `json:"kind"`
	// Path is what differs: a file path in a file system or archive, a
	// JSON path, a GPA range, a header, a table or register name.
	Path string `json:"path"`
	// Field is the attribute of Path that differs ("mode", "owner",
	// "content", "link", ...), "" when Path is added or removed, or is
	// the field itself.
	Field string `json:"field,omitempty"`
	// A and B are the values in A and in B ("" on the side where the
	// thing is absent).
	A string `json:"a,omitempty"`
	B string `json:"b,omitempty"`
	// Detail says what the difference means: the first differing offset,
	// the region of guest memory, the bits of a flag field.
	Detail string `json:"detail,omitempty"`
	// Derived marks a difference that follows from the others listed (a
	// root hash, a partition size, a launch digest, the pages a changed
	// command line lies on).
	Derived bool `json:"derived,omitempty"`
}

// FileResult is one file of a directory comparison.
type FileResult struct {
	Name      string `json:"name"`
	Kind      Kind   `json:"kind"`
	Identical bool   `json:"identical"`
	// Differences counts the file's differences that are not derived.
	Differences int `json:"differences"`
	Derived     int `json:"derived"`
}

// ReadStats counts what a comparison read, to show each file is read
// about once.
type ReadStats struct {
	SizeA int64 `json:"size_a"`
	SizeB int64 `json:"size_b"`
	ReadA int64 `json:"read_a"`
	ReadB int64 `json:"read_b"`
}

// Result is the comparison of A and B.
type Result struct {
	A    string `json:"a"`
	B    string `json:"b"`
	Kind Kind   `json:"kind"`
	// Identical says A and B are equal byte for byte (for directories:
	// the same names, each pair of files identical).
	Identical bool `json:"identical"`
	// Differences lists every difference, in the order of the artifact:
	// its header sections first, then its contents (paths in order, GPAs
	// ascending).
	Differences []Difference `json:"differences"`
	// Files are the files of a directory comparison present on both
	// sides, by name.
	Files []FileResult `json:"files,omitempty"`
	// Truncated says the comparison stopped early: at
	// Options.MaxDifferences, or at 64 MiB of differences.
	Truncated bool      `json:"truncated,omitempty"`
	Read      ReadStats `json:"bytes_read"`
}

// Counts returns the number of differences that are not derived, and of
// those that are.
func (r *Result) Counts() (primary, derived int) {
	for _, d := range r.Differences {
		if d.Derived {
			derived++
		} else {
			primary++
		}
	}
	return primary, derived
}

// Options tune a comparison.
type Options struct {
	// Kind compares A and B as this kind, instead of the kind Detect finds
	// (an artifact that is not of that kind is an *InputError). It is for
	// two files: ComparePaths refuses it for directories.
	Kind Kind
	// MaxDifferences stops a comparison after this many differences that
	// are not derived (0: no limit); Result.Truncated then says so.
	MaxDifferences int
}

// Artifact is one side of a comparison.
type Artifact struct {
	// Name names the artifact in the result and in errors.
	Name string
	R    io.ReaderAt
	Size int64
}

// InputError is an artifact that cannot be read as its kind: malformed,
// truncated, unreadable. Err is the reader's error (*gpt.FormatError,
// *erofs.FormatError, *igvm.FormatError, *initrd.FormatError, an I/O
// error).
type InputError struct {
	Name string
	Kind Kind
	Err  error
}

// Error is one line: control characters a hostile artifact put into a
// name the reader's message quotes are escaped.
func (e *InputError) Error() string { return escapeControls(fmt.Sprintf("%s: %v", e.Name, e.Err)) }

// escapeControls writes control characters as Go escapes (\n, \x1b).
func escapeControls(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func (e *InputError) Unwrap() error { return e.Err }

// errStop ends a comparison when MaxDifferences is reached.
var errStop = errors.New("diff: enough differences")

// Compare compares two artifacts. Their kinds are detected from their
// content (Detect) unless Options.Kind says it; artifacts of two kinds
// differ in one Difference of section "kind". An artifact that cannot be
// read as its kind is an *InputError. Compare stops with ctx's error soon
// after ctx is cancelled.
func Compare(ctx context.Context, a, b Artifact, opts Options) (*Result, error) {
	res := &Result{A: a.Name, B: b.Name}
	ca, cb := &countingReaderAt{r: a.R}, &countingReaderAt{r: b.R}
	ia := &input{name: a.Name, r: ca, size: a.Size}
	ib := &input{name: b.Name, r: cb, size: b.Size}
	rep := &report{max: opts.MaxDifferences}
	kind, err := compareInputs(ctx, ia, ib, opts.Kind, rep)
	if err != nil {
		return nil, err
	}
	res.Kind = kind
	res.Differences = rep.diffs
	res.Truncated = rep.truncated
	res.Identical = len(rep.diffs) == 0 && !rep.truncated
	res.Read = ReadStats{SizeA: a.Size, SizeB: b.Size, ReadA: ca.n.Load(), ReadB: cb.n.Load()}
	if res.Differences == nil {
		res.Differences = []Difference{}
	}
	return res, nil
}

// input is one side being compared.
type input struct {
	name string
	r    io.ReaderAt
	size int64
	kind Kind
	// whole is the content when detection read all of it, else nil.
	whole []byte
}

// reader reads the content from its start, from memory when detection
// read all of it.
func (in *input) reader() io.Reader {
	if in.whole != nil {
		return bytes.NewReader(in.whole)
	}
	return io.NewSectionReader(in.r, 0, in.size)
}

func (in *input) fail(err error) error {
	if err == nil || errors.Is(err, errStop) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ie *InputError
	if errors.As(err, &ie) {
		return err
	}
	return &InputError{Name: in.name, Kind: in.kind, Err: err}
}

// compareInputs detects (or takes) the kinds, then compares. A first pass
// looks for the first differing byte: byte-identical inputs need nothing
// more, and the offset explains a difference nothing else does.
func compareInputs(ctx context.Context, a, b *input, force Kind, rep *report) (Kind, error) {
	for _, in := range []*input{a, b} {
		in.kind = force
		if force == "" {
			k, whole, err := detect(in.r, in.size)
			if err != nil {
				return "", in.fail(err)
			}
			in.kind, in.whole = k, whole
		}
	}
	if a.kind != b.kind {
		rep.add(Difference{Section: SectionKind, Kind: Changed, A: string(a.kind), B: string(b.kind)})
		return a.kind, nil
	}
	// Text, data and JSON comparisons find the first difference
	// themselves, reading each file once.
	// A kind the caller forces is checked even on identical bytes.
	first := int64(-1)
	if a.kind != KindText && a.kind != KindData && a.kind != KindJSON {
		var err error
		if first, err = firstDifference(ctx, a, b); err != nil {
			return "", err
		}
		if first < 0 && force == "" {
			return a.kind, nil
		}
	}
	var cmp func(context.Context, *input, *input, *report) error
	switch a.kind {
	case KindRootDisk:
		cmp = compareRootDisks
	case KindErofs:
		cmp = compareErofsImages
	case KindIGVM:
		cmp = compareIGVM
	case KindInitrd:
		cmp = compareInitrdFiles
	case KindKernel:
		cmp = compareKernels
	case KindJSON:
		cmp = compareJSONFiles
	case KindText:
		cmp = compareText
	case KindData:
		cmp = compareData
	default:
		return "", fmt.Errorf("diff: unknown kind %q", a.kind)
	}
	if err := cmp(ctx, a, b, rep); err != nil && !errors.Is(err, errStop) {
		return "", err
	}
	if len(rep.diffs) == 0 && !rep.truncated && first >= 0 {
		// Nothing this comparison knows of differs, yet the bytes do.
		detail := "the files differ here, in nothing a " + string(a.kind) + " comparison explains"
		rep.add(Difference{Section: SectionBytes, Kind: Changed, Path: fmt.Sprintf("byte %d", first),
			Field: "content", A: sizeText(a.size), B: sizeText(b.size), Detail: detail})
	}
	rep.finish()
	return a.kind, nil
}

// firstDifference returns the offset of the first byte where a and b
// differ (the shorter one's size when one is a prefix of the other), or
// -1 when they are equal. It reads no further than that byte (in blocks).
func firstDifference(ctx context.Context, a, b *input) (int64, error) {
	if a.whole != nil && b.whole != nil {
		n := min(len(a.whole), len(b.whole))
		if i := mismatch(a.whole[:n], b.whole[:n]); i >= 0 {
			return int64(i), nil
		}
		if len(a.whole) != len(b.whole) {
			return int64(n), nil
		}
		return -1, nil
	}
	const chunk = 256 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	n := min(a.size, b.size)
	for off := int64(0); off < n; off += chunk {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		k := int(min(chunk, n-off))
		if _, err := a.r.ReadAt(ba[:k], off); err != nil && err != io.EOF {
			return 0, a.fail(err)
		}
		if _, err := b.r.ReadAt(bb[:k], off); err != nil && err != io.EOF {
			return 0, b.fail(err)
		}
		if i := mismatch(ba[:k], bb[:k]); i >= 0 {
			return off + int64(i), nil
		}
	}
	if a.size != b.size {
		return n, nil
	}
	return -1, nil
}

// mismatch returns the index of the first differing byte of two slices of
// one length, or -1.
func mismatch(a, b []byte) int {
	// Compare in 4 KiB steps with the runtime's memequal, then byte by byte.
	const step = 4096
	i := 0
	for ; i+step <= len(a); i += step {
		if string(a[i:i+step]) != string(b[i:i+step]) {
			break
		}
	}
	for ; i < len(a); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// countingReaderAt counts the bytes read (for Result.Read).
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// maxReport bounds the memory of the differences of one comparison
// (about 64 MiB of paths and values): a hostile image can give each of
// many entries a path as long as its depth. A comparison that reaches it
// stops, Truncated.
const maxReport = 64 << 20

// report collects differences.
type report struct {
	diffs     []Difference
	primary   int
	max       int
	truncated bool
	size      int
}

// charge counts a difference against maxReport.
func (r *report) charge(d *Difference) bool {
	r.size += len(d.Path) + len(d.Field) + len(d.A) + len(d.B) + len(d.Detail) + 128
	if r.size > maxReport {
		r.truncated = true
		return false
	}
	return true
}

// add records a difference; it returns errStop once MaxDifferences
// differences that are not derived were recorded (callers that loop
// return it).
func (r *report) add(d Difference) error {
	if r.truncated {
		return errStop
	}
	if !d.Derived && r.max > 0 && r.primary >= r.max || !r.charge(&d) {
		r.truncated = true
		return errStop
	}
	r.diffs = append(r.diffs, d)
	if !d.Derived {
		r.primary++
	}
	return nil
}

// consequence records a difference that is derived when anything else
// differs (finish decides).
func (r *report) consequence(d Difference) error {
	d.Derived = true
	if r.truncated || !r.charge(&d) {
		return errStop
	}
	r.diffs = append(r.diffs, d)
	return nil
}

// finish turns consequences into primary differences when nothing they
// could follow from differs: then they are the difference.
func (r *report) finish() {
	if r.primary > 0 {
		return
	}
	for i := range r.diffs {
		if r.diffs[i].Derived {
			r.diffs[i].Derived = false
			r.primary++
		}
	}
}

func joinDetail(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// ComparePaths compares two files (see Compare) or two directories: files
// are paired by name (recursively), a name on one side only is a
// difference of section "directory", and each pair is compared as Compare
// does, its differences carrying the file's name. Symbolic links are
// compared by target, never followed. A file that cannot be read is an
// *InputError naming it.
func ComparePaths(ctx context.Context, a, b string, opts Options) (*Result, error) {
	sa, err := os.Lstat(a)
	if err != nil {
		return nil, &InputError{Name: a, Err: pathErr(err)}
	}
	sb, err := os.Lstat(b)
	if err != nil {
		return nil, &InputError{Name: b, Err: pathErr(err)}
	}
	if sa.IsDir() && sb.IsDir() {
		if opts.Kind != "" {
			return nil, fmt.Errorf("diff: Options.Kind %q compares two files, not directories", opts.Kind)
		}
		return compareDirs(ctx, a, b, opts)
	}
	if sa.IsDir() != sb.IsDir() {
		res := &Result{A: a, B: b, Kind: KindDirectory}
		res.Differences = []Difference{{Section: SectionKind, Kind: Changed, A: fileKindName(sa), B: fileKindName(sb)}}
		return res, nil
	}
	return compareFilePaths(ctx, a, b, opts)
}

func compareFilePaths(ctx context.Context, a, b string, opts Options) (*Result, error) {
	fa, sa, err := openRegular(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, sb, err := openRegular(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return Compare(ctx, Artifact{Name: a, R: fa, Size: sa}, Artifact{Name: b, R: fb, Size: sb}, opts)
}

func openRegular(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, &InputError{Name: name, Err: pathErr(err)}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, &InputError{Name: name, Err: err}
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, &InputError{Name: name, Err: errors.New("not a regular file")}
	}
	return f, st.Size(), nil
}

// pathErr drops the path of an *fs.PathError, which the InputError
// carries already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileKindName(fi os.FileInfo) string {
	switch {
	case fi.IsDir():
		return "directory"
	case fi.Mode()&os.ModeSymlink != 0:
		return "symlink"
	case fi.Mode().IsRegular():
		return "file"
	}
	return "special file"
}
