package chain

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// process is a started child: its output, and its end.
type process struct {
	cmd    *exec.Cmd
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	exited chan struct{}
}

// mustStart starts cmd in a process group of its own, as account when the
// test runs as root (and as the test's own user otherwise). Cleanup sends
// stop to the process, waits, then kills the whole group.
func mustStart(tb testing.TB, name string, cmd *exec.Cmd, account string, stop syscall.Signal) *process {
	tb.Helper()
	p := &process{cmd: cmd, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: mustCredential(tb, account)}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
		// Whatever is left of the group (workers, forked children).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if tb.Failed() {
			tb.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, testutil.Tail(p.stdout.String(), 3000),
				name, testutil.Tail(p.stderr.String(), 3000))
		}
	})
	return p
}

// running reports whether the process has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// mustCredential is account's uid and gid when the test runs as root, nil
// (the test's own user) otherwise.
func mustCredential(tb testing.TB, account string) *syscall.Credential {
	tb.Helper()
	if os.Geteuid() != 0 || account == "" {
		return nil
	}
	uid, gid := mustLookup(tb, account)
	return &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true}
}

func mustLookup(tb testing.TB, account string) (uint32, uint32) {
	tb.Helper()
	u, err := user.Lookup(account)
	if err != nil {
		tb.Fatalf("user %s: %v", account, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		tb.Fatalf("user %s: ids %q %q", account, u.Uid, u.Gid)
	}
	return uint32(uid), uint32(gid)
}

// mustTempDir is a directory others may enter (the services run as other
// users than the test), removed at cleanup.
func mustTempDir(tb testing.TB, pattern string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// mustChown gives path to account when the test runs as root.
func mustChown(tb testing.TB, path, account string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		return
	}
	uid, gid := mustLookup(tb, account)
	if err := os.Chown(path, int(uid), int(gid)); err != nil {
		tb.Fatal(err)
	}
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return testutil.FreePort(tb)
}

// waitFor polls ready until it succeeds, the process exits or timeout.
func waitFor(p *process, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("exited (%v) before it was ready: %w", p.cmd.ProcessState, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
