package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imagebuilder/imagebuilder/internal/atomicfile"
)

// DefaultContainerdConfig is where containerd reads its config on a node.
const DefaultContainerdConfig = "/etc/containerd/config.toml"

// InstallOptions say where to install.
type InstallOptions struct {
	// Root is the node's root directory ("/" on the node itself, a
	// mounted image or a staging tree otherwise).
	Root string
	// ContainerdConfig is the containerd config path on the node
	// (DefaultContainerdConfig).
	ContainerdConfig string
}

// Containerd config methods of InstallResult.
const (
	MethodUnchanged = "unchanged" // the runtime is configured already
	MethodCreated   = "created"   // no config existed: a new one holds the runtime
	MethodEdited    = "edited"    // the runtime was added to an existing file in place
	MethodDropIn    = "drop-in"   // a drop-in file in a directory the config imports
)

// InstallResult says what Install did.
type InstallResult struct {
	Handler string          `json:"handler"`
	Files   []InstalledFile `json:"files"`
	// ContainerdConfig is the node path of the containerd config file
	// that holds the runtime; Method says how it got there.
	ContainerdConfig string `json:"containerd_config"`
	Method           string `json:"containerd_method"`
	// Backup is the node path of the copy of the config before the edit.
	Backup  string `json:"backup,omitempty"`
	Changed bool   `json:"changed"`
	// Restart lists what the operator must do for the change to take
	// effect (Install restarts nothing).
	Restart []string `json:"restart"`
}

// InstalledFile is one file of the plan.
type InstalledFile struct {
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Changed bool   `json:"changed"`
}

// InstallError is a failed install; nothing under the root changed.
type InstallError struct {
	Path string // the node path or output file concerned
	Err  error
}

func (e *InstallError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *InstallError) Unwrap() error { return e.Err }

// CorruptError is an output file whose content is not what the plan or
// manifest says.
type CorruptError struct {
	File      string
	Want, Got string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: sha256 %s, want %s (the file was changed or damaged)", e.File, e.Got, e.Want)
}

// testHookCopy, when set, is called before each file is copied; tests
// use it to inject a failure in the middle of an install.
var testHookCopy func(dst string) error

// Install installs the output directory outDir (its install-plan.json)
// under opts.Root: the plan's files (content checked against the plan),
// and the runtime merged into the containerd config. Every file is
// written first and all are named together at the end, so a failure
// leaves the root as it was; a second run changes nothing.
func Install(ctx context.Context, outDir string, opts InstallOptions) (*InstallResult, error) {
	if opts.Root == "" {
		return nil, errors.New("payload: install: no root directory")
	}
	if st, err := os.Stat(opts.Root); err != nil {
		return nil, &InstallError{opts.Root, err}
	} else if !st.IsDir() {
		return nil, &InstallError{opts.Root, errors.New("not a directory")}
	}
	if opts.ContainerdConfig == "" {
		opts.ContainerdConfig = DefaultContainerdConfig
	}
	if !filepath.IsAbs(opts.ContainerdConfig) {
		return nil, &InstallError{opts.ContainerdConfig, errors.New("want an absolute path on the node")}
	}
	planName := filepath.Join(outDir, InstallPlanFile)
	data, err := readDocument(planName)
	if err != nil {
		return nil, &InstallError{planName, err}
	}
	plan, err := ParsePlan(data, planName)
	if err != nil {
		return nil, err
	}
	res := &InstallResult{Handler: plan.Handler}
	node := func(p string) string { return filepath.Join(opts.Root, p) }

	var set atomicfile.Set
	defer set.Abort()
	var madeDirs []string
	ok := false
	defer func() {
		if !ok {
			for _, d := range slices.Backward(madeDirs) {
				os.Remove(d)
			}
		}
	}()
	mkdirs := func(dir string) error {
		var missing []string
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil {
				break
			}
			missing = append(missing, d)
			if d == filepath.Dir(d) {
				break
			}
		}
		for _, d := range slices.Backward(missing) {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			madeDirs = append(madeDirs, d)
		}
		return nil
	}

	for _, f := range plan.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dst := node(f.Path)
		if err := underRoot(opts.Root, dst); err != nil {
			return nil, &InstallError{f.Path, err}
		}
		mode, _ := f.FileMode()
		same, err := sameFile(ctx, dst, f, fs.FileMode(mode))
		if err != nil {
			return nil, &InstallError{f.Path, err}
		}
		res.Files = append(res.Files, InstalledFile{Path: f.Path, SHA256: f.SHA256, Changed: !same})
		if same {
			continue
		}
		if err := mkdirs(filepath.Dir(dst)); err != nil {
			return nil, &InstallError{f.Path, err}
		}
		if testHookCopy != nil {
			if err := testHookCopy(dst); err != nil {
				return nil, &InstallError{f.Path, err}
			}
		}
		if err := copyChecked(ctx, &set, filepath.Join(outDir, f.Source), dst, f, fs.FileMode(mode)); err != nil {
			return nil, err
		}
	}

	if err := installRuntime(plan.Containerd, opts, &set, mkdirs, res); err != nil {
		return nil, err
	}
	if err := set.Commit(); err != nil {
		return nil, &InstallError{opts.Root, err}
	}
	ok = true
	for _, f := range res.Files {
		res.Changed = res.Changed || f.Changed
	}
	res.Changed = res.Changed || res.Method != MethodUnchanged
	if res.Method != MethodUnchanged {
		res.Restart = append(res.Restart, fmt.Sprintf("restart containerd to load runtime handler %s (systemctl restart containerd)", plan.Handler))
	}
	res.Restart = append(res.Restart, fmt.Sprintf("apply the RuntimeClass: kubectl apply -f %s", filepath.Join(outDir, RuntimeClassFile)))
	return res, nil
}

