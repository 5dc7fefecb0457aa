package payload

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// CRIPlugin is the plugin whose table holds the runtimes, per containerd
// config version.
func CRIPlugin(version int) (string, error) {
	switch version {
	case 2:
		return "io.containerd.grpc.v1.cri", nil
	case 3:
		return "io.containerd.cri.v1.runtime", nil
	}
	return "", fmt.Errorf("containerd config version %d: supported are 2 (containerd 1.x and 2.x) and 3 (containerd 2.x)", version)
}

// runtimePath is the TOML table path of the handler's runtime entry.
func (r ContainerdRuntime) runtimePath(version int) ([]string, error) {
	plugin, err := CRIPlugin(version)
	if err != nil {
		return nil, err
	}
	return []string{"plugins", plugin, "containerd", "runtimes", r.Handler}, nil
}

// Table is the runtime entry as TOML tables for a config version: the
// runtime table and its options table, nothing else.
func (r ContainerdRuntime) Table(version int) (string, error) {
	path, err := r.runtimePath(version)
	if err != nil {
		return "", err
	}
	if err := checkHandlerName(r.Handler); err != nil {
		return "", err
	}
	head := fmt.Sprintf("plugins.%s.containerd.runtimes.%s", quoteTOML(path[1]), r.Handler)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", head)
	fmt.Fprintf(&b, "  runtime_type = %s\n", quoteTOML(r.RuntimeType))
	if r.RuntimePath != "" {
		fmt.Fprintf(&b, "  runtime_path = %s\n", quoteTOML(r.RuntimePath))
	}
	fmt.Fprintf(&b, "  pod_annotations = %s\n", formatTOMLValue(nonNil(r.PodAnnotations)))
	fmt.Fprintf(&b, "  privileged_without_host_devices = %t\n", r.PrivilegedWithoutHostDevices)
	fmt.Fprintf(&b, "\n  [%s.options]\n", head)
	fmt.Fprintf(&b, "    ConfigPath = %s\n", quoteTOML(r.ConfigPath))
	return b.String(), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// defaultRuntime is containerd's built-in default runtime. containerd
// decodes a config's runtimes table over its defaults by replacing the
// whole map, so a file that adds the first runtime must name runc too, or
// runc pods stop working (measured with containerd 1.6's config dump).
const defaultRuntime = "runc"

// defaultRuntimeTable is runc's entry as containerd's defaults have it.
func defaultRuntimeTable(plugin string) string {
	return fmt.Sprintf("[plugins.%s.containerd.runtimes.%s]\n  runtime_type = \"io.containerd.runc.v2\"\n\n", quoteTOML(plugin), defaultRuntime)
}

// needsDefaultRuntime reports whether a decoded config defines no runtime
// (ours apart) while containerd's default runtime is runc: then adding
// ours must add runc as well.
func needsDefaultRuntime(m map[string]any, plugin, handler string) bool {
	cri := lookupTable(m, []string{"plugins", plugin, "containerd"})
	if cri != nil {
		if name, ok := cri["default_runtime_name"]; ok && name != defaultRuntime {
			return false
		}
		if rt, ok := cri["runtimes"].(map[string]any); ok {
			for k := range rt {
				if k != handler {
					return false
				}
			}
		}
	}
	return true
}

// DropIn is containerd-runtime.toml: a complete containerd config file of
// r.ConfigVersion holding only the runtime, for containerd's imports.
func (r ContainerdRuntime) DropIn() ([]byte, error) {
	t, err := r.Table(r.ConfigVersion)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# containerd runtime handler %s (imagebuilder node payload).\n", r.Handler)
	fmt.Fprintf(&b, "# Add it to containerd's config with `imagebuilder install`, which edits the\n")
	fmt.Fprintf(&b, "# main config where an import would replace its CRI settings (containerd 1.x).\n")
	fmt.Fprintf(&b, "version = %d\n\n", r.ConfigVersion)
	b.WriteString(t)
	return b.Bytes(), nil
}

// tree is the decoded form of the runtime entry, for comparisons.
func (r ContainerdRuntime) tree() map[string]any {
	m := map[string]any{
		"runtime_type":                    r.RuntimeType,
		"pod_annotations":                 decodedForm(nonNil(r.PodAnnotations)),
		"privileged_without_host_devices": r.PrivilegedWithoutHostDevices,
		"options":                         map[string]any{"ConfigPath": r.ConfigPath},
	}
	if r.RuntimePath != "" {
		m["runtime_path"] = r.RuntimePath
	}
	return m
}

// ConfigError is a containerd configuration that cannot be edited.
type ConfigError struct {
	File string
	Err  error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s: %v", e.File, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

// containerdConfig is what Install needs to know of a containerd config.
type containerdConfig struct {
	version int
	imports []string
	hasCRI  bool           // configures the CRI plugin
	entry   map[string]any // the handler's runtime entry, if present
	tree    map[string]any
}

func parseContainerdConfig(data []byte, r ContainerdRuntime, name string) (*containerdConfig, error) {
	if _, _, err := scanTOML(data); err != nil {
		return nil, &ConfigError{name, err}
	}
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		return nil, &ConfigError{name, fmt.Errorf("not valid TOML: %v", err)}
	}
	c := &containerdConfig{version: 1, tree: m}
	if v, ok := m["version"]; ok {
		n, ok := v.(int64)
		if !ok {
			return nil, &ConfigError{name, fmt.Errorf("version = %v: want an integer", v)}
		}
		c.version = int(n)
	}
	if c.version != 2 && c.version != 3 {
		return nil, &ConfigError{name, fmt.Errorf("config version %d: only versions 2 and 3 can be edited (migrate it with `containerd config migrate`)", c.version)}
	}
	if v, ok := m["imports"]; ok {
		list, ok := v.([]any)
		if !ok {
			return nil, &ConfigError{name, fmt.Errorf("imports: want a list of paths")}
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, &ConfigError{name, fmt.Errorf("imports: want a list of paths")}
			}
			c.imports = append(c.imports, s)
		}
	}
	plugin, _ := CRIPlugin(c.version)
	plugins, _ := m["plugins"].(map[string]any)
	_, c.hasCRI = plugins[plugin]
	path, _ := r.runtimePath(c.version)
	if t := lookupTable(m, path[:len(path)-1]); t != nil {
		if e, ok := t[r.Handler]; ok {
			em, ok := e.(map[string]any)
			if !ok {
				return nil, &ConfigError{name, fmt.Errorf("runtime %s is not a table", r.Handler)}
			}
			c.entry = em
		}
	}
	return c, nil
}

