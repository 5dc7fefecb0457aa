package podvm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a config file.
const MaxFileSize = 1 << 20

// LoadOptions carry what the caller knows of the environment; the library
// reads no environment variable itself.
type LoadOptions struct {
	// CacheDir is what ${IMAGEBUILDER_CACHE} at the start of a path
	// stands for (the CLI passes its cache directory); "" makes such a
	// path an error. A relative CacheDir is the working directory's,
	// like every path a caller passes (not the config file's).
	CacheDir string
	// SourceDateEpoch, when set (the CLI sets it from the
	// SOURCE_DATE_EPOCH environment variable), wins over
	// spec.sourceDateEpoch, as reproducible-builds.org specifies.
	SourceDateEpoch *int64
}

// Load reads, decodes and validates the config file at path. Relative
// paths in it start from the file's directory. Every error is an *Error
// naming the file, the line and the field.
func Load(path string, opts LoadOptions) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: errMsg(err)}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory, not a config file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: errMsg(err)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{File: path, Msg: errMsg(err)}
	}
	return Parse(data, path, filepath.Dir(abs), opts)
}

func errMsg(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// Parse decodes and validates a config held in memory; file names it in
// errors and dir is where relative paths start (an absolute directory).
func Parse(data []byte, file, dir string, opts LoadOptions) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, &Error{File: file, Msg: "empty file: want a PodVMImage document"}
		}
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, yamlError(file, err)
		}
		return nil, &Error{File: file, Line: extra.Line, Msg: "a second YAML document: a config file holds one"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if opts.CacheDir != "" {
		abs, err := filepath.Abs(opts.CacheDir)
		if err != nil {
			return nil, &Error{File: file, Msg: "cache directory: " + errMsg(err)}
		}
		opts.CacheDir = abs
	}
	sum := sha256.Sum256(data)
	cfg := &Config{Source: FileInfo{File: file, Dir: dir, SHA256: hex.EncodeToString(sum[:])}}
	d := &decoder{file: file, pos: map[string]Position{}, res: resolver{baseDir: dir, cacheDir: opts.CacheDir}}
	if root.Kind != yaml.MappingNode {
		return nil, d.errorf(root, "", "want a PodVMImage mapping (apiVersion, kind, metadata, spec), got %s", kindName(root))
	}
	if err := d.decode(root, reflect.ValueOf(cfg).Elem(), ""); err != nil {
		return nil, err
	}
	cfg.pos = d.pos
	if cfg.Spec.SourceDateEpoch != nil {
		cfg.Source.SourceDateEpochFrom = "file"
	}
	if opts.SourceDateEpoch != nil {
		v := *opts.SourceDateEpoch
		cfg.Spec.SourceDateEpoch = &v
		cfg.Source.SourceDateEpochFrom = "environment"
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yamlError turns a YAML syntax error into an *Error with its line.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	e := &Error{File: file, Msg: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "YAML syntax: " + m[2]
	}
	return e
}

// PositionOf returns where the field at path (as in Error.Path) was
// written, or where its nearest written parent was; ok is false when none
// was.
func (c *Config) PositionOf(path string) (Position, bool) {
	for p := path; ; p = parentPath(p) {
		if pos, ok := c.pos[p]; ok {
			return pos, true
		}
		if p == "" {
			return Position{}, false
		}
	}
}

// parentPath drops the last ".field" or "[i]" of a field path.
func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		switch p[i] {
		case '.':
			return p[:i]
		case '[':
			return p[:i]
		}
	}
	return ""
}

// errorAt is an *Error for the field at path, placed at its line (or its
// nearest written parent's).
func (c *Config) errorAt(path, format string, args ...any) *Error {
	e := &Error{File: c.Source.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	if pos, ok := c.PositionOf(path); ok {
		e.Line, e.Column = pos.Line, pos.Column
	}
	return e
}
