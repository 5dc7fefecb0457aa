package diff

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// kindPlural names two artifacts of a kind.
var kindPlural = map[Kind]string{
	KindRootDisk: "root disks", KindErofs: "erofs images", KindIGVM: "IGVM files", KindInitrd: "initrds",
	KindKernel: "kernels", KindJSON: "JSON documents", KindText: "text files", KindData: "files",
	KindDirectory: "directories",
}

func plural(k Kind) string {
	if s, ok := kindPlural[k]; ok {
		return s
	}
	return string(k) + " files"
}

// maxValueText bounds a value in the text form (the JSON form has it
// whole).
const maxValueText = 300

// WriteText writes the result for people. Two files: a first line saying
// what was compared and how many differences were found, then one line per
// difference, in the artifact's order, those that follow from the others
// last, under "follows from the above:". Two directories: a first line,
// then the same for each file that differs, then the names on one side
// only and the identical files.
func (r *Result) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if r.Kind != KindDirectory {
		writeDiffs(bw, fmt.Sprintf("%s and %s", safe(r.A), safe(r.B)), r.Kind, r.Differences, "")
	} else {
		r.writeDirText(bw)
	}
	if r.Truncated {
		p, _ := r.Counts()
		fmt.Fprintf(bw, "stopped after %d differences\n", p)
	}
	return bw.Flush()
}

func counted(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// writeDiffs writes the head line of one artifact and its differences.
func writeDiffs(w io.Writer, what string, kind Kind, diffs []Difference, indent string) {
	var primary, derived []Difference
	for _, d := range diffs {
		if d.Derived {
			derived = append(derived, d)
		} else {
			primary = append(primary, d)
		}
	}
	if len(diffs) == 0 {
		fmt.Fprintf(w, "%s%s are identical (%s)\n", indent, what, plural(kind))
		return
	}
	head := fmt.Sprintf("%s%s: %s differ: %s", indent, what, plural(kind), counted(len(primary), "difference", "differences"))
	if len(derived) > 0 {
		head += fmt.Sprintf(", %s", counted(len(derived), "more that follows from them", "more that follow from them"))
	}
	fmt.Fprintln(w, head)
	for _, d := range primary {
		fmt.Fprintf(w, "%s  %s\n", indent, d.Line())
	}
	if len(derived) > 0 {
		fmt.Fprintf(w, "%s  follows from the above:\n", indent)
		for _, d := range derived {
			fmt.Fprintf(w, "%s    %s\n", indent, d.Line())
		}
	}
}

func (r *Result) writeDirText(w io.Writer) {
	var differ, identical []string
	for _, f := range r.Files {
		if f.Identical {
			identical = append(identical, safe(f.Name))
		} else {
			differ = append(differ, f.Name)
		}
	}
	var own []Difference
	byFile := map[string][]Difference{}
	for _, d := range r.Differences {
		if d.File == "" {
			own = append(own, d)
		} else {
			byFile[d.File] = append(byFile[d.File], d)
		}
	}
	what := fmt.Sprintf("%s and %s", safe(r.A), safe(r.B))
	if len(differ) == 0 && len(own) == 0 {
		fmt.Fprintf(w, "%s are identical (directories, %s)\n", what, counted(len(identical), "file", "files"))
		return
	}
	var parts []string
	if len(differ) > 0 {
		parts = append(parts, counted(len(differ), "file differs", "files differ"))
	}
	if len(own) > 0 {
		parts = append(parts, counted(len(own), "entry on one side only or of another type", "entries on one side only or of another type"))
	}
	parts = append(parts, fmt.Sprintf("%d identical", len(identical)))
	fmt.Fprintf(w, "%s: directories differ: %s\n", what, strings.Join(parts, ", "))
	for _, f := range r.Files {
		if !f.Identical {
			writeDiffs(w, safe(f.Name), f.Kind, byFile[f.Name], "")
		}
	}
	for _, d := range own {
		fmt.Fprintf(w, "%s\n", d.Line())
	}
	if len(identical) > 0 {
		fmt.Fprintf(w, "identical: %s\n", strings.Join(identical, ", "))
	}
}

// Line is the difference in one line of text: where (section, path,
// field), both values and what it means.
func (d Difference) Line() string {
	var where []string
	switch d.Section {
	case SectionFiles, SectionFields, SectionDirectory:
	default:
		where = append(where, d.Section)
	}
	if d.Path != "" {
		where = append(where, safe(d.Path))
	}
	if d.Field != "" {
		where = append(where, safe(d.Field))
	}
	var b strings.Builder
	b.WriteString(strings.Join(where, " "))
	switch d.Kind {
	case Added:
		b.WriteString(": added")
		if d.B != "" {
			b.WriteString(": " + short(d.B))
		}
	case Removed:
		b.WriteString(": removed")
		if d.A != "" {
			b.WriteString(": " + short(d.A))
		}
	default:
		if d.A == "" && d.B == "" {
			b.WriteString(" differs")
		} else {
			b.WriteString(": " + short(d.A) + " -> " + short(d.B))
		}
	}
	if d.Detail != "" {
		b.WriteString(" (" + short(d.Detail) + ")")
	}
	return b.String()
}

// safe quotes a name that holds control characters or is not UTF-8, so
// that a hostile name cannot forge a line or rewrite the terminal.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	if strings.IndexFunc(s, isControl) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func short(s string) string {
	s = safe(s)
	if len(s) > maxValueText {
		cut := maxValueText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}
