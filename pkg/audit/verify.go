package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/imagebuilder/imagebuilder/internal/ctxio"
	"github.com/imagebuilder/imagebuilder/pkg/podvm"
	"github.com/imagebuilder/imagebuilder/pkg/snp"
)

// Status is the outcome of one link.
type Status string

// Statuses.
const (
	// OK: everything the link covers was checked and holds.
	OK Status = "ok"
	// Failed: something the link covers does not hold (Link.Mismatch).
	Failed Status = "failed"
	// Partial: what was checked holds, but part of the link could not
	// be checked for want of an artifact (Link.Unchecked says which).
	Partial Status = "partial"
	// Skipped: nothing of the link could be checked (an artifact it
	// needs is not given).
	Skipped Status = "skipped"
)

// Link names, in chain order (Link.Number is the index plus one).
var LinkNames = []string{"outputs", "rootfs", "cmdline", "payload", "launch_digest", "id_block", "handler"}

// Link is one link of the chain and its outcome.
type Link struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was checked, in one line.
	Detail string `json:"detail"`
	// Mismatch is the first thing that does not hold, for a failed link.
	Mismatch *Mismatch `json:"mismatch,omitempty"`
	// Unchecked says what could not be checked (partial or skipped).
	Unchecked []string `json:"unchecked,omitempty"`
	// Keys are the ID block key digests (link id_block), per target.
	Keys []KeyDigests `json:"keys,omitempty"`
}

// Mismatch is a value that is not what the chain says it must be.
type Mismatch struct {
	// What names the value ("rootfs.img sha256", "ibroot.hash").
	What string `json:"what"`
	// Want is the value the chain requires and WantFrom where it comes
	// from; Got is the value found and GotFrom where.
	Want     string `json:"want"`
	WantFrom string `json:"want_from"`
	Got      string `json:"got"`
	GotFrom  string `json:"got_from"`
	// Detail adds where the difference is, or what else differs.
	Detail string `json:"detail,omitempty"`
}

func (m *Mismatch) String() string {
	s := fmt.Sprintf("%s: %s (%s)", m.What, m.Got, m.GotFrom)
	if m.GotFrom == "" {
		s = fmt.Sprintf("%s: %s", m.What, m.Got)
	}
	if m.Want != "" || m.WantFrom != "" {
		s += fmt.Sprintf(", want %s (%s)", m.Want, m.WantFrom)
	}
	if m.Detail != "" {
		s += "; " + m.Detail
	}
	return s
}

// KeyDigests are the keys of a target's ID blocks: the SHA-384 digests an
// attestation report carries as ID_KEY_DIGEST and AUTHOR_KEY_DIGEST.
type KeyDigests struct {
	Target          string      `json:"target"`
	Keyless         bool        `json:"keyless"`
	IDKeyDigest     snp.Digest  `json:"id_key_digest"`
	AuthorKeyDigest *snp.Digest `json:"author_key_digest,omitempty"`
}

// Report is the outcome of Verify: one Link per link of the chain.
type Report struct {
	// Dir is the output directory verified, "" for artifacts named one
	// by one.
	Dir string `json:"dir,omitempty"`
	// OK says no link failed (links may be partial or skipped).
	OK    bool   `json:"ok"`
	Links []Link `json:"links"`
}

// Failed returns the links that failed.
func (r *Report) Failed() []Link {
	var out []Link
	for _, l := range r.Links {
		if l.Status == Failed {
			out = append(out, l)
		}
	}
	return out
}

// Artifacts name what to verify: an output directory, whose files are
// found by their fixed names, and/or files named one by one (a file given
// here wins over the directory's).
type Artifacts struct {
	Dir             string
	Manifest        string
	Rootfs          string
	Initrd          string
	Kernel          string
	Cmdline         string
	IGVM            string
	ReferenceValues string
	// IDBlocks are id-block-TARGET.json files.
	IDBlocks []string
	// InstallPlans are install-plan.json files of the node payload.
	InstallPlans []string
}

// Options tune Verify.
type Options struct {
	// Firmware are OVMF images for the qemu-ovmf targets, matched to
	// them by the sha256 the manifest records (an output directory's
	// ovmf-TARGET.fd is used too). Without one, a qemu-ovmf target's
	// digest cannot be recomputed (link launch_digest is then partial).
	Firmware []string
	// IDKeyDigest and AuthorKeyDigest, when set, are the ID block keys
	// the auditor expects; otherwise the manifest's are.
	IDKeyDigest     *snp.Digest
	AuthorKeyDigest *snp.Digest
}

