package main

import (
	"debug/buildinfo"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/bpf/uprobe"
)

// goRegABI reports whether the executable is a Go program on the register
// ABI (Go 1.17+ on amd64, 1.18+ on arm64), whose running goroutine the
// kernel side reads from the syscall's saved registers: its tasks are
// goroutines. Anything unreadable is not.
func goRegABI(exe string) bool {
	if exe == "" {
		return false
	}
	bi, err := buildinfo.ReadFile(exe)
	if err != nil {
		return false
	}
	minor := goMinor(bi.GoVersion)
	switch runtime.GOARCH {
	case "amd64":
		return minor >= 17
	case "arm64":
		return minor >= 18
	}
	return false
}

// goMinor is 21 for "go1.21.4" (and "go1.21rc1"); 0 when unreadable.
func goMinor(v string) int {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(rest[:end])
	return n
}

// goSpawnProbe finds runtime.newproc1 in the executable of the Go process
// pid, for the kernel side to follow the goroutines its handlers spawn;
// nil (and why) when the binary does not allow it.
func goSpawnProbe(pid uint32) (*bpf.GoSpawnProbe, error) {
	path := fmt.Sprintf("/proc/%d/exe", pid)
	s, err := uprobe.ResolveGoSpawn(path)
	if err != nil {
		return nil, err
	}
	return &bpf.GoSpawnProbe{Path: path, Entry: s.Newproc1.Offset, Returns: s.Newproc1.Returns}, nil
}
