package podvm

import (
	"fmt"
	"os"
)

// CheckFiles checks that every host path the config names exists and is
// of the right kind (a file or a directory), so that a missing input is
// one error at its line before anything is built. It follows symlinks.
// Registry sources are not checked here (resolving them is the build's
// first stage).
func (c *Config) CheckFiles() error {
	type want struct {
		path string
		p    *Path
		dir  bool
	}
	var ws []want
	add := func(at string, p *Path, dir bool) {
		if p != nil {
			ws = append(ws, want{at, p, dir})
		}
	}
	s := &c.Spec
	add("spec.kernel.deb", s.Kernel.Deb, false)
	add("spec.kernel.bzImage", s.Kernel.BzImage, false)
	add("spec.kernel.modulesDir", s.Kernel.ModulesDir, true)
	add("spec.initrd.init", s.Initrd.Init, false)
	add("spec.initrd.earlyCpio", s.Initrd.EarlyCPIO, false)
	for i := range s.Initrd.Dirs {
		add(fmt.Sprintf("spec.initrd.dirs[%d].src", i), &s.Initrd.Dirs[i].Src, true)
	}
	for i := range s.Initrd.Files {
		add(fmt.Sprintf("spec.initrd.files[%d].src", i), &s.Initrd.Files[i].Src, false)
	}
	for i := range s.Initrd.Specs {
		add(fmt.Sprintf("spec.initrd.specs[%d]", i), &s.Initrd.Specs[i], false)
	}
	add("spec.rootfs.agent", s.Rootfs.Agent, false)
	for i := range s.Rootfs.Dirs {
		add(fmt.Sprintf("spec.rootfs.dirs[%d].src", i), &s.Rootfs.Dirs[i].Src, true)
	}
	for i := range s.Rootfs.Files {
		add(fmt.Sprintf("spec.rootfs.files[%d].src", i), &s.Rootfs.Files[i].Src, false)
	}
	add("spec.igvm.acpi.tables", s.IGVM.ACPI.Tables, true)
	add("spec.igvm.acpi.pages", s.IGVM.ACPI.Pages, false)
	for i := range s.Measurements.Targets {
		add(fmt.Sprintf("spec.measurements.targets[%d].firmware", i), s.Measurements.Targets[i].Firmware, false)
	}
	if b := s.IDBlock; b != nil {
		add("spec.idBlock.key", b.Key, false)
		add("spec.idBlock.authorKey", b.AuthorKey, false)
	}
	if r := s.Runtime; r != nil {
		add("spec.runtime.kataConfigTemplate", r.KataConfigTemplate, false)
	}
	for _, w := range ws {
		if err := checkKind(w.p.Resolved, w.dir); err != nil {
			return c.errorAt(w.path, "%s: %v", w.p.Written, err)
		}
	}
	for _, srcs := range []struct {
		at   string
		list []Source
	}{{"spec.initrd.sources", s.Initrd.Sources}, {"spec.rootfs.sources", s.Rootfs.Sources}} {
		for i, src := range srcs.list {
			if err := checkSourceFiles(src); err != nil {
				return c.errorAt(fmt.Sprintf("%s[%d]", srcs.at, i), "%s: %v", src.Written, err)
			}
		}
	}
	return nil
}

func checkKind(p string, dir bool) error {
	st, err := os.Stat(p)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("no such file or directory (%s)", p)
		}
		return err
	}
	switch {
	case dir && !st.IsDir():
		return fmt.Errorf("not a directory")
	case !dir && !st.Mode().IsRegular():
		return fmt.Errorf("not a regular file")
	}
	return nil
}
