package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/test/testutil"
)

// Timeouts for processes the harness starts.
const (
	serverStartTimeout = 60 * time.Second // java compiles its source first, slowly on a busy machine
	agentReadyTimeout  = 30 * time.Second
	agentStopTimeout   = 20 * time.Second
)

// A build made at most once per test binary, into the TestMain temp dir.
type build struct {
	once sync.Once
	path string
	err  error
}

// Test-binary state: builds are shared by every test, made on first use so
// that tests which do not need the agent run while it does not compile.
var (
	buildDir      string
	agentBuild    build
	goServerBuild build
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authprobe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make build dir:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func mustGoBuild(tb testing.TB, b *build, pkg, name string) string {
	tb.Helper()
	b.once.Do(func() {
		out := filepath.Join(buildDir, name)
		if b.err = testutil.GoBuild(out, pkg); b.err == nil {
			b.path = out
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// agentEnv names a prebuilt agent binary the tests run instead of
// building ./cmd/authprobe: to run this tree's tests against another
// agent (an older or a newer one) while the tree is mid-change.
const agentEnv = "AUTHPROBE_E2E_AGENT"

// mustBuildAgent builds ./cmd/authprobe once per test binary (or takes
// $AUTHPROBE_E2E_AGENT) and returns the binary's path.
func mustBuildAgent(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv(agentEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			tb.Fatalf("%s: %v", agentEnv, err)
		}
		return bin
	}
	return mustGoBuild(tb, &agentBuild, "./cmd/authprobe", "authprobe")
}

// ---- servers ----

// Server is a running login service from test/servers.
type Server struct {
	Lang   string
	PID    int
	Port   int
	Addr   string // 127.0.0.1:port
	stderr *testutil.SyncBuffer
}

// URL is the server's address followed by path.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// Stderr is what the server wrote to stderr so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// serverLangs are the servers of test/servers that answer every route of
// its README ("express" serves the login routes only).
var serverLangs = []string{"python", "node", "go", "java"}

func serverCommand(tb testing.TB, lang string) *exec.Cmd {
	tb.Helper()
	dir := filepath.Join(testutil.RepoRoot(tb), "test", "servers")
	need := func(bin string) string {
		path, err := exec.LookPath(bin)
		if err != nil {
			tb.Skipf("%s server: %s not installed", lang, bin)
		}
		return path
	}
	var cmd *exec.Cmd
	switch lang {
	case "python":
		cmd = exec.Command(need("python3"), "login_server.py", "0")
		cmd.Dir = filepath.Join(dir, "python")
	case "node":
		cmd = exec.Command(need("node"), "login_server.js", "0")
		cmd.Dir = filepath.Join(dir, "node")
	case "go":
		cmd = exec.Command(mustGoBuild(tb, &goServerBuild, "./test/servers/goserver", "goserver"), "0")
	case "express":
		cmd = exec.Command(need("node"), "server.js", "0")
		cmd.Dir = filepath.Join(dir, "express")
		cmd.Env = append(os.Environ(), "NODE_PATH="+mustExpressModules(tb))
	case "java":
		// Single-file source launch: one JVM process, whose PID is the
		// server's.
		// A crash report goes where it can be written (the guests of the
		// kernel matrix see the repository read-only).
		cmd = exec.Command(need("java"), "-XX:ErrorFile="+filepath.Join(os.TempDir(), "hs_err_pid%p.log"), "LoginServer.java", "0")
		cmd.Dir = filepath.Join(dir, "java")
	default:
		tb.Fatalf("unknown server language %q", lang)
	}
	return cmd
}

// mustStartServer starts the lang login service on a free port of
// 127.0.0.1, waits until it listens, and kills its process group in
// Cleanup.
func mustStartServer(tb testing.TB, lang string) *Server {
	tb.Helper()
	return mustStartServerEnv(tb, lang, nil)
}

// mustStartServerEnv is mustStartServer with more environment variables
// (TLS_CERT and TLS_KEY make a server serve HTTPS).
func mustStartServerEnv(tb testing.TB, lang string, env []string) *Server {
	tb.Helper()
	srv, err := startServerEnv(tb, lang, env)
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}

// mustStartServerBeforeAgent is mustStartServer for a server started
// before any agent runs: if it dies before listening, which no probe can
// have caused (under emulation a JVM has aborted so, once in a few
// starts), that is logged and it is started once more.
func mustStartServerBeforeAgent(tb testing.TB, lang string) *Server {
	tb.Helper()
	srv, err := startServerEnv(tb, lang, nil)
	if err == nil {
		return srv
	}
	tb.Logf("%v (no agent running yet); starting it once more", err)
	return mustStartServer(tb, lang)
}

// startServerEnv starts the server; the error is its exit before it
// listened. Anything else that goes wrong fails tb.
func startServerEnv(tb testing.TB, lang string, env []string) (*Server, error) {
	tb.Helper()
	cmd := serverCommand(tb, lang)
	if env != nil {
		cmd.Env = append(append(os.Environ(), cmd.Env...), env...)
	}
	// Own process group, so Cleanup reaches anything the server spawned;
	// killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("%s server stdout: %v", lang, err)
	}
	srv := &Server{Lang: lang, stderr: &testutil.SyncBuffer{}}
	cmd.Stderr = srv.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s server: %v", lang, err)
	}
	srv.PID = cmd.Process.Pid
	exited := make(chan struct{})
	// What the server printed besides "listening": a JVM prints the
	// summary of a fatal error on stdout.
	others := &testutil.SyncBuffer{}
	tb.Cleanup(func() {
		// A server gone before the end of its test died on its own.
		var died bool
		select {
		case <-exited:
			died = true
		default:
		}
		_ = syscall.Kill(-srv.PID, syscall.SIGKILL)
		<-exited
		if tb.Failed() {
			if died {
				tb.Logf("%s server (pid %d) had exited on its own: %v%s", lang, srv.PID, cmd.ProcessState, crashReport(lang, srv.PID))
			}
			if s := others.String(); s != "" {
				tb.Logf("%s server stdout:\n%s", lang, testutil.Tail(s, 4000))
			}
			if s := srv.Stderr(); s != "" {
				tb.Logf("%s server stderr:\n%s", lang, testutil.Tail(s, 4000))
			}
		}
	})

	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p, ok := strings.CutPrefix(sc.Text(), "listening ")
			if !ok {
				_, _ = others.Write([]byte(sc.Text() + "\n"))
				continue
			}
			if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil {
				select {
				case port <- n:
				default:
				}
			}
		}
		_ = cmd.Wait() // after stdout reached EOF, as os/exec requires
		close(exited)
	}()

	select {
	case srv.Port = <-port:
	case <-exited:
		return nil, fmt.Errorf("%s server exited before listening: %v\n%s%s", lang, cmd.ProcessState, srv.Stderr(), crashReport(lang, srv.PID))
	case <-time.After(testutil.Patience(serverStartTimeout)):
		tb.Fatalf("%s server did not print \"listening\" within %v\n%s", lang, testutil.Patience(serverStartTimeout), srv.Stderr())
	}
	srv.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))
	return srv, nil
}

