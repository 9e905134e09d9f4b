package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

const srcDiscovery = "127.0.0.13"

// TestDiscoveryAfterStart: processes that start after the agent and match
// a target — by executable glob, by listening port — are watched without
// a restart, and their first login is a span.
func TestDiscoveryAfterStart(t *testing.T) {
	testutil.MustRoot(t)
	t.Run("exe", func(t *testing.T) {
		// A uniquely named copy of the Go server, so the glob matches
		// nothing else on the machine.
		dir := t.TempDir()
		bin := filepath.Join(dir, "authprobe-discovery-goserver")
		src, err := os.ReadFile(mustGoBuild(t, &goServerBuild, "./test/servers/goserver", "goserver"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, src, 0o755); err != nil {
			t.Fatal(err)
		}
		ag := mustStartAgent(t, AgentOptions{Extra: map[string]any{
			"targets": []map[string]any{{"exe": filepath.Join(dir, "authprobe-discovery-*"), "service_name": "discovered-by-exe"}},
		}})
		started := time.Now()
		srv := mustStartProcess(t, exec.Command(bin, "0"))
		assertDiscovered(t, ag, srv, started, "discovered-by-exe")
	})
	t.Run("port", func(t *testing.T) {
		port := freePort(t)
		ag := mustStartAgent(t, AgentOptions{Extra: map[string]any{
			"targets": []map[string]any{{"port": port, "service_name": "discovered-by-port"}},
		}})
		cmd := exec.Command("python3", "login_server.py", strconv.Itoa(port))
		cmd.Dir = filepath.Join(testutil.RepoRoot(t), "test", "servers", "python")
		started := time.Now()
		srv := mustStartProcess(t, cmd)
		assertDiscovered(t, ag, srv, started, "discovered-by-port")
	})
}

// assertDiscovered waits for the agent to say it watches srv, then checks
// that a login becomes a span with the target's service name.
func assertDiscovered(t *testing.T, ag *Agent, srv *Server, started time.Time, service string) {
	t.Helper()
	want := fmt.Sprintf("watching process\" component=pipeline pid=%d ", srv.PID)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ag.Stderr(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not watch pid %d within 10s:\n%s", srv.PID, ag.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Logged, not asserted: timings belong to benchmarks.
	t.Logf("pid %d watched %v after it was started", srv.PID, time.Since(started).Round(time.Millisecond))

	got := mustDo(t, mustClient(t, srcDiscovery), srv, formLogin("alice", "wrong"))
	if got.Status != 401 {
		t.Fatalf("login status %d, want 401", got.Status)
	}
	spans := ag.ExpectSpans(t, 1, spanWait)
	sp := spans[0]
	if sp.Name != "auth.login" || sp.Attr("auth.result") != "failure" || sp.Attr("client.address") != srcDiscovery {
		t.Fatalf("unexpected span: %s", sp)
	}
	if got := sp.ResourceAttr("service.name"); got != service {
		t.Errorf("service.name %q, want %q", got, service)
	}
	if got := sp.ResourceAttr("process.pid"); got != fmt.Sprint(srv.PID) {
		t.Errorf("process.pid %v, want %d", got, srv.PID)
	}
}

// mustStartProcess runs a test server command that prints "listening
// PORT", in its own process group killed at Cleanup.
func mustStartProcess(tb testing.TB, cmd *exec.Cmd) *Server {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	srv := &Server{Lang: filepath.Base(cmd.Path), stderr: &testutil.SyncBuffer{}}
	cmd.Stderr = srv.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	srv.PID = cmd.Process.Pid
	tb.Cleanup(func() {
		_ = syscall.Kill(-srv.PID, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		tb.Fatalf("%s: no \"listening\" line: %v\n%s", cmd.Path, err, srv.Stderr())
	}
	port, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "listening ")))
	if err != nil {
		tb.Fatalf("%s: bad line %q", cmd.Path, line)
	}
	srv.Port = port
	srv.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	return srv
}
