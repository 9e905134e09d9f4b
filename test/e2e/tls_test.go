package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// Source addresses of the TLS tests.
const (
	srcTLSCurl  = "127.0.0.20"
	srcTLSNginx = "127.0.0.21"
)

// curlTLS sends req over HTTPS to addr with curl -k (the test's
// self-signed certificate) from srcIP; more are extra curl flags.
func curlTLS(tb testing.TB, srcIP, addr string, req Request, more ...string) Response {
	tb.Helper()
	args := append([]string{"--insecure", "--request", req.Method}, more...)
	for _, k := range req.headerNames() {
		args = append(args, "--header", k+": "+req.Header[k])
	}
	if req.Body != "" || req.Method == http.MethodPost {
		args = append(args, "--data-binary", req.Body)
	}
	return curl(tb, srcIP, append(args, "https://"+addr+req.Path)...)
}

// tlsLoginCase is one login over HTTPS and the span it must give.
type tlsLoginCase struct {
	req        Request
	user       string
	traced     bool
	wantStatus int
	wantResult string
	wantReason string
}

func tlsLoginCases() []tlsLoginCase {
	return []tlsLoginCase{
		{req: formLogin("alice", "correct-horse"), user: "alice", traced: true, wantStatus: 200, wantResult: "success"},
		{req: jsonLogin("bob", "not-his-password"), user: "bob", wantStatus: 401, wantResult: "failure", wantReason: "invalid_credentials"},
		{req: formLogin("locked-user", "whatever"), user: "locked-user", traced: true, wantStatus: 423, wantResult: "failure", wantReason: "locked"},
	}
}

// runTLSLogins sends the cases to addr over HTTPS and checks the spans
// the agent made of them, one per login, keyed by username; pid is the
// process that must have produced them.
// A proxy (proxied) also makes one CLIENT span per login, its call to the
// backend, child of the login's span.
func runTLSLogins(t *testing.T, ag *Agent, srv *Server, addr, src string, proxied bool, curlArgs ...string) []Span {
	t.Helper()
	cases := tlsLoginCases()
	wants := map[string]spanWant{}
	for _, c := range cases {
		w := spanWant{
			name: "auth.login", method: "POST", path: "/login", status: c.wantStatus,
			result: c.wantResult, reason: c.wantReason, username: c.user, authMethod: "password", client: src,
		}
		req := c.req
		if c.traced {
			tp := newTraceParent(t)
			w.parent = &tp
			req = req.With("traceparent", tp.String())
		}
		mustStatus(t, c.user, curlTLS(t, src, addr, req, curlArgs...), c.wantStatus)
		wants[c.user] = w
	}
	n := len(cases)
	if proxied {
		n *= 2
	}
	all := ag.ExpectSpans(t, n, spanWait)
	var spans []Span
	calls := map[string]Span{} // by parent span id
	for _, sp := range all {
		if strings.Contains(strings.ToLower(string(sp.Kind)), "client") {
			calls[sp.ParentSpanID] = sp
			continue
		}
		spans = append(spans, sp)
	}
	byUser := indexSpans(t, spans, func(sp Span) string { return sp.Attr("auth.username") })
	for user, w := range wants {
		sp, ok := byUser[user]
		if !ok {
			t.Errorf("no span for %s:\n%s", user, describeSpans(spans))
			continue
		}
		checkSpan(t, srv, sp, w)
		if call, ok := calls[sp.SpanID]; proxied && (!ok || call.TraceID != sp.TraceID) {
			t.Errorf("login of %s: no CLIENT span (the call to the backend) under %s:\n%s", user, sp, describeSpans(all))
		}
		if sp.Attr("url.scheme") != "https" || sp.Attr("tls.established") != "true" {
			t.Errorf("span %s: url.scheme %q tls.established %q, want https and true", sp, sp.Attr("url.scheme"), sp.Attr("tls.established"))
		}
		if strings.Contains(strings.Join(curlArgs, " "), "--http1.1") && sp.HasAttr("network.protocol.version") {
			t.Errorf("span %s: network.protocol.version %q over HTTP/1.1 (the default, not set)", sp, sp.Attr("network.protocol.version"))
		}
	}
	return spans
}

// noSecrets fails when any output of the agent holds a password of the
// TLS cases.
func noSecrets(t *testing.T, ag *Agent) {
	t.Helper()
	metrics := ag.Metrics(t)
	for _, secret := range []string{"correct-horse", "not-his-password", "whatever"} {
		for where, out := range map[string]string{"stdout": ag.Stdout(), "stderr": ag.Stderr(), "/metrics": metrics} {
			if strings.Contains(out, secret) {
				t.Errorf("%s holds the password %q", where, secret)
			}
		}
	}
}

