// Package agent is the agent's smoke test for guests that have only
// static Go binaries (the arm64 initramfs of test/kernels): the agent
// watches the Go login server and a right and a wrong form login from
// two loopback addresses become the right auth.login spans, in plaintext
// and over Go's crypto/tls with HTTP/1.1 and HTTP/2. On hosts with
// python3 and curl, test/e2e covers this and much more.
package agent

import (
	"bufio"
	"crypto/tls"
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

	"github.com/authprobe/authprobe/test/testutil"
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

// mustStartServer starts the Go login server with env and returns its
// pid and address.
func mustStartServer(tb testing.TB, bin string, env ...string) (int, string) {
	tb.Helper()
	cmd := exec.Command(bin, "0")
	cmd.Env = append(os.Environ(), env...)
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

// loginCase is one form login and the span it must give.
type loginCase struct {
	src, password string
	status        int
	result        string
}

// TestLoginSpans: a right and a wrong plaintext form login to the Go
// server, from 127.0.0.2 and 127.0.0.3, become one auth.login span each
// with the server's status, the result, the username and the client
// address.
func TestLoginSpans(t *testing.T) {
	agentBin, serverBin := binaries(t)
	pid, addr := mustStartServer(t, serverBin)
	stdout, _ := mustStartAgent(t, agentBin, pid)
	cases := []loginCase{
		{"127.0.0.2", "correct-horse", 200, "success"},
		{"127.0.0.3", "wrong", 401, "failure"},
	}
	for _, c := range cases {
		postLogin(t, &http.Transport{}, "http://"+addr, c, 1)
	}
	checkSpans(t, waitSpans(t, stdout, len(cases), 30*time.Second), cases, map[string]string{"url.scheme": "", "tls.established": ""})
}

// TestTLSLoginSpans: the same logins to the Go server over crypto/tls,
// read by the agent's Go uprobes (arm64 register ABI, RET instructions
// found by arm64 disassembly): over HTTP/1.1 from 127.0.0.4 and .5, and
// over HTTP/2 (ALPN) from 127.0.0.6 and .7.
func TestTLSLoginSpans(t *testing.T) {
	agentBin, serverBin := binaries(t)
	cert, key := testutil.SelfSignedCert(t)
	pid, addr := mustStartServer(t, serverBin, "TLS_CERT="+cert, "TLS_KEY="+key)
	stdout, stderr := mustStartAgent(t, agentBin, pid)
	waitLog(t, stderr, "TLS probes attached", 90*time.Second)
	if !strings.Contains(stderr.String(), "Go crypto/tls") {
		t.Errorf("agent did not say it probes Go crypto/tls:\n%s", stderr.String())
	}
	for _, proto := range []struct {
		version string // network.protocol.version: set when not 1.1
		cases   []loginCase
	}{
		{"", []loginCase{{"127.0.0.4", "correct-horse", 200, "success"}, {"127.0.0.5", "wrong", 401, "failure"}}},
		{"2", []loginCase{{"127.0.0.6", "correct-horse", 200, "success"}, {"127.0.0.7", "wrong", 401, "failure"}}},
	} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test's own certificate
		if proto.version == "2" {
			tr.ForceAttemptHTTP2 = true
		} else {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
		}
		before := len(readSpans(stdout))
		for _, c := range proto.cases {
			postLogin(t, tr, "https://"+addr, c, map[string]int{"": 1, "2": 2}[proto.version])
		}
		spans := waitSpans(t, stdout, before+len(proto.cases), 30*time.Second)[before:]
		checkSpans(t, spans, proto.cases, map[string]string{"url.scheme": "https", "tls.established": "true", "network.protocol.version": proto.version})
	}
	if strings.Contains(stdout.String(), "correct-horse") || strings.Contains(stderr.String(), "correct-horse") {
		t.Error("a password reached the agent's output")
	}
}

// mustStartAgent runs the agent on pid with stdout spans and plain
// usernames, and waits until it is ready.
func mustStartAgent(tb testing.TB, agentBin string, pid int) (stdout, stderr *syncBuffer) {
	tb.Helper()
	cfg := filepath.Join(tb.TempDir(), "authprobe.yaml")
	metrics := "127.0.0.1:19464"
	conf := "routes:\n  - {name: auth.login, kind: login, method: POST, path: /login}\n" +
		"security: {username: {privacy: plain}}\nexporter: {kind: stdout}\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	agent := exec.Command(agentBin, "run", "--config", cfg, "--pid", strconv.Itoa(pid), "--metrics-addr", metrics)
	agent.Stdout, agent.Stderr = stdout, stderr
	mustStart(tb, agent)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("agent stderr:\n%s", stderr.String())
		}
	})
	mustBeReady(tb, metrics, stderr)
	return stdout, stderr
}