// mergeRuntime returns data with the runtime entry for the file's config
// version set: unchanged when it is there already, its tables replaced
// when they differ, appended otherwise. Every other byte stays, and the
// result is decoded and compared to prove that only the entry changed.
func mergeRuntime(data []byte, r ContainerdRuntime, name string) ([]byte, bool, error) {
	c, err := parseContainerdConfig(data, r, name)
	if err != nil {
		return nil, false, err
	}
	want := r.tree()
	if c.entry != nil && reflect.DeepEqual(c.entry, want) {
		return data, false, nil
	}
	path, _ := r.runtimePath(c.version)
	table, err := r.Table(c.version)
	if err != nil {
		return nil, false, &ConfigError{name, err}
	}
	out := data
	if c.entry != nil {
		if out, err = removeTables(data, path); err != nil {
			return nil, false, &ConfigError{name, err}
		}
	}
	plugin := path[1]
	addDefault := needsDefaultRuntime(c.tree, plugin, r.Handler)
	var b bytes.Buffer
	b.Write(out)
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	if b.Len() > 0 {
		b.WriteByte('\n')
	}
	if addDefault {
		b.WriteString(defaultRuntimeTable(plugin))
	}
	b.WriteString(table)
	result := b.Bytes()

	// Prove the edit: the result decodes; without the entry it equals the
	// input without the entry; the entry is ours.
	var after map[string]any
	if err := toml.Unmarshal(result, &after); err != nil {
		return nil, false, &ConfigError{name, fmt.Errorf("adding runtime %s gives invalid TOML (are the runtimes an inline table?): %v", r.Handler, err)}
	}
	got := lookupTable(after, path)
	if !reflect.DeepEqual(got, want) {
		return nil, false, &ConfigError{name, fmt.Errorf("runtime %s: the edit did not take (is it also set with dotted keys or an inline table?)", r.Handler)}
	}
	before := c.tree
	for _, m := range []map[string]any{before, after} {
		if t := lookupTable(m, path[:len(path)-1]); t != nil {
			delete(t, r.Handler)
		}
	}
	if addDefault {
		if t := lookupTable(after, path[:len(path)-1]); t != nil {
			delete(t, defaultRuntime)
		}
	}
	if !equalIgnoringEmpty(before, after) {
		return nil, false, &ConfigError{name, fmt.Errorf("adding runtime %s would change other settings; refusing", r.Handler)}
	}
	return result, true, nil
}

// equalIgnoringEmpty compares two decoded documents, where tables that
// only the edit created (empty once the entry is removed) do not count.
func equalIgnoringEmpty(a, b map[string]any) bool {
	return reflect.DeepEqual(pruneEmpty(a), pruneEmpty(b))
}

func pruneEmpty(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if t, ok := v.(map[string]any); ok {
			t = pruneEmpty(t)
			if len(t) == 0 {
				continue
			}
			out[k] = t
			continue
		}
		out[k] = v
	}
	return out
}

// removeTables cuts the tables at path and below (header to next header)
// out of data. They must be standard [table] headers.
func removeTables(data []byte, path []string) ([]byte, error) {
	tables, kvs, err := scanTOML(data)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		full := append(slices.Clone(kv.table), kv.key...)
		if len(full) > len(path) && slices.Equal(full[:len(path)], path) && !isUnder(kv.table, path) {
			return nil, fmt.Errorf("runtime %s is set with dotted keys; edit it by hand", path[len(path)-1])
		}
	}
	var out bytes.Buffer
	pos := 0
	for i, t := range tables {
		if !isUnder(t.path, path) {
			continue
		}
		end := len(data)
		if i+1 < len(tables) {
			end = tables[i+1].headerStart
		}
		out.Write(data[pos:t.headerStart])
		pos = end
	}
	out.Write(data[pos:])
	return out.Bytes(), nil
}

func isUnder(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

// criConfigured reports whether a containerd config file configures the
// CRI plugin of version.
func criConfigured(data []byte, version int) (bool, error) {
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		return false, fmt.Errorf("not valid TOML: %v", err)
	}
	plugin, err := CRIPlugin(version)
	if err != nil {
		return false, err
	}
	plugins, _ := m["plugins"].(map[string]any)
	_, ok := plugins[plugin]
	return ok, nil
}

// resolveImport is an imports entry as a path under root, as containerd
// 1.6 resolves it (services/server/config resolveImports): an entry with
// a '*' is a glob, relative to containerd's working directory ("/" for
// the service); any other relative entry is relative to the main
// config's directory.
func resolveImport(root, mainConfig, imp string) string {
	if !filepath.IsAbs(imp) && !strings.Contains(imp, "*") {
		imp = filepath.Join(filepath.Dir(mainConfig), imp)
	}
	return filepath.Join(root, "/", imp)
}
