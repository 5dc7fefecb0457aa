package diff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxDirEntries bounds the entries of one directory a comparison lists.
const maxDirEntries = 1 << 20

// compareDirs compares two directories file by file.
func compareDirs(ctx context.Context, a, b string, opts Options) (*Result, error) {
	d := &dirCompare{ctx: ctx, rootA: a, rootB: b, opts: opts,
		res: &Result{A: a, B: b, Kind: KindDirectory, Differences: []Difference{}}}
	if err := d.dir(""); err != nil && err != errStop {
		return nil, err
	}
	d.res.Identical = len(d.res.Differences) == 0 && !d.res.Truncated
	return d.res, nil
}

type dirCompare struct {
	ctx          context.Context
	rootA, rootB string
	opts         Options
	res          *Result
	primary      int
}

func (d *dirCompare) add(diff Difference) error {
	if d.opts.MaxDifferences > 0 && !diff.Derived && d.primary >= d.opts.MaxDifferences {
		d.res.Truncated = true
		return errStop
	}
	if !diff.Derived {
		d.primary++
	}
	d.res.Differences = append(d.res.Differences, diff)
	return nil
}

func readDir(root, rel string) (map[string]fs.DirEntry, []string, error) {
	p := filepath.Join(root, rel)
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, &InputError{Name: p, Err: pathErr(err)}
	}
	defer f.Close()
	ents, err := f.ReadDir(maxDirEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, &InputError{Name: p, Err: err}
	}
	if len(ents) > maxDirEntries {
		return nil, nil, &InputError{Name: p, Err: fmt.Errorf("more than %d entries", maxDirEntries)}
	}
	m := make(map[string]fs.DirEntry, len(ents))
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		m[e.Name()] = e
		names = append(names, e.Name())
	}
	return m, names, nil
}

func entryKind(e fs.DirEntry) string {
	switch t := e.Type(); {
	case t.IsDir():
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t.IsRegular():
		return "file"
	}
	return "special file"
}

// describeEntry is a directory entry in a few words.
func (d *dirCompare) describeEntry(root, rel string, e fs.DirEntry) string {
	p := filepath.Join(root, rel)
	switch entryKind(e) {
	case "file":
		if st, err := os.Stat(p); err == nil {
			return "file, " + sizeText(st.Size())
		}
	case "symlink":
		if t, err := os.Readlink(p); err == nil {
			return "symlink -> " + strconv.Quote(t)
		}
	}
	return entryKind(e)
}

func (d *dirCompare) dir(rel string) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	ma, na, err := readDir(d.rootA, rel)
	if err != nil {
		return err
	}
	mb, nb, err := readDir(d.rootB, rel)
	if err != nil {
		return err
	}
	names := na
	for _, n := range nb {
		if _, ok := ma[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		r := filepath.ToSlash(filepath.Join(rel, n))
		ea, okA := ma[n]
		eb, okB := mb[n]
		switch {
		case !okA:
			err = d.add(Difference{Section: SectionDirectory, Kind: Added, Path: r, B: d.describeEntry(d.rootB, r, eb)})
		case !okB:
			err = d.add(Difference{Section: SectionDirectory, Kind: Removed, Path: r, A: d.describeEntry(d.rootA, r, ea)})
		case entryKind(ea) != entryKind(eb):
			err = d.add(Difference{Section: SectionDirectory, Kind: Changed, Path: r, Field: "type",
				A: d.describeEntry(d.rootA, r, ea), B: d.describeEntry(d.rootB, r, eb)})
		case entryKind(ea) == "directory":
			err = d.dir(r)
		case entryKind(ea) == "symlink":
			ta, _ := os.Readlink(filepath.Join(d.rootA, r))
			tb, _ := os.Readlink(filepath.Join(d.rootB, r))
			if ta != tb {
				err = d.add(Difference{Section: SectionDirectory, Kind: Changed, Path: r, Field: "link", A: strconv.Quote(ta), B: strconv.Quote(tb)})
			}
		case entryKind(ea) == "file":
			err = d.file(r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// jsonName says a file of an output directory is one of its JSON
// documents, compared as JSON whatever its content (a malformed one is
// trouble, not text): manifest.json, reference-values*.json,
// id-block-*.json.
func jsonName(name string) bool {
	return name == "manifest.json" ||
		strings.HasPrefix(name, "reference-values") && strings.HasSuffix(name, ".json") ||
		strings.HasPrefix(name, "id-block-") && strings.HasSuffix(name, ".json")
}

// file compares one pair of files and merges its result.
func (d *dirCompare) file(rel string) error {
	opts := d.opts
	if opts.MaxDifferences > 0 {
		if opts.MaxDifferences -= d.primary; opts.MaxDifferences <= 0 {
			d.res.Truncated = true
			return errStop
		}
	}
	if jsonName(path.Base(rel)) {
		opts.Kind = KindJSON
	}
	res, err := compareFilePaths(d.ctx, filepath.Join(d.rootA, rel), filepath.Join(d.rootB, rel), opts)
	if err != nil {
		return err
	}
	d.res.Read.SizeA += res.Read.SizeA
	d.res.Read.SizeB += res.Read.SizeB
	d.res.Read.ReadA += res.Read.ReadA
	d.res.Read.ReadB += res.Read.ReadB
	p, q := res.Counts()
	d.res.Files = append(d.res.Files, FileResult{Name: rel, Kind: res.Kind, Identical: res.Identical, Differences: p, Derived: q})
	for _, x := range res.Differences {
		x.File = rel
		if x.Derived {
			d.res.Differences = append(d.res.Differences, x)
			continue
		}
		d.primary++
		d.res.Differences = append(d.res.Differences, x)
	}
	if res.Truncated {
		d.res.Truncated = true
		return errStop
	}
	return nil
}
