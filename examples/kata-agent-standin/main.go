// Command kata-agent-standin is a STAND-IN for the kata-agent, for the
// imagebuilder demo and boot tests only: it is not the kata-agent and
// serves no containers.
//
// The demo image installs it as /usr/bin/kata-agent, where kata-agent.service
// (StandardOutput=tty, so its stdout reaches /dev/console) starts it once
// systemd reaches kata-containers.target. It prints one line that a boot
// test waits for,
//
//	KATA-AGENT-STAND-IN-READY kernel=RELEASE root=SOURCE:FSTYPE:ro
//
// and exits with status 3. The unit's FailureAction=poweroff then powers
// the VM off, so a test sees the line and QEMU ends by itself (the kernel
// prints "reboot: Power down"). With standin.hold on the kernel command
// line it stays up instead, for looking around on the console.
//
// It is a static Go program (build it with CGO_ENABLED=0), so it runs on
// any root file system.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"
)

// ReadyLine starts the line printed when the stand-in runs.
const ReadyLine = "KATA-AGENT-STAND-IN-READY"

// exitStatus makes kata-agent.service fail, so that its
// FailureAction=poweroff ends the VM.
const exitStatus = 3

func main() {
	fmt.Printf("%s kernel=%s root=%s\n", ReadyLine, kernelRelease(), rootMount())
	if hold() {
		fmt.Println("kata-agent stand-in: standin.hold is set, staying up")
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(exitStatus)
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// rootMount describes the mount on / as SOURCE:FSTYPE:ro|rw.
func rootMount() string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	root := "unknown"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) >= 4 && fl[1] == "/" {
			mode := "rw"
			for _, o := range strings.Split(fl[3], ",") {
				if o == "ro" {
					mode = "ro"
				}
			}
			root = fl[0] + ":" + fl[2] + ":" + mode // the last mount on / wins
		}
	}
	return root
}

func hold() bool {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return false
	}
	for _, p := range strings.Fields(string(b)) {
		if p == "standin.hold" || p == "standin.hold=1" {
			return true
		}
	}
	return false
}
