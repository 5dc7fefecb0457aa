package main

// The conventions every command follows (docs/cli.md describes them for
// users); each helper here is the one place a convention is implemented.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
	"github.com/imagebuilder/imagebuilder/internal/buildenv"
	"github.com/imagebuilder/imagebuilder/internal/suggest"
)

// newGroupCmd returns a command that only holds subcommands: without an
// argument it prints its help; an unknown subcommand is a usage error
// naming it (cobra would print the help and exit 0).
func newGroupCmd(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  noSubcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(subs...)
	return cmd
}

// noSubcommandArgs rejects arguments of a command group: the first one is
// a subcommand that does not exist.
func noSubcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		// The closest of cobra's suggestions ("verty": verity, not verify).
		msg += fmt.Sprintf("; did you mean %q?", suggest.Closest(args[0], s, -1))
	}
	return usagef("%s", msg)
}

// jsonFlag is --json[=FILE]: --json prints the command's result as JSON to
// stdout (instead of the text output); --json=FILE writes it to FILE,
// published together with the command's other outputs, and keeps the text
// output on stdout.
type jsonFlag struct {
	set  bool
	path string // "-" for stdout
}

func (j *jsonFlag) String() string {
	if !j.set {
		return ""
	}
	return j.path
}

func (j *jsonFlag) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty file name (--json alone prints to stdout)")
	}
	// Refused here, as a bad flag value, rather than when the output is
	// created, after the work.
	if st, err := os.Stat(s); s != "-" && err == nil && st.IsDir() {
		return fmt.Errorf("%s: is a directory; give a file name", s)
	} else if s != "-" && err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s: is a %s, not a regular file", s, atomicfile.Kind(st.Mode()))
	}
	j.set, j.path = true, s
	return nil
}

func (j *jsonFlag) Type() string { return "file" }

// addJSONFlag registers --json on cmd.
func addJSONFlag(cmd *cobra.Command, j *jsonFlag) {
	f := cmd.Flags().VarPF(j, "json", "", "print the result as JSON to stdout, or with --json=FILE write it to FILE")
	f.NoOptDefVal = "-"
}

// toStdout says the JSON replaces the text output on stdout.
func (j *jsonFlag) toStdout() bool { return j.set && j.path == "-" }

// toFile says the JSON goes to a file of its own.
func (j *jsonFlag) toFile() bool { return j.set && j.path != "-" }

// marshalJSON is the JSON form of every result: two-space indent, one
// trailing newline, no HTML escaping (command lines hold '<' and '&').
func marshalJSON(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// printJSON writes v as JSON to w.
func printJSON(w io.Writer, v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// writeResultJSON writes v to the --json=FILE file, if one was given.
func writeResultJSON(js *jsonFlag, v any) error {
	set := &atomicfile.Set{}
	defer set.Abort()
	write, err := js.stage(set)
	if err != nil {
		return err
	}
	if err := write(v); err != nil {
		return err
	}
	return set.Commit()
}

// stage adds the JSON file to set when --json=FILE was given; it returns
// a function that writes v into it, to be called before set.Commit.
func (j *jsonFlag) stage(set *atomicfile.Set) (write func(v any) error, err error) {
	if !j.toFile() {
		return func(any) error { return nil }, nil
	}
	f, err := set.Create(j.path, 0o644)
	if err != nil {
		return nil, err
	}
	return func(v any) error {
		b, err := marshalJSON(v)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("output %s: %w", j.path, err)
		}
		return nil
	}, nil
}

// addOutputFlag registers -o/--output. what describes the output for the
// help text; a required flag is marked so in --help.
func addOutputFlag(cmd *cobra.Command, p *string, what string, required bool) {
	cmd.Flags().StringVarP(p, "output", "o", "", what)
	if required {
		cmd.MarkFlagRequired("output")
	}
}

// checkOutputPath refuses an output path that cannot be written before any
// work is done: "-" where the output is not a stream, or a directory.
func checkOutputPath(cmd *cobra.Command, path string, streamOK bool) error {
	if path == "-" {
		if streamOK {
			return nil
		}
		return usagef("%s: -o -: this output cannot go to stdout (it is written at random offsets); give a file name", cmd.CommandPath())
	}
	if path == "" {
		return usagef("%s: -o/--output is required", cmd.CommandPath())
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return usagef("%s: -o %s: is a directory; give a file name", cmd.CommandPath(), path)
	} else if err == nil && !st.Mode().IsRegular() {
		// The output replaces the name, so a device or FIFO there would
		// be replaced, not written to.
		hint := ""
		if streamOK {
			hint = " (-o - writes to stdout)"
		}
		return usagef("%s: -o %s: is a %s, not a regular file%s", cmd.CommandPath(), path, atomicfile.Kind(st.Mode()), hint)
	}
	return nil
}

// hashingWriter counts and hashes what passes through it, for the summary
// line of outputs written as a stream.
type hashingWriter struct {
	w    io.Writer
	n    int64
	hash interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, hash: sha256.New()}
}

func (h *hashingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.n += int64(n)
	h.hash.Write(p[:n])
	return n, err
}

func (h *hashingWriter) sum() string { return hex.EncodeToString(h.hash.Sum(nil)) }

// readerSHA256 hashes a file already written (for outputs written at random
// offsets).
func readerSHA256(r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// printSummary prints the one-line summary every build command ends with:
//
//	NAME: SIZE bytes, sha256 HEX[, DETAIL...]
func printSummary(w io.Writer, name string, size int64, sha string, details ...string) {
	line := fmt.Sprintf("%s: %d bytes, sha256 %s", name, size, sha)
	for _, d := range details {
		if d != "" {
			line += ", " + d
		}
	}
	fmt.Fprintln(w, line)
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (default 0); a bad value is a
// usage error.
func sourceDateEpoch() (int64, error) {
	v, _, err := buildenv.SourceDateEpoch()
	if err != nil {
		return 0, usageError{err}
	}
	return v, nil
}

// checkDuplicates refuses a list flag that names one value twice.
func checkDuplicates(cmd *cobra.Command, flag string, values []string) error {
	seen := map[string]bool{}
	for _, v := range values {
		if seen[v] {
			return usagef("%s: --%s %s: given twice", cmd.CommandPath(), flag, v)
		}
		seen[v] = true
	}
	return nil
}

// completeValues registers shell completion for an enumerated flag.
func completeValues(cmd *cobra.Command, flag string, values ...string) {
	cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// flagChanged reports whether the user gave the flag.
func flagChanged(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed
}

var _ pflag.Value = (*jsonFlag)(nil)
