// Command marker is the /sbin/init of the boot test's verity root: it
// checks that it runs as PID 1 from a read-only erofs on the device-mapper
// device the guest init created, prints one MARKER line and powers off.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func check() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("pid %d, not 1", os.Getpid())
	}
	var s syscall.Statfs_t
	if err := syscall.Statfs("/", &s); err != nil {
		return err
	}
	if s.Type != 0xE0F5E1E2 {
		return fmt.Errorf("/ is file system %#x, not erofs", s.Type)
	}
	if s.Flags&1 == 0 { // ST_RDONLY
		return errors.New("/ is not mounted read-only")
	}
	if err := os.WriteFile("/write-test", []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("writing to / gave %v, want EROFS", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	src := ""
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[4] == "/" {
			for i, x := range f {
				if x == "-" && i+2 < len(f) {
					src = f[i+2]
				}
			}
		}
	}
	if !strings.HasPrefix(src, "/dev/dm-") {
		return fmt.Errorf("/ comes from %q, not a device-mapper device", src)
	}
	dm := strings.TrimPrefix(src, "/dev/")
	name, _ := os.ReadFile("/sys/block/" + dm + "/dm/name")
	if strings.TrimSpace(string(name)) != "ibroot" {
		return fmt.Errorf("%s is named %q, want ibroot", dm, name)
	}
	if ro, _ := os.ReadFile("/sys/block/" + dm + "/ro"); strings.TrimSpace(string(ro)) != "1" {
		return fmt.Errorf("%s is not a read-only block device (ro=%q)", dm, ro)
	}
	if _, err := os.Stat("/init"); err == nil {
		return errors.New("/init of the initramfs is visible in the new root")
	}
	for _, m := range []string{"/dev/console", "/proc/self", "/sys/block"} {
		if _, err := os.Stat(m); err != nil {
			return fmt.Errorf("%s missing after switch root: %v", m, err)
		}
	}
	return nil
}

func main() {
	if err := check(); err != nil {
		fmt.Printf("MARKER FAIL: %v\n", err)
	} else {
		fmt.Println("MARKER OK: pid 1 on read-only erofs from dm-verity device ibroot")
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
