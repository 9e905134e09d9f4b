package pipeline

// Helpers for the tests that put the real agent in front of the pipeline:
// building it, starting a login server for it to watch, running it, and
// clients bound to chosen loopback sources. Small copies of test/e2e's
// harness (a _test package, so not importable).

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
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

	"gopkg.in/yaml.v3"

	"github.com/authprobe/authprobe/test/testutil"
)

// mustBuildAgent builds ./cmd/authprobe into a temp dir (the Go build
// cache makes repeats cheap) and returns the binary.
func mustBuildAgent(tb testing.TB) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "authprobe")
	if err := testutil.GoBuild(out, "./cmd/authprobe"); err != nil {
		tb.Fatal(err)
	}
	return out
}

// loginServer is a running test/servers/python login service.
type loginServer struct {
	PID  int
	Addr string // 127.0.0.1:port
}

// mustStartLoginServer starts test/servers/python/login_server.py on a
// free loopback port as uid (0: the test's own user) with extra
// environment (SLOW_MS=...), waits until it listens, and kills its process
// group at cleanup.
func mustStartLoginServer(tb testing.TB, uid int, env ...string) *loginServer {
	tb.Helper()
	py, err := exec.LookPath("python3")
	if uid != 0 {
		// Another user cannot reach an interpreter under /root (pyenv).
		py, err = "/usr/bin/python3", nil
		if _, serr := os.Stat(py); serr != nil {
			err = serr
		}
	}
	if err != nil {
		tb.Skipf("python3 not installed: %v", err)
	}
	cmd := exec.Command(py, "login_server.py", "0")
	cmd.Dir = filepath.Join(testutil.RepoRoot(tb), "test", "servers", "python")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start login server: %v", err)
	}
	srv := &loginServer{PID: cmd.Process.Pid}
	exited := make(chan struct{})
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
					select {
					case port <- n:
					default:
					}
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = syscall.Kill(-srv.PID, syscall.SIGKILL)
		<-exited
		if tb.Failed() && stderr.String() != "" {
			tb.Logf("login server stderr:\n%s", testutil.Tail(stderr.String(), 4000))
		}
	})
	select {
	case p := <-port:
		srv.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	case <-exited:
		tb.Fatalf("login server exited before listening:\n%s", stderr)
	case <-time.After(30 * time.Second):
		tb.Fatalf("login server did not listen within 30s:\n%s", stderr)
	}
	return srv
}

// agentRoutes are the auth routes of the test servers, as deploy/authprobe.yaml
// names them.
var agentRoutes = []map[string]string{
	{"name": "auth.login", "kind": "login", "method": "POST", "path": "/login"},
	{"name": "auth.authorize", "kind": "authorize", "path": "/api/**"},
	{"name": "auth.token", "kind": "token", "method": "POST", "path": "/oauth/token"},
	{"name": "auth.logout", "kind": "logout", "method": "POST", "path": "/logout"},
}

// mustWriteAgentConfig writes an agent config that watches only what
// --pid names, with hashed usernames under a fixed test key.
func mustWriteAgentConfig(tb testing.TB, serviceName string) string {
	tb.Helper()
	cfg := map[string]any{
		"service_name": serviceName,
		"routes":       agentRoutes,
		"security": map[string]any{
			"username":        map[string]any{"privacy": "hash", "key_env": "AUTHPROBE_TEST_USERNAME_KEY"},
			"session_cookies": []string{"session"},
		},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "authprobe.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// agentProc is a running `authprobe run`.
type agentProc struct {
	MetricsAddr string
	PID         int
	stdout      *testutil.SyncBuffer
	stderr      *testutil.SyncBuffer
	exited      chan struct{}
	err         error
}

// agentKeyEnv is the username HMAC key the test agents use (any 16+ bytes).
const agentKeyEnv = "AUTHPROBE_TEST_USERNAME_KEY=live-test-username-key-0123456789"

// startAgent runs `prefix... agent run --config cfg args...` and returns at
// once; cleanup stops it (SIGTERM, then SIGKILL). prefix is a wrapper such
// as setpriv, or nothing.
func startAgent(tb testing.TB, prefix []string, bin, cfg string, args ...string) *agentProc {
	tb.Helper()
	a := &agentProc{
		MetricsAddr: mustFreeAddr(tb),
		stdout:      &testutil.SyncBuffer{},
		stderr:      &testutil.SyncBuffer{},
		exited:      make(chan struct{}),
	}
	argv := append(append([]string{}, prefix...), bin, "run", "--config", cfg, "--metrics-addr", a.MetricsAddr)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), agentKeyEnv)
	cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start agent: %v", err)
	}
	a.PID = cmd.Process.Pid
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-a.exited
		}
		if tb.Failed() {
			tb.Logf("agent stderr:\n%s", testutil.Tail(a.stderr.String(), 6000))
		}
	})
	return a
}

// waitReady waits for /readyz to answer 200; it returns an error when the
// agent exits first or the timeout passes.
func (a *agentProc) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited before ready: %v", a.err)
		default:
		}
		resp, err := client.Get("http://" + a.MetricsAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not ready within %v (last: %v)", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustStartAgent starts the agent and waits until it is attached.
func mustStartAgent(tb testing.TB, prefix []string, bin, cfg string, args ...string) *agentProc {
	tb.Helper()
	a := startAgent(tb, prefix, bin, cfg, args...)
	if err := a.waitReady(30 * time.Second); err != nil {
		tb.Fatalf("%v; stderr:\n%s", err, testutil.Tail(a.stderr.String(), 6000))
	}
	return a
}

// source is an HTTP client whose connections leave from one loopback
// address, so the agent sees it as a distinct client.
type source struct {
	ip     string
	client *http.Client
}

func newSource(ip string) *source {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &source{ip: ip, client: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: 4,
		},
	}}
}

// do sends one request with a fresh traceparent and returns the status and
// the trace id the agent's span will carry.
func (s *source) do(method, url, body, contentType, bearer string) (status int, traceID string, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	traceID, parent := randomHex(16), randomHex(8)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, traceID, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, traceID, nil
}

// login posts a JSON login and also returns the token of a success.
func (s *source) login(base, user, password string) (status int, traceID, token string, err error) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	req, _ := http.NewRequest(http.MethodPost, base+"/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	traceID = randomHex(16)
	req.Header.Set("traceparent", "00-"+traceID+"-"+randomHex(8)+"-01")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, traceID, "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, traceID, out.Token, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
