package chain

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// Agent is a running `authprobe run` with the stdout exporter.
type Agent struct {
	MetricsAddr string
	cmd         *exec.Cmd
	stdout      *testutil.SyncBuffer
	stderr      *testutil.SyncBuffer
	exited      chan struct{}
}

// AgentTarget is one config target: a port its processes listen on, and
// whether they are a gateway.
type AgentTarget struct {
	Port    int
	Gateway bool
}

// MustStartAgent builds ./cmd/authprobe into a temp dir, runs it as root
// on a config with the chain's auth routes and targets (and args), and
// waits until it is ready. Cleanup stops it (SIGTERM, then SIGKILL).
func MustStartAgent(tb testing.TB, targets []AgentTarget, args ...string) *Agent {
	tb.Helper()
	testutil.MustRoot(tb)
	dir := tb.TempDir()
	bin := filepath.Join(dir, "authprobe")
	if err := testutil.GoBuild(bin, "./cmd/authprobe"); err != nil {
		tb.Fatal(err)
	}
	a := &Agent{
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb))),
		stdout:      &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{}),
	}
	var ts []string
	for _, t := range targets {
		ts = append(ts, fmt.Sprintf("  - {port: %d, gateway: %t}", t.Port, t.Gateway))
	}
	cfg := `service_name: chain
routes:
  - {name: auth.login, kind: login, method: POST, path: /login}
  - {name: auth.authorize, kind: authorize, path: /api/**}
security:
  username: {privacy: plain}
targets:
` + strings.Join(ts, "\n") + `
exporter: {kind: stdout}
metrics: {addr: "` + a.MetricsAddr + `"}
`
	path := filepath.Join(dir, "authprobe.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	args = append(append([]string{"run", "--config", path}, testutil.AgentArgs()...), args...)
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		tb.Fatalf("start agent: %v", err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	tb.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(20 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.exited
		}
		if tb.Failed() {
			tb.Logf("agent stderr:\n%s", testutil.Tail(a.stderr.String(), 6000))
		}
	})
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-a.exited:
			tb.Fatalf("agent exited before ready:\n%s", testutil.Tail(a.stderr.String(), 6000))
		default:
		}
		if resp, err := client.Get("http://" + a.MetricsAddr + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return a
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent not ready:\n%s", testutil.Tail(a.stderr.String(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Output is everything the agent wrote, stdout and stderr.
func (a *Agent) Output() string { return a.stdout.String() + a.stderr.String() }

// Metrics is a scrape of the agent's metrics endpoint.
func (a *Agent) Metrics(tb testing.TB) string {
	tb.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Span is one JSON line of the stdout exporter.
type Span struct {
	Name       string         `json:"name"`
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	Parent     string         `json:"parent_span_id"`
	Kind       string         `json:"kind"`
	Start      int64          `json:"start_time_unix_nano"`
	End        int64          `json:"end_time_unix_nano"`
	Status     string         `json:"status_code"`
	Attributes map[string]any `json:"attributes"`
	Resource   map[string]any `json:"resource"`
}

// Attr is an attribute as text ("" when absent).
func (s Span) Attr(k string) string {
	switch v := s.Attributes[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Spans parses the complete lines printed so far.
func (a *Agent) Spans(tb testing.TB) []Span {
	tb.Helper()
	out := a.stdout.String()
	out = out[:strings.LastIndexByte(out, '\n')+1]
	var spans []Span
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s Span
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			tb.Fatalf("agent stdout line is not a span: %v: %q", err, testutil.Tail(sc.Text(), 300))
		}
		spans = append(spans, s)
	}
	return spans
}

// WaitWatching waits until the agent logged that it watches each of pids.
func (a *Agent) WaitWatching(tb testing.TB, pids []int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := a.stderr.String()
		watching := map[string]bool{}
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, `msg="watching process"`) {
				for _, f := range strings.Fields(l) {
					if v, ok := strings.CutPrefix(f, "pid="); ok {
						watching[v] = true
					}
				}
			}
		}
		missing := 0
		for _, pid := range pids {
			if !watching[strconv.Itoa(pid)] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent watches %d of %d processes %v:\n%s", len(pids)-missing, len(pids), pids, testutil.Tail(log, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Children are the child processes of pid (an nginx master's workers).
func Children(tb testing.TB, pid int) []int {
	tb.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
