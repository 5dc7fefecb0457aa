package initrd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFuzzCorpusCost measures every input of a fuzz corpus in a process
// of its own (wall time of the walk, peak RSS of the process) and prints
// the slowest and the most memory-hungry, for the numbers docs/initrd.md
// reports. It runs only when asked:
//
//	INITRD_FUZZ_COST=$(go env GOCACHE)/fuzz/github.com/imagebuilder/imagebuilder/pkg/initrd/FuzzWalkStructured \
//	  go test -run TestFuzzCorpusCost -v ./pkg/initrd
//
// (the directory's base name says which target's inputs they are;
// testdata/fuzz/NAME works too).
func TestFuzzCorpusCost(t *testing.T) {
	dir := os.Getenv("INITRD_FUZZ_COST")
	if dir == "" {
		t.Skip("set INITRD_FUZZ_COST to a corpus directory")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", dir, err)
	}
	type cost struct {
		file    string
		walk    time.Duration
		maxRSS  int64 // KiB
		size    int
		outcome string
	}
	var costs []cost
	for _, f := range files {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFuzzCostChild$")
		cmd.Env = append(os.Environ(), "INITRD_FUZZ_COST=", "INITRD_FUZZ_COST_INPUT="+f, "INITRD_FUZZ_COST_TARGET="+filepath.Base(dir))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", f, err, out)
		}
		var c cost
		c.file = filepath.Base(f)
		line := strings.TrimSpace(string(out))
		line = line[strings.LastIndex(line, "COST ")+5:]
		var ns int64
		fields := strings.SplitN(line, " ", 3)
		ns, _ = strconv.ParseInt(fields[0], 10, 64)
		c.size, _ = strconv.Atoi(fields[1])
		c.outcome = fields[2]
		c.walk = time.Duration(ns)
		c.maxRSS = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		costs = append(costs, c)
	}
	sort.Slice(costs, func(i, j int) bool { return costs[i].walk > costs[j].walk })
	t.Logf("%d inputs", len(costs))
	for _, c := range costs[:min(3, len(costs))] {
		t.Logf("slowest: %s: walk %v, %d bytes, peak RSS %d KiB: %s", c.file, c.walk, c.size, c.maxRSS, c.outcome)
	}
	sort.Slice(costs, func(i, j int) bool { return costs[i].maxRSS > costs[j].maxRSS })
	for _, c := range costs[:min(3, len(costs))] {
		t.Logf("most memory: %s: peak RSS %d KiB, walk %v, %d bytes: %s", c.file, c.maxRSS, c.walk, c.size, c.outcome)
	}
}

// TestFuzzCostChild walks one corpus input for TestFuzzCorpusCost.
func TestFuzzCostChild(t *testing.T) {
	name := os.Getenv("INITRD_FUZZ_COST_INPUT")
	if name == "" {
		t.Skip("run by TestFuzzCorpusCost")
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a corpus file", name)
	}
	q := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	img := []byte(s)
	if os.Getenv("INITRD_FUZZ_COST_TARGET") == "FuzzWalkStructured" {
		img = genImage(&planReader{b: img})
	}
	start := time.Now()
	err = Walk(context.Background(), bytes.NewReader(img), func(h *Header, _ Segment, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	outcome := "ok"
	if err != nil {
		outcome = err.Error()
	}
	fmt.Printf("COST %d %d %s\n", time.Since(start).Nanoseconds(), len(img), outcome)
}
