package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device-mapper ioctl interface (linux/dm-ioctl.h): every command passes a
// struct dm_ioctl (312 bytes), followed for DM_TABLE_LOAD by struct
// dm_target_spec (40 bytes) and the target's parameter string.
const (
	dmIoctlSize    = 312
	dmTargetSize   = 40
	dmNameLen      = 128
	dmUUIDLen      = 129
	dmReadonlyFlag = 1 << 0

	dmDevCreate  = 3
	dmDevSuspend = 6
	dmTableLoad  = 9
)

// dmIoctlNr is _IOWR(0xfd, cmd, struct dm_ioctl).
func dmIoctlNr(cmd uintptr) uintptr {
	return 3<<30 | dmIoctlSize<<16 | 0xfd<<8 | cmd
}

// dmHeader encodes struct dm_ioctl for a request of total size n.
func dmHeader(n int, name, uuid string, flags uint32, targets uint32) []byte {
	b := make([]byte, n)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 4) // version 4.0.0
	le.PutUint32(b[12:], uint32(n))
	le.PutUint32(b[16:], dmIoctlSize)
	le.PutUint32(b[20:], targets)
	le.PutUint32(b[28:], flags)
	copy(b[48:48+dmNameLen-1], name)
	copy(b[176:176+dmUUIDLen-1], uuid)
	return b
}

// dmTable encodes a DM_TABLE_LOAD request with one target.
func dmTable(name string, flags uint32, sectors uint64, target, params string) []byte {
	plen := len(params) + 1
	plen += (8 - plen%8) % 8
	n := dmIoctlSize + dmTargetSize + plen
	b := dmHeader(n, name, "", flags, 1)
	t := b[dmIoctlSize:]
	le := binary.LittleEndian
	le.PutUint64(t[0:], 0)
	le.PutUint64(t[8:], sectors)
	le.PutUint32(t[20:], uint32(dmTargetSize+plen)) // next
	copy(t[24:24+15], target)
	copy(t[dmTargetSize:], params)
	return b
}

func dmIoctl(fd int, cmd uintptr, b []byte) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), dmIoctlNr(cmd), uintptr(unsafe.Pointer(&b[0])))
	if e != 0 {
		return e
	}
	return nil
}

// dmCreateVerity creates the read-only device name with a single verity
// target and resumes it; it returns the device number.
func dmCreateVerity(name, uuid string, sectors uint64, params string) (uint64, error) {
	ctl := "/dev/mapper/control"
	if _, err := os.Stat(ctl); err != nil {
		os.MkdirAll("/dev/mapper", 0o755)
		if err := unix.Mknod(ctl, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 236))); err != nil && err != unix.EEXIST {
			return 0, fmt.Errorf("device-mapper control node: %w", err)
		}
	}
	fd, err := unix.Open(ctl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w (is dm-mod loaded?)", ctl, err)
	}
	defer unix.Close(fd)
	b := dmHeader(dmIoctlSize, name, uuid, 0, 0)
	if err := dmIoctl(fd, dmDevCreate, b); err != nil {
		return 0, fmt.Errorf("DM_DEV_CREATE %s: %w", name, err)
	}
	dev := binary.LittleEndian.Uint64(b[40:])
	if err := dmIoctl(fd, dmTableLoad, dmTable(name, dmReadonlyFlag, sectors, "verity", params)); err != nil {
		return 0, fmt.Errorf("DM_TABLE_LOAD verity %q: %w", params, err)
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live.
	if err := dmIoctl(fd, dmDevSuspend, dmHeader(dmIoctlSize, name, "", 0, 0)); err != nil {
		return 0, fmt.Errorf("DM_DEV_SUSPEND (resume) %s: %w", name, err)
	}
	return dev, nil
}
