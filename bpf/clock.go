package bpf

import (
	"time"

	"golang.org/x/sys/unix"
)

// KernelClock converts bpf_ktime_get_ns timestamps (CLOCK_MONOTONIC) to
// wall-clock time, with the offset measured once at start.
type KernelClock struct {
	offset int64 // wall ns - monotonic ns
}

// NewKernelClock measures the offset between the two clocks.
func NewKernelClock() (KernelClock, error) {
	var ts unix.Timespec
	before := time.Now().UnixNano()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return KernelClock{}, err
	}
	after := time.Now().UnixNano()
	return KernelClock{offset: (before+after)/2 - ts.Nano()}, nil
}

// Wall returns the wall-clock time of a kernel timestamp.
func (c KernelClock) Wall(ktime uint64) time.Time {
	return time.Unix(0, int64(ktime)+c.offset)
}

// Now returns the current kernel monotonic time in ns.
func (c KernelClock) Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