// metricValue is the value of one sample line of /metrics, "" if absent.
func metricValue(metrics, sample string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestTLSPython: the Python login server speaking HTTPS through the ssl
// module (the system's shared libssl.so.3). The agent reads the plaintext
// at SSL_read_ex/SSL_write_ex and makes exactly the spans of plaintext
// HTTP; no plaintext I/O goes unattributed.
func TestTLSPython(t *testing.T) {
	testutil.MustRoot(t)
	cert, key := testutil.SelfSignedCert(t)
	srv := mustStartServerEnv(t, "python", []string{"TLS_CERT=" + cert, "TLS_KEY=" + key})
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
	ag.waitTLSAttached(t)
	runTLSLogins(t, ag, srv, srv.Addr, srcTLSCurl, false, "--http1.1")
	m := ag.Metrics(t)
	if v := metricValue(m, `authprobe_drops_total{reason="tls_unattributed"}`); v != "0" {
		t.Errorf("tls_unattributed drops %q, want 0", v)
	}
	noSecrets(t, ag)
}

// TestTLSNginx: nginx terminates TLS in front of the plaintext Python
// login server, and only nginx is watched: the spans come from nginx's
// TLS side (its process, the curl client's address), one per login, with
// nginx's plaintext call to the backend as a CLIENT span under it.
func TestTLSNginx(t *testing.T) {
	testutil.MustRoot(t)
	cert, key := testutil.SelfSignedCert(t)
	backend := mustStartServer(t, "python")
	proxy := mustStartNginxWith(t, nginxOptions{upstream: backend.Addr, cert: cert, key: key})
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{proxy.pid(t)}})
	ag.waitTLSAttached(t)
	nginxSrv := &Server{Lang: "nginx", PID: proxy.workerPID(t), Addr: proxy.Addr}
	runTLSLogins(t, ag, nginxSrv, proxy.Addr, srcTLSNginx, true, "--http1.1")
	noSecrets(t, ag)
}

// waitTLSAttached waits until the agent says it attached TLS probes.
func (a *Agent) waitTLSAttached(tb testing.TB) {
	tb.Helper()
	// Attaching means reading the binary or library and, for Go,
	// disassembling its functions: slow under emulation.
	waitFor(tb, testutil.Patience(spanWait), "TLS probes attached", func() bool {
		return strings.Contains(a.Stderr(), "TLS probes attached")
	})
}

// waitFor polls cond until it holds, failing tb after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSNginxHTTP2: nginx negotiates h2 (ALPN) with curl --http2; the
// HTTP/2 streams are decoded from nginx's TLS plaintext and give the
// same login spans as HTTP/1.1, each stream announced in flight when its
// head is read, so that nginx's HTTP/1.1 call to the backend is a CLIENT
// span under the login it serves.
func TestTLSNginxHTTP2(t *testing.T) {
	testutil.MustRoot(t)
	cert, key := testutil.SelfSignedCert(t)
	backend := mustStartServer(t, "python")
	proxy := mustStartNginxWith(t, nginxOptions{upstream: backend.Addr, cert: cert, key: key, http2: true})
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{proxy.pid(t)}})
	ag.waitTLSAttached(t)
	nginxSrv := &Server{Lang: "nginx", PID: proxy.workerPID(t), Addr: proxy.Addr}
	for _, sp := range runTLSLogins(t, ag, nginxSrv, proxy.Addr, srcTLSNginx, true, "--http2") {
		if sp.Attr("network.protocol.version") != "2" {
			t.Errorf("span %s: network.protocol.version %q, want 2 (h2 negotiated)", sp, sp.Attr("network.protocol.version"))
		}
	}
	noSecrets(t, ag)
}

// goServerVariant builds test/servers/goserver with env and go build
// flags, once per test.
func goServerVariant(tb testing.TB, env []string, flags ...string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "goserver")
	if len(env) == 0 && len(flags) == 0 {
		// The default build: prebuilt in the kernel-matrix guests.
		if err := testutil.GoBuild(out, "./test/servers/goserver"); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "./test/servers/goserver")...)
	cmd.Dir = testutil.RepoRoot(tb)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build goserver %v %v: %v\n%s", env, flags, err, b)
	}
	return out
}