// sameFile reports whether dst is already the plan's file: a regular file
// of the size, mode and sha256.
func sameFile(ctx context.Context, dst string, f PlanFile, mode fs.FileMode) (bool, error) {
	st, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, fmt.Errorf("exists and is not a regular file")
	}
	if st.Size() != f.Size || st.Mode().Perm() != mode {
		return false, nil
	}
	_, sum, err := hashFile(ctx, dst)
	if err != nil {
		return false, err
	}
	return sum == f.SHA256, nil
}

// copyChecked copies src into a new file of set at dst, checking size and
// sha256 against the plan on the way.
func copyChecked(ctx context.Context, set *atomicfile.Set, src, dst string, f PlanFile, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return &InstallError{src, err}
	}
	defer in.Close()
	out, err := set.Create(dst, mode)
	if err != nil {
		return &InstallError{f.Path, err}
	}
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(out, h), io.LimitReader(in, f.Size+1))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &InstallError{f.Path, err}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != f.Size || sum != f.SHA256 {
		return &CorruptError{File: src, Want: f.SHA256, Got: sum}
	}
	// The umask must not decide the installed mode.
	if err := out.Chmod(mode); err != nil {
		return &InstallError{f.Path, err}
	}
	return nil
}

// installRuntime adds the runtime to the containerd config (see
// docs/node-payload.md for how the file is chosen).
func installRuntime(r ContainerdRuntime, opts InstallOptions, set *atomicfile.Set, mkdirs func(string) error, res *InstallResult) error {
	mainNode := opts.ContainerdConfig
	main := filepath.Join(opts.Root, mainNode)
	if err := underRoot(opts.Root, main); err != nil {
		return &InstallError{mainNode, err}
	}
	data, err := os.ReadFile(main)
	if errors.Is(err, fs.ErrNotExist) {
		table, err := r.Table(r.ConfigVersion)
		if err != nil {
			return err
		}
		plugin, _ := CRIPlugin(r.ConfigVersion)
		content := fmt.Sprintf("version = %d\n\n%s%s", r.ConfigVersion, defaultRuntimeTable(plugin), table)
		if err := mkdirs(filepath.Dir(main)); err != nil {
			return &InstallError{mainNode, err}
		}
		if err := writeInSet(set, main, []byte(content), 0o644); err != nil {
			return &InstallError{mainNode, err}
		}
		res.ContainerdConfig, res.Method = mainNode, MethodCreated
		return nil
	}
	if err != nil {
		return &InstallError{mainNode, err}
	}
	c, err := parseContainerdConfig(data, r, mainNode)
	if err != nil {
		return err
	}
	targetNode, targetData := mainNode, data
	switch c.version {
	case 2:
		// containerd 1.x replaces a plugin's whole section with the one of
		// the last imported file that configures it: the runtime must go
		// into that file, or the main config when none does.
		last, lastData, err := lastCRIImport(opts.Root, mainNode, c.imports, c.version)
		if err != nil {
			return err
		}
		if last != "" {
			targetNode, targetData = last, lastData
		}
	case 3:
		// containerd 2.x merges imported plugin sections key by key, so a
		// drop-in is safe where the config imports a directory by pattern.
		if dropIn := dropInPath(opts.Root, mainNode, c.imports, r.Handler); dropIn != "" {
			content, err := dropInFor(r, c.version)
			if err != nil {
				return err
			}
			res.ContainerdConfig = dropIn
			existing, err := os.ReadFile(filepath.Join(opts.Root, dropIn))
			if err == nil && bytes.Equal(existing, content) {
				res.Method = MethodUnchanged
				return nil
			}
			if err := underRoot(opts.Root, filepath.Join(opts.Root, dropIn)); err != nil {
				return &InstallError{dropIn, err}
			}
			if err := writeInSet(set, filepath.Join(opts.Root, dropIn), content, 0o644); err != nil {
				return &InstallError{dropIn, err}
			}
			res.Method = MethodDropIn
			return nil
		}
	}
	merged, changed, err := mergeRuntime(targetData, r, targetNode)
	if err != nil {
		return err
	}
	res.ContainerdConfig = targetNode
	if !changed {
		res.Method = MethodUnchanged
		return nil
	}
	target := filepath.Join(opts.Root, targetNode)
	if err := underRoot(opts.Root, target); err != nil {
		return &InstallError{targetNode, err}
	}
	st, err := os.Stat(target)
	if err != nil {
		return &InstallError{targetNode, err}
	}
	backup := fmt.Sprintf("%s.%s.bak", targetNode, sha256Hex(targetData)[:12])
	if _, err := os.Lstat(filepath.Join(opts.Root, backup)); errors.Is(err, fs.ErrNotExist) {
		if err := writeInSet(set, filepath.Join(opts.Root, backup), targetData, st.Mode().Perm()); err != nil {
			return &InstallError{backup, err}
		}
	}
	if err := writeInSet(set, target, merged, st.Mode().Perm()); err != nil {
		return &InstallError{targetNode, err}
	}
	res.Method, res.Backup = MethodEdited, backup
	return nil
}

