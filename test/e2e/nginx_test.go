package e2e

import (
	"fmt"
	"net"
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

const nginxPath = "/usr/sbin/nginx"

// Nginx is a running reverse proxy in front of one test server.
type Nginx struct {
	Addr     string // 127.0.0.1:port
	Master   int    // the master process's pid
	errorLog string
}

// pid is the master's pid: watching it watches its workers too.
func (n *Nginx) pid(tb testing.TB) int {
	tb.Helper()
	return n.Master
}

// workerPID is the pid of the one worker (worker_processes 1).
func (n *Nginx) workerPID(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.Master, n.Master))
	if err != nil {
		tb.Fatalf("nginx worker: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		tb.Fatalf("nginx master %d has children %q, want one worker", n.Master, f)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		tb.Fatal(err)
	}
	return pid
}

// URL is the proxy's address followed by path.
func (n *Nginx) URL(path string) string { return "http://" + n.Addr + path }

// mustStartNginx runs nginx with its own prefix and config in a temp dir,
// listening on a free 127.0.0.1 port and proxying everything to upstream
// (host:port) with X-Forwarded-For appended. Cleanup stops it.
func mustStartNginx(tb testing.TB, upstream string) *Nginx {
	tb.Helper()
	return mustStartNginxWith(tb, nginxOptions{upstream: upstream})
}

// nginxOptions vary the proxy of mustStartNginxWith.
type nginxOptions struct {
	upstream string
	// cert and key (PEM files) make it terminate TLS; http2 offers h2
	// (ALPN) on it.
	cert, key string
	http2     bool
	// locations are more location blocks, before the proxying one.
	locations string
}

// mustStartNginxWith runs nginx as mustStartNginx does, with opts.
func mustStartNginxWith(tb testing.TB, opts nginxOptions) *Nginx {
	tb.Helper()
	upstream := opts.upstream
	if _, err := os.Stat(nginxPath); err != nil {
		tb.Skipf("nginx not installed (Debian package nginx-light): %v", err)
	}
	dir := tb.TempDir()
	for _, sub := range []string{"logs", "client_body", "proxy"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	n := &Nginx{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(tb))),
		errorLog: filepath.Join(dir, "logs", "error.log"),
	}
	listenSuffix, serverExtra := "", opts.locations
	if opts.cert != "" {
		listenSuffix = " ssl"
		serverExtra = fmt.Sprintf("        ssl_certificate %s;\n        ssl_certificate_key %s;\n", opts.cert, opts.key) + serverExtra
		if opts.http2 {
			// nginx 1.22 (Debian 12) has no "http2 on" directive yet.
			listenSuffix += " http2"
		}
	}
	conf := fmt.Sprintf(`user root;
worker_processes 1;
error_log %[1]s/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    server {
        listen %[2]s%[4]s;
%[5]s
        location / {
            proxy_pass http://%[3]s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
`, dir, n.Addr, upstream, listenSuffix, serverExtra)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(nginxPath, "-p", dir, "-c", confPath, "-e", n.errorLog,
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nginx: %v", err)
	}
	n.Master = cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		// The master and its worker are one process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if tb.Failed() {
			log, _ := os.ReadFile(n.errorLog)
			tb.Logf("nginx output:\n%s\nnginx error log:\n%s", out, testutil.Tail(string(log), 4000))
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(n.errorLog)
			tb.Fatalf("nginx exited: %v\n%s\n%s", cmd.ProcessState, out, log)
		default:
		}
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nginx not listening on %s within 10s: %v\n%s", n.Addr, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTrustedProxyNginx: behind a real nginx (a trusted proxy), the span's
// client is the address nginx appended to X-Forwarded-For, and the socket
// peer (nginx) stays in network.peer.address; a client-supplied
// X-Forwarded-For is believed only as far as trusted hops vouch for it, and
// not at all when the client connects directly.
func TestTrustedProxyNginx(t *testing.T) {
	const (
		proxyAddr = "127.0.0.1" // nginx connects to the backend from here
		clientA   = "127.0.0.5"
		clientB   = "127.0.0.6"
		direct    = "127.0.0.7" // not a trusted proxy
	)
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		proxy := mustStartNginx(t, srv.Addr)
		ag := mustStartAgent(t, AgentOptions{
			PIDs: []int{srv.PID},
			Security: map[string]any{
				"username":        map[string]any{"privacy": "plain"},
				"session_cookies": []string{"session"},
				"trusted_proxies": []string{proxyAddr + "/32"},
			},
		})

		type proxyCase struct {
			user    string // unique per case: the key to its span
			src     string
			viaPeer bool // through nginx
			header  [2]string
			pass    string
			status  int
			client  string // want client.address and net.peer.ip
		}
		cases := []proxyCase{
			{user: "alice", src: clientA, viaPeer: true, pass: "correct-horse", status: 200, client: clientA},
			{user: "bob", src: clientB, viaPeer: true, pass: "wrong", status: 401, client: clientB},
			// nginx appends the real peer: "6.6.6.6, 127.0.0.5"; the right-most
			// untrusted entry wins.
			{user: "spoof-through-proxy", src: clientA, viaPeer: true, header: [2]string{"X-Forwarded-For", "6.6.6.6"}, pass: "x", status: 401, client: clientA},
			// Claiming to come from the trusted proxy does not help either.
			{user: "spoof-trusted-hop", src: clientB, viaPeer: true, header: [2]string{"X-Forwarded-For", "6.6.6.6, " + proxyAddr}, pass: "x", status: 401, client: clientB},
			// Straight to the backend: the peer is not trusted, its headers
			// are ignored.
			{user: "spoof-direct-xff", src: direct, header: [2]string{"X-Forwarded-For", "6.6.6.6"}, pass: "x", status: 401, client: direct},
			{user: "spoof-direct-forwarded", src: direct, header: [2]string{"Forwarded", "for=6.6.6.6"}, pass: "x", status: 401, client: direct},
		}
		for _, c := range cases {
			req := formLogin(c.user, c.pass)
			if c.header[0] != "" {
				req = req.With(c.header[0], c.header[1])
			}
			target := srv
			if c.viaPeer {
				target = &Server{Lang: "nginx", Addr: proxy.Addr}
			}
			mustStatus(t, c.user, mustDo(t, mustClient(t, c.src), target, req), c.status)
		}

		spans := ag.ExpectSpans(t, len(cases), spanWait)
		byUser := indexSpans(t, spans, func(sp Span) string { return sp.Attr("auth.username") })
		for _, c := range cases {
			sp, ok := byUser[c.user]
			if !ok {
				t.Errorf("%s: no span:\n%s", c.user, describeSpans(spans))
				continue
			}
			peer := c.src
			if c.viaPeer {
				peer = proxyAddr
			}
			result := "failure"
			if c.status == 200 {
				result = "success"
			}
			for attr, want := range map[string]string{
				"client.address":            c.client,
				"net.peer.ip":               c.client,
				"network.peer.address":      peer,
				"auth.client.subnet":        "127.0.0.0/24",
				"auth.result":               result,
				"http.response.status_code": strconv.Itoa(c.status),
			} {
				if got := sp.Attr(attr); got != want {
					t.Errorf("%s (from %s, %s %q): %s = %q, want %q\n  raw: %s", c.user, c.src, c.header[0], c.header[1], attr, got, want, sp.Raw)
				}
			}
			if strings.Contains(sp.Raw, "6.6.6.6") {
				t.Errorf("%s: the spoofed address surfaced in the span: %s", c.user, sp.Raw)
			}
		}
	})
}
