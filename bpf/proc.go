package bpf

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// ProcStartTicks reads the start time of process pid in clock ticks since
// boot (/proc/PID/stat field 22): the identity Watch wants next to the pid.
func ProcStartTicks(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	return parseStartTicks(raw)
}

// parseStartTicks takes field 22 of a /proc/PID/stat line. The command
// (field 2) is in parentheses and may hold spaces and parentheses itself,
// so fields are counted from the last ')'.
func parseStartTicks(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("parse /proc stat: no command field")
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the command, want 20", len(fields))
	}
	ticks, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat start time: %w", err)
	}
	return ticks, nil
}