// TestTLSGo: the Go login server over crypto/tls, built with go1.26
// normally and stripped (-s -w: functions from the pclntab, offsets from
// the version table), and with go1.27 stripped: HTTP/1.1 and HTTP/2
// (curl's default with ALPN) logins give exact spans.
func TestTLSGo(t *testing.T) {
	testutil.MustRoot(t)
	for _, v := range []struct {
		name  string
		env   []string
		flags []string
	}{
		{"go1.26", nil, nil},
		{"go1.26 stripped", nil, []string{"-ldflags=-s -w"}},
		{"go1.27.3 stripped", []string{"GOTOOLCHAIN=go1.27.3"}, []string{"-ldflags=-s -w"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			bin := goServerVariant(t, v.env, v.flags...)
			cert, key := testutil.SelfSignedCert(t)
			cmd := exec.Command(bin, "0")
			cmd.Env = append(os.Environ(), "TLS_CERT="+cert, "TLS_KEY="+key)
			srv := mustStartProcess(t, cmd)
			ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
			ag.waitTLSAttached(t)
			if !strings.Contains(ag.Stderr(), "Go crypto/tls "+strings.Fields(v.name)[0]) {
				t.Errorf("agent did not say it probes Go crypto/tls %s:\n%s", v.name, ag.Stderr())
			}
			runTLSLogins(t, ag, srv, srv.Addr, srcTLSCurl, false, "--http1.1")
			ag.Stop(t)
			ag = mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
			ag.waitTLSAttached(t)
			for _, sp := range runTLSLogins(t, ag, srv, srv.Addr, srcTLSCurl, false, "--http2") {
				if sp.Attr("network.protocol.version") != "2" {
					t.Errorf("span %s: network.protocol.version %q, want 2", sp, sp.Attr("network.protocol.version"))
				}
			}
			noSecrets(t, ag)
		})
	}
}

// TestTLSNode: Node's https (OpenSSL linked into the node executable, on
// memory BIOs) gives the same login spans.
func TestTLSNode(t *testing.T) {
	testutil.MustRoot(t)
	cert, key := testutil.SelfSignedCert(t)
	srv := mustStartServerEnv(t, "node", []string{"TLS_CERT=" + cert, "TLS_KEY=" + key})
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
	ag.waitTLSAttached(t)
	runTLSLogins(t, ag, srv, srv.Addr, srcTLSCurl, false, "--http1.1")
	if v := metricValue(ag.Metrics(t), `authprobe_drops_total{reason="tls_unattributed"}`); v != "0" {
		t.Errorf("tls_unattributed drops %q, want 0", v)
	}
	noSecrets(t, ag)
}

// libssl11Dir is where bpf/uprobe/testdata/get-libssl1.1.sh put Debian
// 11's libssl1.1 (.ci/run fetches it into the default); skips without it.
func libssl11Dir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("AUTHPROBE_LIBSSL11_DIR")
	if dir == "" {
		dir = "/var/cache/authprobe/libssl1.1"
	}
	dir = filepath.Join(dir, "root", "usr", "lib", "x86_64-linux-gnu")
	for _, lib := range []string{"libssl.so.1.1", "libcrypto.so.1.1"} {
		if _, err := os.Stat(filepath.Join(dir, lib)); err != nil {
			tb.Skipf("no %s in %s: run bpf/uprobe/testdata/get-libssl1.1.sh (Debian 12 does not ship OpenSSL 1.1; .ci/run fetches it)", lib, dir)
		}
	}
	return dir
}

// TestTLSOpenSSL11: the Python login server serving HTTPS through Debian
// 11's shared libssl.so.1.1 (OpenSSL 1.1.1, by ctypes: SSL_do_handshake,
// SSL_read, SSL_write on the accepted socket; test/servers/python/
// libssl_tls.py), curl (OpenSSL 3) logging in: the probes go on the 1.1
// file and the spans are those of plaintext HTTP.
func TestTLSOpenSSL11(t *testing.T) {
	testutil.MustRoot(t)
	dir := libssl11Dir(t)
	cert, key := testutil.SelfSignedCert(t)
	srv := mustStartServerEnv(t, "python", []string{"TLS_CERT=" + cert, "TLS_KEY=" + key, "TLS_LIBSSL_DIR=" + dir})
	waitFor(t, spanWait, "server says it uses OpenSSL 1.1.1", func() bool { return strings.Contains(srv.Stderr(), "OpenSSL 1.1.1") })
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
	lib := filepath.Join(dir, "libssl.so.1.1")
	waitFor(t, spanWait, "TLS probes attached to "+lib, func() bool {
		for _, line := range strings.Split(ag.Stderr(), "\n") {
			if strings.Contains(line, "TLS probes attached") && strings.Contains(line, lib) {
				return true
			}
		}
		return false
	})
	runTLSLogins(t, ag, srv, srv.Addr, srcTLSCurl, false, "--http1.1")
	m := ag.Metrics(t)
	if v := metricValue(m, `authprobe_drops_total{reason="tls_unattributed"}`); v != "0" {
		t.Errorf("tls_unattributed drops %q, want 0", v)
	}
	noSecrets(t, ag)
}
