// Package agent is the agent's smoke test for guests that have only
// static Go binaries (the arm64 initramfs of test/kernels): the agent
// watches the Go login server and a right and a wrong form login from
// two loopback addresses become the right auth.login spans. On hosts with
// python3 and curl, test/e2e covers this and much more.
package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries are the prebuilt agent and Go server, from
// AUTHPROBE_PREBUILT_DIR (the harness sets it).
func binaries(tb testing.TB) (agent, server string) {
	tb.Helper()
	if os.Getenv("AUTHPROBE_GUEST") == "" && os.Getenv("AUTHPROBE_SMOKE") == "" {
		tb.Skip("runs in the kernel-matrix guests (make test-kernels); AUTHPROBE_SMOKE=1 with AUTHPROBE_PREBUILT_DIR runs it here")
	}
	if os.Geteuid() != 0 {
		tb.Skip("needs root: the agent loads eBPF programs")
	}
	dir := os.Getenv("AUTHPROBE_PREBUILT_DIR")
	if dir == "" {
		tb.Fatal("AUTHPROBE_PREBUILT_DIR not set: where are authprobe and goserver?")
	}
	return filepath.Join(dir, "authprobe"), filepath.Join(dir, "goserver")
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustStart(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// mustStartServer starts the Go login server and returns its pid and
// address.
func mustStartServer(tb testing.TB, bin string) (int, string) {
	tb.Helper()
	cmd := exec.Command(bin, "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	mustStart(tb, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		tb.Fatalf("goserver stdout: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "listening ")))
	if err != nil {
		tb.Fatalf("goserver said %q, want \"listening PORT\"", line)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd.Process.Pid, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// span is what this test reads of an exported span.
type span struct {
	Name  string         `json:"name"`
	Attrs map[string]any `json:"attributes"`
}

func (s span) attr(k string) string { return fmt.Sprint(s.Attrs[k]) }

// TestLoginSpans: a right and a wrong form login to the Go server, from
// 127.0.0.2 and 127.0.0.3, become one auth.login span each with the
// server's status, the result, the username and the client address.
func TestLoginSpans(t *testing.T) {
	agentBin, serverBin := binaries(t)
	pid, addr := mustStartServer(t, serverBin)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "authprobe.yaml")
	metrics := "127.0.0.1:19464"
	conf := "routes:\n  - {name: auth.login, kind: login, method: POST, path: /login}\n" +
		"security: {username: {privacy: plain}}\nexporter: {kind: stdout}\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	agent := exec.Command(agentBin, "run", "--config", cfg, "--pid", strconv.Itoa(pid), "--metrics-addr", metrics)
	agent.Stdout, agent.Stderr = stdout, stderr
	mustStart(t, agent)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	mustBeReady(t, metrics, stderr)

	cases := []struct {
		src, password string
		status        int
		result        string
	}{
		{"127.0.0.2", "correct-horse", 200, "success"},
		{"127.0.0.3", "wrong", 401, "failure"},
	}
	for _, c := range cases {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}}).DialContext,
		}}
		resp, err := client.PostForm("http://"+addr+"/login", url.Values{"username": {"alice"}, "password": {c.password}})
		if err != nil {
			t.Fatalf("POST /login from %s: %v", c.src, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		client.CloseIdleConnections()
		if resp.StatusCode != c.status {
			t.Fatalf("POST /login from %s: %d, want %d", c.src, resp.StatusCode, c.status)
		}
	}

	spans := waitSpans(t, stdout, len(cases), 30*time.Second)
	bySrc := map[string]span{}
	for _, sp := range spans {
		bySrc[sp.attr("client.address")] = sp
	}
	for _, c := range cases {
		sp, ok := bySrc[c.src]
		if !ok {
			t.Errorf("no span from %s; spans: %+v", c.src, spans)
			continue
		}
		for k, want := range map[string]string{
			"http.response.status_code": strconv.Itoa(c.status),
			"auth.result":               c.result,
			"auth.username":             "alice",
			"http.request.method":       "POST",
			"url.path":                  "/login",
		} {
			if got := sp.attr(k); got != want {
				t.Errorf("span from %s: %s = %q, want %q", c.src, k, got, want)
			}
		}
	}
}

func mustBeReady(tb testing.TB, metrics string, stderr *syncBuffer) {
	tb.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second) // loading under emulation is slow
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + metrics + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("agent not ready within 90s; stderr:\n%s", stderr.String())
}

// waitSpans waits until the agent printed n auth.login spans.
func waitSpans(tb testing.TB, stdout *syncBuffer, n int, timeout time.Duration) []span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var spans []span
		for _, line := range strings.Split(stdout.String(), "\n") {
			var sp span
			if json.Unmarshal([]byte(line), &sp) == nil && sp.Name == "auth.login" {
				spans = append(spans, sp)
			}
		}
		if len(spans) >= n || time.Now().After(deadline) {
			if len(spans) != n {
				tb.Fatalf("%d auth.login spans within %v, want %d:\n%s", len(spans), timeout, n, stdout.String())
			}
			return spans
		}
		time.Sleep(200 * time.Millisecond)
	}
}
