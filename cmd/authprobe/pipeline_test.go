package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/cmd/authprobe/internal/targets"
)

// unwatchLog records what the pipeline asks the kernel side to forget.
type unwatchLog struct {
	nopWatcher
	unwatched []uint32
}

func (w *unwatchLog) Unwatch(pid uint32) error {
	w.unwatched = append(w.unwatched, pid)
	return nil
}

// TestScanForgetsAnExitedProcess: a scan of /proc that runs after a
// watched process exited, but before its exit event is read (a pod change
// does that), forgets the process the way its exit event would: logged,
// and what user space attached for it dropped. The event, read after,
// finds nothing left to forget.
func TestScanForgetsAnExitedProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	pid := uint32(cmd.Process.Pid)
	start, err := bpf.ProcStartTicks(int(pid))
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait() // reaped: gone from /proc

	var logs bytes.Buffer
	w := &unwatchLog{}
	p := &pipeline{
		log:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		watcher: w,
		matcher: targets.NewMatcher(nil, "", "/proc"),
		procs:   map[uint32]targets.Process{pid: {PID: pid, Start: start, Exe: "/usr/bin/sleep"}},
	}
	p.scan(false)
	require.Empty(t, p.procs)
	require.Equal(t, []uint32{pid}, w.unwatched)
	require.Contains(t, logs.String(), fmt.Sprintf(`msg="process exited" pid=%d seen="gone from /proc"`, pid))
	require.Zero(t, p.stats().Watched)

	p.Exit(bpf.ProcEvent{PID: pid, Start: start})
	require.Equal(t, 1, strings.Count(logs.String(), "process exited"), "forgotten once")
	require.Equal(t, []uint32{pid}, w.unwatched)
}
