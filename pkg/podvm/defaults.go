package podvm

import (
	"reflect"
	"slices"

	"github.com/imagebuilder/imagebuilder/pkg/measure"
	"github.com/imagebuilder/imagebuilder/pkg/payload"
)

// Defaulted returns a copy of c with every default filled in: what the
// pipeline builds from, and what the manifest records (CanonicalJSON).
func (c *Config) Defaulted() *Config {
	d := deepCopy(c)
	s := &d.Spec
	if s.SourceDateEpoch == nil {
		s.SourceDateEpoch = new(int64)
	}
	if s.Kernel.Modules == nil {
		s.Kernel.Modules = slices.Clone(DefaultModules)
	}
	in := &s.Initrd
	if in.Compression == "" {
		in.Compression = "zstd"
	}
	in.Dirs = defaultDirs(in.Dirs)
	in.Files = nonNil(in.Files)
	in.Specs = nonNil(in.Specs)
	in.Sources = nonNil(in.Sources)
	r := &s.Rootfs
	r.Sources = nonNil(r.Sources)
	if r.Platform == "" {
		r.Platform = "linux/amd64"
	}
	r.Dirs = defaultDirs(r.Dirs)
	r.Files = nonNil(r.Files)
	if r.Seed == "" {
		r.Seed = d.Metadata.Name
	}
	if s.Cmdline.Parameters == nil {
		s.Cmdline.Parameters = slices.Clone(DefaultParameters)
	}
	if s.Cmdline.Root == "" {
		s.Cmdline.Root = RootIBRoot
	}
	if s.IGVM.Policy == nil {
		p := DefaultPolicy
		s.IGVM.Policy = &p
	}
	if s.IGVM.Layout.Kind == "" {
		s.IGVM.Layout.Kind = LayoutMSHV
	}
	for _, b := range []**bool{&s.IGVM.Layout.SVME, &s.IGVM.Layout.EncryptedPage, &s.IGVM.Layout.PvalidateOpt} {
		if *b == nil {
			t := true
			*b = &t
		}
	}
	if s.Measurements.Targets == nil {
		// The one target the IGVM layout is for.
		p := PlatformIGVMMSHV
		if s.IGVM.Layout.Kind == LayoutKVM {
			p = PlatformIGVMKVM
		}
		s.Measurements.Targets = []Target{{Platform: p}}
	}
	for i := range s.Measurements.Targets {
		t := &s.Measurements.Targets[i]
		if t.Name == "" {
			t.Name = t.Platform
		}
		switch t.Platform {
		case PlatformIGVMKVM:
			if t.VCPUs == nil {
				t.VCPUs = VCPUs{1}
			}
			if t.HostKernel == "" {
				t.HostKernel = measure.DefaultHostKernel.String()
			}
		case PlatformQEMUOVMF:
			if t.VCPUs == nil {
				t.VCPUs = VCPUs{1}
			}
			if t.VMMType == "" {
				t.VMMType = "QEMU"
			}
			if t.GuestFeatures == nil {
				f := Hex(1)
				t.GuestFeatures = &f
			}
			if t.Policy == nil {
				p := *s.IGVM.Policy
				t.Policy = &p
			}
		}
	}
	if r := s.Runtime; r != nil {
		defaultRuntime(r, s.Measurements.Targets)
	}
	return d
}

// defaultRuntime fills in spec.runtime's defaults: pkg/payload's, made
// explicit, and the target when there is only one. VMMemoryMiB stays 0
// (the Kata template's default_memory, which only the build reads).
func defaultRuntime(r *Runtime, targets []Target) {
	if r.Target == "" && len(targets) == 1 {
		r.Target = targets[0].Name
	}
	if r.HandlerPrefix == "" {
		r.HandlerPrefix = payload.DefaultHandlerPrefix
	}
	if r.Platform == "" {
		for _, t := range targets {
			if t.Name == r.Target {
				r.Platform = payload.DefaultPlatform(t.Platform)
			}
		}
	}
	if r.InstallPrefix == "" {
		r.InstallPrefix = payload.DefaultInstallPrefix
	}
	if r.Shim == "" {
		r.Shim = payload.DefaultShim
	}
	if r.PodAnnotations == nil {
		r.PodAnnotations = slices.Clone(payload.DefaultPodAnnotations)
	}
	if r.PrivilegedWithoutHostDevices == nil {
		t := true
		r.PrivilegedWithoutHostDevices = &t
	}
	if r.ContainerdConfigVersion == 0 {
		r.ContainerdConfigVersion = 2
	}
	if r.OverheadMemoryMiB == nil {
		v := int64(payload.DefaultOverheadMemoryMiB)
		r.OverheadMemoryMiB = &v
	}
	if r.OverheadCPU == "" {
		r.OverheadCPU = payload.DefaultOverheadCPU
	}
	if r.URLBase == "" {
		r.URLBase = payload.DefaultURLBase
	}
}

func defaultDirs(ds []DirEntry) []DirEntry {
	ds = nonNil(ds)
	for i := range ds {
		if ds[i].Dst == "" {
			ds[i].Dst = "/"
		}
	}
	return ds
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// deepCopy copies c so that the copy shares no pointer, slice or map with
// it (the field positions excepted, which are never changed).
func deepCopy(c *Config) *Config {
	d := new(Config)
	copyValue(reflect.ValueOf(d).Elem(), reflect.ValueOf(c).Elem())
	d.pos = c.pos
	return d
}

func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.Set(reflect.Zero(src.Type()))
			return
		}
		n := reflect.New(src.Type().Elem())
		copyValue(n.Elem(), src.Elem())
		dst.Set(n)
	case reflect.Slice:
		if src.IsNil() {
			dst.Set(reflect.Zero(src.Type()))
			return
		}
		n := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := 0; i < src.Len(); i++ {
			copyValue(n.Index(i), src.Index(i))
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.Set(reflect.Zero(src.Type()))
			return
		}
		n := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			copyValue(v, it.Value())
			n.SetMapIndex(it.Key(), v)
		}
		dst.Set(n)
	case reflect.Struct:
		dst.Set(src) // unexported fields too
		for i := 0; i < src.NumField(); i++ {
			if src.Type().Field(i).IsExported() {
				copyValue(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}