// Limits on what is read into memory.
const (
	// MaxDocument bounds a JSON or text artifact.
	MaxDocument = 64 << 20
	// MaxImage bounds podvm.igvm, initrd.img and vmlinuz (all are read
	// whole; the root disk is streamed).
	MaxImage = 1 << 30
	// MaxFirmware bounds an OVMF image.
	MaxFirmware = 64 << 20
)

// artifact is one file, read once.
type artifact struct {
	name string // the output name ("rootfs.img")
	path string
	size int64
	sum  string // sha256, "" when not read
	data []byte // content, when kept
	err  error  // missing or unreadable
}

func (a *artifact) ok() bool { return a != nil && a.err == nil && a.data != nil }

// verifier is one Verify run.
type verifier struct {
	ctx  context.Context
	opts Options
	a    Artifacts
	dir  bool // a directory is verified (extra files count)

	files    map[string]*artifact
	manifest *podvm.Manifest
	mErr     error
	refs     *podvm.ReferenceValues
	rErr     error
	disk     *diskCheck

	ig    *igvmView // podvm.igvm parsed, nil when absent or bad
	igErr error
	// igReported is the link that reported podvm.igvm unusable first
	// (0: none yet); later links refer to it.
	igReported int
	current    int    // the link being checked
	cmdline    string // the IGVM's command line
	haveLine   bool
}

// Verify checks the chain of links of the artifacts a names (see the
// package comment) and reports each link. A link that does not hold is a
// Failed link in the report, not an error: the error is for a request
// that cannot be carried out at all (no artifact named, a directory that
// cannot be listed, ctx cancelled).
func Verify(ctx context.Context, a Artifacts, opts Options) (*Report, error) {
	v := &verifier{ctx: ctx, opts: opts, a: a, dir: a.Dir != "", files: map[string]*artifact{}}
	if err := v.collect(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep := &Report{Dir: a.Dir, OK: true}
	for i, check := range []func() Link{v.linkOutputs, v.linkRootfs, v.linkCmdline, v.linkPayload, v.linkDigests, v.linkIDBlocks, v.linkHandler} {
		v.current = i + 1
		l := check()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.Number, l.Name = i+1, LinkNames[i]
		// Names and values from hostile artifacts stay on one line.
		l.Detail = oneLine(l.Detail)
		for j := range l.Unchecked {
			l.Unchecked[j] = oneLine(l.Unchecked[j])
		}
		if m := l.Mismatch; m != nil {
			m.What, m.Want, m.WantFrom, m.Got, m.GotFrom, m.Detail = oneLine(m.What), oneLine(m.Want), oneLine(m.WantFrom), oneLine(m.Got), oneLine(m.GotFrom), oneLine(m.Detail)
		}
		if l.Status == Failed {
			rep.OK = false
		}
		rep.Links = append(rep.Links, l)
	}
	return rep, nil
}

// named maps the output names of the files named one by one to their paths.
func (a *Artifacts) named() map[string]string {
	m := map[string]string{}
	set := func(name, p string) {
		if p != "" {
			m[name] = p
		}
	}
	set(podvm.FileManifest, a.Manifest)
	set(podvm.FileRootfs, a.Rootfs)
	set(podvm.FileInitrd, a.Initrd)
	set(podvm.FileKernel, a.Kernel)
	set(podvm.FileCmdline, a.Cmdline)
	set(podvm.FileIGVM, a.IGVM)
	set(podvm.FileReferenceValues, a.ReferenceValues)
	for _, p := range a.IDBlocks {
		set(filepath.Base(p), p)
	}
	for _, p := range a.InstallPlans {
		set(filepath.Base(p), p)
	}
	return m
}

// collect finds the files, reads each once (rootfs.img in one streamed
// pass beside the others) and parses the documents.
func (v *verifier) collect() error {
	paths := v.a.named()
	if v.dir {
		ents, err := os.ReadDir(v.a.Dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if _, ok := paths[e.Name()]; !ok {
				paths[e.Name()] = filepath.Join(v.a.Dir, e.Name())
			}
		}
	}
	if len(paths) == 0 {
		return errors.New("audit: no artifacts to verify")
	}
	// The manifest first: it names the outputs that must be there.
	if p, ok := paths[podvm.FileManifest]; ok {
		m := readArtifact(v.ctx, podvm.FileManifest, p, MaxDocument)
		v.files[podvm.FileManifest] = m
		if m.err != nil {
			v.mErr = m.err
		} else {
			v.manifest, v.mErr = parseManifest(m.data)
		}
	}
	if v.manifest != nil && v.dir {
		for _, o := range v.manifest.Outputs {
			if _, ok := paths[o.Name]; !ok && validOutputName(o.Name) {
				paths[o.Name] = filepath.Join(v.a.Dir, o.Name)
			}
		}
	}
	var wg sync.WaitGroup
	if p, ok := paths[podvm.FileRootfs]; ok {
		disk := &artifact{name: podvm.FileRootfs, path: p}
		v.files[podvm.FileRootfs] = disk
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, size, err := openRegular(p)
			if err != nil {
				disk.err = err
				return
			}
			defer f.Close()
			disk.size = size
			v.disk = checkDisk(v.ctx, f, size)
			if v.disk.readErr != nil {
				disk.err = v.disk.readErr
			}
			disk.sum = v.disk.sha256
		}()
	}
	names := make([]string, 0, len(paths))
	for n := range paths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == podvm.FileManifest || n == podvm.FileRootfs {
			continue
		}
		v.files[n] = readArtifact(v.ctx, n, paths[n], keepLimit(n))
	}
	wg.Wait()

	if rv := v.files[podvm.FileReferenceValues]; rv != nil {
		if rv.err != nil {
			v.rErr = rv.err
		} else {
			v.refs, v.rErr = parseReferenceValues(rv.data)
		}
	}
	if ig := v.files[podvm.FileIGVM]; ig.ok() {
		v.ig, v.igErr = openIGVM(ig.data)
		if v.igErr == nil && v.ig.linux != nil {
			v.cmdline, v.haveLine = v.ig.linux.Cmdline, true
		}
	}
	return nil
}