// crashReport is the head of a JVM's crash report for pid, if it wrote
// one.
func crashReport(lang string, pid int) string {
	if lang != "java" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(os.TempDir(), fmt.Sprintf("hs_err_pid%d.log", pid)))
	if err != nil {
		return ""
	}
	return "\nJVM crash report (head):\n" + string(b[:min(len(b), 3000)])
}

// ---- agent ----

// AgentOptions configure one `authprobe run`.
type AgentOptions struct {
	// PIDs are passed as --pid flags.
	PIDs []int
	// Routes replace DefaultRoutes when non-nil.
	Routes []config.Route
	// Security replaces the default security section (usernames in plain
	// text, "session" as the session cookie) when non-nil; YAML keys.
	Security map[string]any
	// Extra top-level config keys (YAML keys), set last.
	Extra map[string]any
	// Args are more `authprobe run` flags; Env more environment variables.
	Args []string
	Env  []string
}

// DefaultRoutes are the auth routes of every test server.
func DefaultRoutes() []config.Route {
	return []config.Route{
		{Name: "auth.login", Kind: config.KindLogin, Method: http.MethodPost, Path: "/login"},
		{Name: "auth.authorize", Kind: config.KindAuthorize, Path: "/api/**"},
		{Name: "auth.token", Kind: config.KindToken, Method: http.MethodPost, Path: "/oauth/token"},
		{Name: "auth.logout", Kind: config.KindLogout, Method: http.MethodPost, Path: "/logout"},
		{Name: "auth.basic", Kind: config.KindAuthorize, Method: http.MethodGet, Path: "/basic"},
	}
}

