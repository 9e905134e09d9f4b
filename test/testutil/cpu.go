package testutil

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the test process's user and system time so far: the
// benchmarks' cpu-ns/op, steadier than wall time on a shared machine.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
