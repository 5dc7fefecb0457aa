// Command verityraw helps scripts/bench/verity.sh and scripts/demo.sh.
//
//	verityraw gen FILE SIZE    writes SIZE bytes of reproducible pseudo-random
//	                           data (ChaCha8 with a fixed seed) to FILE
//	verityraw hash FILE SALT   prints the raw bound: the time crypto/sha256
//	                           takes to hash every 4 KiB block of FILE
//	                           (salt first, as dm-verity format 1 does) on
//	                           all cores, with the file already in memory,
//	                           no tree and no output (loading the file is
//	                           not timed), and the CPU time (user and
//	                           system) of that run. One timed run per call,
//	                           as the bench times the tools once per round:
//	                           each gets the same number of tries at a quiet
//	                           moment of a shared machine.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: verityraw gen FILE SIZE | verityraw hash FILE SALT-HEX")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "gen":
		size, err := strconv.ParseInt(os.Args[3], 10, 64)
		if err == nil {
			err = gen(os.Args[2], size)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "verityraw:", err)
			os.Exit(1)
		}
	case "hash":
		rawBound(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "verityraw: unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func gen(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{'i', 'm', 'a', 'g', 'e', 'b', 'u', 'i', 'l', 'd', 'e', 'r'})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, int64(len(buf)))
		r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		size -= n
	}
	return f.Close()
}

func rawBound(path, saltHex string) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verityraw:", err)
		os.Exit(1)
	}
	salt, err := hex.DecodeString(saltHex)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verityraw: salt:", err)
		os.Exit(1)
	}
	const bs = 4096
	blocks := len(data) / bs
	workers := runtime.GOMAXPROCS(0)
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			h := sha256.New()
			var sum [sha256.Size]byte
			lo, hi := blocks*w/workers, blocks*(w+1)/workers
			for i := lo; i < hi; i++ {
				h.Reset()
				h.Write(salt)
				h.Write(data[i*bs : (i+1)*bs])
				h.Sum(sum[:0])
			}
		}(w)
	}
	wg.Wait()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	fmt.Printf("%.3f %.3f\n", wall.Seconds(), cpu.Seconds())
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