// routeYAML keeps the written config to the keys a route sets.
func routeYAML(r config.Route) map[string]any {
	m := map[string]any{"name": r.Name, "kind": r.Kind, "path": r.Path}
	if r.Method != "" {
		m["method"] = r.Method
	}
	if len(r.Results) > 0 {
		m["results"] = r.Results
	}
	if len(r.FailureMatchers) > 0 {
		var ms []map[string]string
		for _, fm := range r.FailureMatchers {
			x := map[string]string{}
			for k, v := range map[string]string{
				"json_field": fm.JSONField, "equals": fm.Equals, "contains": fm.Contains,
				"reason": fm.Reason, "result": fm.Result,
			} {
				if v != "" {
					x[k] = v
				}
			}
			ms = append(ms, x)
		}
		m["failure_matchers"] = ms
	}
	return m
}

// Agent is a running `authprobe run`.
type Agent struct {
	MetricsAddr string
	ConfigPath  string

	cmd     *exec.Cmd
	stdout  *testutil.SyncBuffer
	stderr  *testutil.SyncBuffer
	exited  chan struct{}
	waitErr error
	stopped bool
	// lastCounters are the non-zero metric lines scraped just before Stop.
	lastCounters string
}

// freePort asks the kernel for a port on 127.0.0.1 that is free now.
func freePort(tb testing.TB) int {
	tb.Helper()
	return testutil.FreePort(tb)
}

// mustStartAgent writes a config for opts, runs the agent on it with the
// stdout exporter, and waits until /readyz answers 200. Cleanup stops it
// with SIGTERM (SIGKILL if it hangs).
func mustStartAgent(tb testing.TB, opts AgentOptions) *Agent {
	tb.Helper()
	testutil.MustRoot(tb)
	bin := mustBuildAgent(tb)

	a := &Agent{
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(tb))),
		ConfigPath:  filepath.Join(tb.TempDir(), "authprobe.yaml"),
		stdout:      &testutil.SyncBuffer{},
		stderr:      &testutil.SyncBuffer{},
		exited:      make(chan struct{}),
	}
	routes := opts.Routes
	if routes == nil {
		routes = DefaultRoutes()
	}
	var ry []map[string]any
	for _, r := range routes {
		ry = append(ry, routeYAML(r))
	}
	security := opts.Security
	if security == nil {
		security = map[string]any{
			"username":        map[string]any{"privacy": config.PrivacyPlain},
			"session_cookies": []string{"session"},
		}
	}
	cfg := map[string]any{
		"routes":   ry,
		"security": security,
		"exporter": map[string]any{"kind": config.ExporterStdout},
		"metrics":  map[string]any{"addr": a.MetricsAddr},
	}
	for k, v := range opts.Extra {
		cfg[k] = v
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		tb.Fatalf("marshal agent config: %v", err)
	}
	if err := os.WriteFile(a.ConfigPath, data, 0o600); err != nil {
		tb.Fatalf("write agent config: %v", err)
	}

	args := []string{"run", "--config", a.ConfigPath, "--exporter", config.ExporterStdout, "--metrics-addr", a.MetricsAddr}
	for _, pid := range opts.PIDs {
		args = append(args, "--pid", strconv.Itoa(pid))
	}
	args = append(args, opts.Args...)
	args = append(args, testutil.AgentArgs()...)
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(os.Environ(), opts.Env...)
	a.cmd.Stdout = a.stdout
	a.cmd.Stderr = a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		tb.Fatalf("start agent: %v", err)
	}
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()
	tb.Cleanup(func() {
		if !a.stopped {
			if tb.Failed() {
				a.lastCounters = a.nonZeroCounters()
			}
			a.terminate()
		}
		if tb.Failed() {
			tb.Logf("agent config:\n%s", data)
			tb.Logf("agent stderr:\n%s", testutil.Tail(a.Stderr(), 8000))
			if a.lastCounters != "" {
				tb.Logf("agent counters at its stop (non-zero):\n%s", a.lastCounters)
			}
		}
	})

	a.mustBeReady(tb)
	return a
}

