package chain

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

const (
	nginxPath = "/usr/sbin/nginx"
	// nginxAccount runs the workers; the master stays root to bind and
	// open its logs, as Debian's nginx does.
	nginxAccount = "www-data"
)

// Gateway is a running nginx in front of one backend.
type Gateway struct {
	Addr      string // 127.0.0.1:port
	PID       int    // the master; the worker is its child
	accessLog string
	proc      *process
}

// GatewayOptions shape the gateway.
type GatewayOptions struct {
	// Upstream is the backend's host:port.
	Upstream string
	// ForwardTraceparent passes the caller's traceparent to the backend
	// (nginx's default for any header); false strips it.
	ForwardTraceparent bool
	// NoKeepalive opens a new upstream connection per request; by
	// default nginx keeps up to 8 idle upstream connections.
	NoKeepalive bool
	// Port to listen on; 0 takes a free one.
	Port int
}

// Denied is the prefix of the paths the gateway answers 403 to itself,
// without calling the backend.
const Denied = "/api/admin/"

// URL is the gateway's address followed by path.
func (g *Gateway) URL(path string) string { return "http://" + g.Addr + path }

// AccessLog is the gateway's access log so far: one line per request,
// "METHOD URI STATUS upstream=ADDR" ("upstream=-" when nginx answered
// itself).
func (g *Gateway) AccessLog(tb testing.TB) []string {
	tb.Helper()
	b, err := os.ReadFile(g.accessLog)
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// MustStartGateway runs nginx with its own prefix in a temp dir on a free
// 127.0.0.1 port: Denied answers 403, everything else goes to the
// upstream with X-Forwarded-For appended.
func MustStartGateway(tb testing.TB, opts GatewayOptions) *Gateway {
	tb.Helper()
	if _, err := os.Stat(nginxPath); err != nil {
		tb.Skipf("nginx not installed (Debian package nginx-light): %v", err)
	}
	dir := mustTempDir(tb, "chain-nginx-")
	for _, sub := range []string{"logs", "client_body", "proxy"} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, 0o755); err != nil {
			tb.Fatal(err)
		}
		mustChown(tb, p, nginxAccount)
	}
	port := opts.Port
	if port == 0 {
		port = FreePort(tb)
	}
	g := &Gateway{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		accessLog: filepath.Join(dir, "logs", "access.log"),
	}
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user " + nginxAccount + ";"
	}
	traceparent := ""
	if !opts.ForwardTraceparent {
		// An empty value removes the header from the upstream request.
		traceparent = `proxy_set_header traceparent "";`
	}
	keepalive := "keepalive 8;"
	if opts.NoKeepalive {
		keepalive = ""
	}
	conf := fmt.Sprintf(`%[1]s
worker_processes 1;
error_log %[2]s/logs/error.log info;
events { worker_connections 256; }
http {
    log_format chain '$request_method $request_uri $status upstream=$upstream_addr';
    access_log %[2]s/logs/access.log chain;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    upstream backend {
        server %[4]s;
        %[6]s
    }
    server {
        listen %[3]s;
        location %[7]s {
            return 403;
        }
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            %[5]s
        }
    }
}
`, userLine, dir, g.Addr, opts.Upstream, traceparent, keepalive, Denied)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(nginxPath, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "logs", "error.log"),
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	// SIGQUIT: graceful; the master (root) starts and stops the worker.
	g.proc = mustStart(tb, "nginx", cmd, "", syscall.SIGQUIT)
	g.PID = cmd.Process.Pid
	err := waitFor(g.proc, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", g.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
		tb.Fatalf("nginx: %v\n%s", err, testutil.Tail(string(log), 3000))
	}
	return g
}