// dropInFor is the drop-in for a config version.
func dropInFor(r ContainerdRuntime, version int) ([]byte, error) {
	r.ConfigVersion = version
	return r.DropIn()
}

// lastCRIImport is the node path and content of the last file the main
// config imports that configures the CRI plugin ("" when none does).
// Imports are read in containerd's order: entries in order, each
// pattern's matches sorted.
func lastCRIImport(root, mainNode string, imports []string, version int) (string, []byte, error) {
	var last string
	var lastData []byte
	for _, imp := range imports {
		matches, err := filepath.Glob(resolveImport(root, mainNode, imp))
		if err != nil {
			return "", nil, &ConfigError{mainNode, fmt.Errorf("imports: %q: %v", imp, err)}
		}
		slices.Sort(matches)
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err != nil {
				return "", nil, &InstallError{m, err}
			}
			nodePath := "/" + strings.TrimPrefix(filepath.ToSlash(mustRel(root, m)), "/")
			yes, err := criConfigured(data, version)
			if err != nil {
				return "", nil, &ConfigError{nodePath, err}
			}
			if yes {
				last, lastData = nodePath, data
			}
		}
	}
	return last, lastData, nil
}

func mustRel(root, p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}

// dropInPath is the node path of a drop-in for the handler that an
// imports pattern of the main config matches ("" when none does).
func dropInPath(root, mainNode string, imports []string, handler string) string {
	for _, imp := range imports {
		pattern := imp
		if !filepath.IsAbs(pattern) {
			if !strings.Contains(pattern, "*") {
				continue // a single file, not a directory of drop-ins
			}
			pattern = filepath.Join("/", pattern) // containerd's working directory
		}
		dir := filepath.Dir(pattern)
		if strings.ContainsAny(dir, "*?[") {
			continue
		}
		candidate := filepath.Join(dir, handler+".toml")
		if ok, _ := filepath.Match(pattern, candidate); !ok {
			continue
		}
		if st, err := os.Stat(filepath.Join(root, dir)); err == nil && st.IsDir() {
			return candidate
		}
	}
	return ""
}

// underRoot refuses a path under root whose existing part resolves,
// through symbolic links, outside root. A node tree being baked may hold
// absolute links (/opt -> /var/opt) that name a path of the tree; from
// the host they lead elsewhere, and install must not write there.
func underRoot(root, p string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	d := p // the deepest part of p that exists
	for {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		d = filepath.Dir(d)
	}
	real, err := filepath.EvalSymlinks(d)
	if err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	if rel, err := filepath.Rel(realRoot, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s resolves to %s, outside the root %s (a symbolic link on the way; install follows none out of the root)", d, real, root)
	}
	return nil
}

func writeInSet(set *atomicfile.Set, path string, data []byte, mode fs.FileMode) error {
	f, err := set.Create(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Chmod(mode)
}