func (a *Agent) mustBeReady(tb testing.TB) {
	tb.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(testutil.Patience(agentReadyTimeout))
	for {
		select {
		case <-a.exited:
			tb.Fatalf("agent exited before ready (%v); stderr:\n%s", a.waitErr, testutil.Tail(a.Stderr(), 8000))
		default:
		}
		resp, err := client.Get("http://" + a.MetricsAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("agent not ready within %v (last: %v); stderr:\n%s", testutil.Patience(agentReadyTimeout), err, testutil.Tail(a.Stderr(), 8000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// terminate sends SIGTERM and waits, escalating to SIGKILL; it reports
// whether the agent exited on SIGTERM in time.
func (a *Agent) terminate() bool {
	a.stopped = true
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
		return true
	case <-time.After(testutil.Patience(agentStopTimeout)):
		_ = a.cmd.Process.Kill()
		<-a.exited
		return false
	}
}

// Stop sends SIGTERM, waits, and asserts a clean exit (status 0). Spans
// flushed on the way out are then in Spans.
func (a *Agent) Stop(tb testing.TB) {
	tb.Helper()
	if a.stopped {
		return
	}
	select {
	case <-a.exited:
		a.stopped = true
		tb.Fatalf("agent had exited before Stop: %v; stderr:\n%s", a.waitErr, testutil.Tail(a.Stderr(), 8000))
	default:
	}
	a.lastCounters = a.nonZeroCounters()
	if !a.terminate() {
		tb.Fatalf("agent did not exit within %v of SIGTERM; stderr:\n%s", testutil.Patience(agentStopTimeout), testutil.Tail(a.Stderr(), 8000))
	}
	if a.waitErr != nil {
		tb.Fatalf("agent exit after SIGTERM: %v; stderr:\n%s", a.waitErr, testutil.Tail(a.Stderr(), 8000))
	}
}

// nonZeroCounters are the agent's metric lines with a value other than 0
// (no histogram buckets), best effort: what a failed test's log shows of
// the agent's drops and decoder counts.
func (a *Agent) nonZeroCounters() string {
	body, err := a.scrape()
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "authprobe_") || strings.Contains(line, "_bucket{") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 && f[len(f)-1] != "0" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Stdout and Stderr are what the agent wrote so far.
func (a *Agent) Stdout() string { return a.stdout.String() }
func (a *Agent) Stderr() string { return a.stderr.String() }

// Metrics scrapes /metrics (the agent must be running).
func (a *Agent) Metrics(tb testing.TB) string {
	tb.Helper()
	body, err := a.scrape()
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// scrape reads /metrics once.
func (a *Agent) scrape() (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		return "", fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics: status %d: %s", resp.StatusCode, testutil.Tail(string(body), 2000))
	}
	return string(body), nil
}

// Spans parses the complete lines the agent printed so far. Every stdout
// line must be one span object: anything else fails the test.
func (a *Agent) Spans(tb testing.TB) []Span {
	tb.Helper()
	spans, err := parseSpans(a.Stdout())
	if err != nil {
		tb.Fatalf("agent stdout: %v", err)
	}
	return spans
}

func parseSpans(out string) ([]Span, error) {
	// A last line without its newline is still being written.
	end := strings.LastIndexByte(out, '\n')
	if end < 0 {
		return nil, nil
	}
	var spans []Span
	for n, line := range strings.Split(out[:end], "\n") {
		sp, err := parseSpan(line)
		if err != nil {
			return nil, fmt.Errorf("line %d is not a span (%w): %q", n+1, err, testutil.Tail(line, 300))
		}
		spans = append(spans, sp)
	}
	return spans, nil
}

// WaitForSpans waits until the agent printed at least n spans and returns
// all of them.
func (a *Agent) WaitForSpans(tb testing.TB, n int, timeout time.Duration) []Span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := a.Spans(tb)
		if len(spans) >= n {
			return spans
		}
		select {
		case <-a.exited:
			tb.Fatalf("agent exited (%v) with %d of %d spans; stderr:\n%s", a.waitErr, len(spans), n, testutil.Tail(a.Stderr(), 8000))
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("got %d of %d spans within %v:\n%s", len(spans), n, timeout, describeSpans(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spanSettle is how long ExpectSpans waits for spans beyond the expected
// ones before it counts.
const spanSettle = time.Second

// ExpectSpans waits for n spans, gives stragglers spanSettle to show up,
// and asserts there are exactly n.
func (a *Agent) ExpectSpans(tb testing.TB, n int, timeout time.Duration) []Span {
	tb.Helper()
	a.WaitForSpans(tb, n, timeout)
	time.Sleep(spanSettle)
	spans := a.Spans(tb)
	if len(spans) != n {
		tb.Fatalf("want exactly %d spans, got %d:\n%s", n, len(spans), describeSpans(spans))
	}
	return spans
}

func describeSpans(spans []Span) string {
	var b strings.Builder
	for i, s := range spans {
		fmt.Fprintf(&b, "  [%d] %s\n", i, s)
	}
	return b.String()
}

// ---- spans ----

// Span is one line of the stdout exporter.
type Span struct {
	Name              string         `json:"name"`
	TraceID           string         `json:"trace_id"`
	SpanID            string         `json:"span_id"`
	ParentSpanID      string         `json:"parent_span_id"`
	Kind              flexString     `json:"kind"`
	StartTimeUnixNano flexInt        `json:"start_time_unix_nano"`
	EndTimeUnixNano   flexInt        `json:"end_time_unix_nano"`
	StatusCode        string         `json:"status_code"`
	Attributes        map[string]any `json:"attributes"`
	Resource          map[string]any `json:"resource"`

	// Raw is the line as printed.
	Raw string `json:"-"`
}

func parseSpan(line string) (Span, error) {
	var s Span
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return Span{}, err
	}
	if dec.More() {
		return Span{}, errors.New("more than one JSON value")
	}
	if s.Name == "" {
		return Span{}, errors.New("no name")
	}
	s.Raw = line
	return s, nil
}

// String is a one-line summary for failure messages (attributes are the
// agent's output, secret-free by contract).
func (s Span) String() string {
	return fmt.Sprintf("%s status=%s http=%s result=%s reason=%s client=%s trace=%s parent=%q",
		s.Name, s.StatusCode, s.Attr("http.response.status_code"), s.Attr("auth.result"),
		s.Attr("auth.failure_reason"), s.Attr("client.address"), s.TraceID, s.ParentSpanID)
}

// HasAttr reports whether the span carries the attribute.
func (s Span) HasAttr(name string) bool {
	_, ok := s.Attributes[name]
	return ok
}

// Attr is the attribute's value as text ("" when absent); arrays and
// objects come back as JSON.
func (s Span) Attr(name string) string { return valueText(s.Attributes[name]) }

// IntAttr is an integer attribute (given as a number or numeric string).
func (s Span) IntAttr(name string) (int64, bool) {
	n, err := strconv.ParseInt(s.Attr(name), 10, 64)
	return n, err == nil
}

// ResourceAttr is a resource attribute as text; the resource may be flat
// or hold an "attributes" object.
func (s Span) ResourceAttr(name string) string {
	if v, ok := s.Resource[name]; ok {
		return valueText(v)
	}
	if attrs, ok := s.Resource["attributes"].(map[string]any); ok {
		return valueText(attrs[name])
	}
	return ""
}

// Start and End are the span's times.
func (s Span) Start() time.Time { return time.Unix(0, int64(s.StartTimeUnixNano)) }
func (s Span) End() time.Time   { return time.Unix(0, int64(s.EndTimeUnixNano)) }

func valueText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// flexString takes a JSON string or number (span kinds print either way).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("neither string nor number: %s", b)
	}
	*f = flexString(n)
	return nil
}

// flexInt takes a JSON number or a decimal string (OTLP JSON prints 64-bit
// integers as strings).
type flexInt uint64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an unsigned integer: %s", b)
	}
	*f = flexInt(n)
	return nil
}
