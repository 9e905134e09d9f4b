package main

import (
	"debug/buildinfo"
	"runtime"
	"strconv"
	"strings"
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