// postLogin sends c's form login from c.src through tr and checks the
// status and the HTTP version it was answered with.
func postLogin(tb testing.TB, tr *http.Transport, base string, c loginCase, major int) {
	tb.Helper()
	tr.Proxy = nil
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}}).DialContext
	client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	defer client.CloseIdleConnections()
	resp, err := client.PostForm(base+"/login", url.Values{"username": {"alice"}, "password": {c.password}})
	if err != nil {
		tb.Fatalf("POST %s/login from %s: %v", base, c.src, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != c.status || resp.ProtoMajor != major {
		tb.Fatalf("POST %s/login from %s: %d over HTTP/%d, want %d over HTTP/%d", base, c.src, resp.StatusCode, resp.ProtoMajor, c.status, major)
	}
}

// checkSpans: one span per case, found by client address, with the
// case's status, result and username, and the attributes of extra (""
// for an attribute that must be absent).
func checkSpans(tb testing.TB, spans []span, cases []loginCase, extra map[string]string) {
	tb.Helper()
	bySrc := map[string]span{}
	for _, sp := range spans {
		bySrc[sp.attr("client.address")] = sp
	}
	for _, c := range cases {
		sp, ok := bySrc[c.src]
		if !ok {
			tb.Errorf("no span from %s; spans: %+v", c.src, spans)
			continue
		}
		want := map[string]string{
			"http.response.status_code": strconv.Itoa(c.status),
			"auth.result":               c.result,
			"auth.username":             "alice",
			"http.request.method":       "POST",
			"url.path":                  "/login",
		}
		for k, v := range extra {
			want[k] = v
		}
		for k, v := range want {
			if _, set := sp.Attrs[k]; v == "" && set {
				tb.Errorf("span from %s: %s = %q, want it absent", c.src, k, sp.attr(k))
			} else if got := sp.attr(k); v != "" && got != v {
				tb.Errorf("span from %s: %s = %q, want %q", c.src, k, got, v)
			}
		}
	}
}

// waitLog waits until the agent's stderr has line.
func waitLog(tb testing.TB, stderr *syncBuffer, line string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(stderr.String(), line) {
		if time.Now().After(deadline) {
			tb.Fatalf("agent did not log %q within %v:\n%s", line, timeout, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
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

// readSpans parses the auth.login spans the agent printed so far.
func readSpans(stdout *syncBuffer) []span {
	var spans []span
	for _, line := range strings.Split(stdout.String(), "\n") {
		var sp span
		if json.Unmarshal([]byte(line), &sp) == nil && sp.Name == "auth.login" {
			spans = append(spans, sp)
		}
	}
	return spans
}

// waitSpans waits until the agent printed n auth.login spans.
func waitSpans(tb testing.TB, stdout *syncBuffer, n int, timeout time.Duration) []span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := readSpans(stdout)
		if len(spans) >= n || time.Now().After(deadline) {
			if len(spans) != n {
				tb.Fatalf("%d auth.login spans within %v, want %d:\n%s", len(spans), timeout, n, stdout.String())
			}
			return spans
		}
		time.Sleep(200 * time.Millisecond)
	}
}