// validOutputName refuses a manifest output name that is not a plain file
// name (a hostile manifest must not make Verify read outside the
// directory).
func validOutputName(n string) bool {
	return n != "" && n != "." && n != ".." && filepath.Base(n) == n && !strings.ContainsAny(n, "/\\\x00")
}

// keepLimit is how much of a file is kept in memory: the artifacts the
// links read whole, by kind; 0 for a file only hashed.
func keepLimit(name string) int64 {
	switch {
	case name == podvm.FileIGVM, name == podvm.FileInitrd, name == podvm.FileKernel:
		return MaxImage
	case strings.HasSuffix(name, ".json"), strings.HasSuffix(name, ".txt"), strings.HasSuffix(name, ".toml"), strings.HasSuffix(name, ".yaml"):
		return MaxDocument
	case strings.HasSuffix(name, ".fd"):
		return MaxFirmware
	}
	return 0
}

func openRegular(p string) (*os.File, int64, error) {
	// Stat first: opening a FIFO would block.
	if st, err := os.Stat(p); err != nil {
		return nil, 0, pathErr(err)
	} else if !st.Mode().IsRegular() {
		return nil, 0, errors.New("not a regular file")
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, pathErr(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, pathErr(err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, errors.New("not a regular file")
	}
	return f, st.Size(), nil
}

// pathErr drops the path an *os.PathError repeats (the link names the
// file).
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readArtifact reads a file once: its sha256, and its content when it is
// at most keep bytes (a larger one is only hashed).
func readArtifact(ctx context.Context, name, p string, keep int64) *artifact {
	a := &artifact{name: name, path: p}
	f, size, err := openRegular(p)
	if err != nil {
		a.err = err
		return a
	}
	defer f.Close()
	a.size = size
	h := sha256.New()
	var buf bytes.Buffer
	w := io.Writer(h)
	if size <= keep {
		buf.Grow(int(size))
		w = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(w, ctxio.Reader(ctx, f))
	if err != nil {
		a.err = fmt.Errorf("reading: %w", pathErr(err))
		return a
	}
	a.size = n
	a.sum = hex.EncodeToString(h.Sum(nil))
	if size <= keep && n <= keep {
		a.data = buf.Bytes()
		if a.data == nil {
			a.data = []byte{}
		}
	} else if keep > 0 {
		a.err = fmt.Errorf("%d bytes: larger than the %d this artifact may have", n, keep)
	}
	return a
}

// parseManifest reads manifest.json.
func parseManifest(b []byte) (*podvm.Manifest, error) {
	var m podvm.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not a manifest: %v", err)
	}
	if m.Schema != podvm.ManifestSchema {
		return nil, fmt.Errorf("schema %q: want %q", m.Schema, podvm.ManifestSchema)
	}
	return &m, nil
}

// parseReferenceValues reads reference-values.json.
func parseReferenceValues(b []byte) (*podvm.ReferenceValues, error) {
	var r podvm.ReferenceValues
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("not reference values: %v", err)
	}
	if r.Schema != podvm.ReferenceValuesSchema {
		return nil, fmt.Errorf("schema %q: want %q", r.Schema, podvm.ReferenceValuesSchema)
	}
	return &r, nil
}

// missing says why an artifact cannot be used, for Unchecked and Detail.
func (v *verifier) missing(name string) string {
	a := v.files[name]
	switch {
	case a == nil:
		return name + " not given"
	case a.err != nil:
		return name + ": " + a.err.Error()
	}
	return ""
}

// fail is a failed link with one mismatch.
func fail(m *Mismatch) Link { return Link{Status: Failed, Mismatch: m, Detail: m.String()} }

// broken is a failed link on an artifact that cannot be read.
func broken(name string, err error) Link {
	return fail(&Mismatch{What: name, Got: oneLine(err.Error())})
}

// oneLine keeps a message on one line, control characters escaped (a
// hostile artifact may put them in the names a reader quotes).
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// linkOutputs is link 1: every output's sha256 is the manifest's.
func (v *verifier) linkOutputs() Link {
	if v.files[podvm.FileManifest] == nil {
		return Link{Status: Skipped, Detail: "no manifest.json to check the outputs against", Unchecked: []string{"manifest.json not given"}}
	}
	if v.mErr != nil {
		return broken(podvm.FileManifest, v.mErr)
	}
	var mismatches []*Mismatch
	checked := 0
	listed := map[string]bool{podvm.FileManifest: true}
	var unchecked []string
	for _, o := range v.manifest.Outputs {
		listed[o.Name] = true
		if !validOutputName(o.Name) {
			mismatches = append(mismatches, &Mismatch{What: "output name", GotFrom: "manifest.json", Got: fmt.Sprintf("%q is not a file name", o.Name)})
			continue
		}
		a := v.files[o.Name]
		want := fmt.Sprintf("sha256 %s, %d bytes", o.SHA256, o.Size)
		switch {
		case a == nil && !v.dir:
			unchecked = append(unchecked, o.Name+" not given")
			continue
		case a == nil || errors.Is(a.err, os.ErrNotExist):
			mismatches = append(mismatches, &Mismatch{What: o.Name, WantFrom: "manifest.json", Want: want, GotFrom: "the directory", Got: "no such file"})
			continue
		case a.sum == "":
			mismatches = append(mismatches, &Mismatch{What: o.Name, Got: oneLine(a.err.Error())})
			continue
		}
		checked++
		if a.sum != o.SHA256 || a.size != o.Size {
			mismatches = append(mismatches, &Mismatch{What: o.Name, WantFrom: "manifest.json", Want: want, GotFrom: o.Name,
				Got: fmt.Sprintf("sha256 %s, %d bytes", a.sum, a.size)})
		}
	}
	if v.dir {
		var extra []string
		for n := range v.files {
			if !listed[n] {
				extra = append(extra, n)
			}
		}
		sort.Strings(extra)
		for _, n := range extra {
			mismatches = append(mismatches, &Mismatch{What: n, WantFrom: "manifest.json", Want: "not an output", GotFrom: "the directory", Got: "a file manifest.json does not list"})
		}
	}
	if len(mismatches) > 0 {
		m := mismatches[0]
		if len(mismatches) > 1 {
			var others []string
			for _, o := range mismatches[1:] {
				others = append(others, o.What)
			}
			m.Detail = fmt.Sprintf("%d more: %s", len(others), strings.Join(others, ", "))
		}
		return fail(m)
	}
	l := Link{Status: OK, Detail: fmt.Sprintf("%d outputs have the sha256 and size manifest.json lists", checked)}
	if len(unchecked) > 0 {
		l.Status, l.Unchecked = Partial, unchecked
	}
	return l
}
