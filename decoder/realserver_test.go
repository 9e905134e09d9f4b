package decoder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The real-server table: raw requests that bend HTTP/1 in ways an
// attacker can use, sent to real servers on loopback. A variant counts for
// a server only when the server answered it from its login handler; then
// the decoder, fed the same bytes both ways, must give an exchange for
// every such answer, paired with it (same status, the handler's marker in
// the body). A server that refuses a variant says nothing about the
// decoder, which may accept more.

// pythonServer is a login endpoint on Python's http.server, the way a
// careful handler is written: it routes on the unquoted path and reads
// Content-Length with int().
const pythonServer = `
import http.server, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self):
        n = self.headers.get("Content-Length")
        body = self.rfile.read(int(n)) if n else b""
        u = urllib.parse.urlsplit(self.path)
        if urllib.parse.unquote(u.path) != "/login":
            out, code = b"handler=other", 404
        else:
            ok = b"password=right" in body or "password=right" in u.query
            out, code = b"handler=login", 302 if ok else 401
        self.send_response(code)
        self.send_header("X-Handler", "login" if code != 404 else "other")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = answer
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`

// nodeServer is the same endpoint on Node's http module (llhttp).
const nodeServer = `
const http = require("http");
const s = http.createServer((req, res) => {
  let body = "";
  req.on("data", d => body += d);
  req.on("end", () => {
    const u = new URL(req.url, "http://x");
    let path = u.pathname;
    try { path = decodeURIComponent(path); } catch (e) {}
    let out = "handler=other", code = 404;
    if (path === "/login") {
      out = "handler=login";
      code = (body.includes("password=right") || u.search.includes("password=right")) ? 302 : 401;
    }
    res.writeHead(code, {"X-Handler": code === 404 ? "other" : "login", "Content-Length": out.length});
    res.end(out);
  });
});
s.listen(0, "127.0.0.1", () => console.log(s.address().port));
`

// goLogin is the same endpoint on Go's net/http ServeMux.
func goLogin(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	code := http.StatusUnauthorized
	if bytes.Contains(body, []byte("password=right")) || strings.Contains(r.URL.RawQuery, "password=right") {
		code = http.StatusFound
	}
	w.Header().Set("X-Handler", "login")
	w.Header().Set("Content-Length", "13")
	w.WriteHeader(code)
	io.WriteString(w, "handler=login")
}

// mustStartScript runs a server script and returns the port it printed.
func mustStartScript(tb testing.TB, name string, args ...string) int {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	port := make(chan int, 1)
	go func() {
		var p int
		_, _ = fmt.Fscan(bufio.NewReader(out), &p)
		port <- p
	}()
	select {
	case p := <-port:
		if p == 0 {
			tb.Fatalf("%s printed no port", name)
		}
		return p
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s did not start", name)
	}
	return 0
}

func mustStartGo(tb testing.TB) int {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/login", goLogin)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Handler", "other")
		http.Error(w, "handler=other", http.StatusNotFound)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// exchangeRaw writes req in one write and reads what the server sends
// until it closes or stays silent for a while.
func exchangeRaw(tb testing.TB, port int, req []byte) []byte {
	tb.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		tb.Fatalf("write: %v", err)
	}
	var resp []byte
	buf := make([]byte, 65536)
	wait := 2 * time.Second // for the first bytes
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		resp = append(resp, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) || n == 0 {
				return resp
			}
			return resp
		}
		wait = 300 * time.Millisecond
	}
}

type variant struct {
	name string
	req  string
}

// evasions are the request shapes of issue 7 and the leniencies of
// README.md. Every login carries a wrong password unless it says right.
func evasions() []variant {
	form := func(method, target, proto, extra, body string) string {
		return fmt.Sprintf("%s %s %s\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\n%sContent-Length: %d\r\n\r\n%s",
			method, target, proto, extra, len(body), body)
	}
	login := "username=alice&password=wrong"
	right := "username=alice&password=right"
	bigHeaders := strings.Repeat("X-Pad: "+strings.Repeat("p", 90)+"\r\n", 64) // about 6 KB
	chunked := "POST /login HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(login), login)
	return []variant{
		{"plain", form("POST", "/login", "HTTP/1.1", "", login)},
		{"percent-encoded letter", form("POST", "/l%6Fgin", "HTTP/1.1", "", login)},
		{"absolute form", form("POST", "http://app/login", "HTTP/1.1", "", login)},
		{"upper-case path", form("POST", "/LOGIN", "HTTP/1.1", "", login)},
		{"behind a health check", "GET /health HTTP/1.1\r\nHost: app\r\n\r\n" + form("POST", "/login", "HTTP/1.1", "", login)},
		{"leading empty line", "\r\n" + form("POST", "/login", "HTTP/1.1", "", login)},
		{"two leading empty lines", "\r\n\r\n" + form("POST", "/login", "HTTP/1.1", "", login)},
		{"HTTP/1.2", form("POST", "/login", "HTTP/1.2", "", login)},
		{"HTTP/1.9", form("POST", "/login", "HTTP/1.9", "", login)},
		{"HTTP/01.1", form("POST", "/login", "HTTP/01.1", "", login)},
		{"HTTP/1.0 without Host", "POST /login HTTP/1.0\r\nContent-Length: 29\r\n\r\n" + login},
		{"lower-case method", form("post", "/login", "HTTP/1.1", "", login)},
		{"double space", strings.Replace(form("POST", "/login", "HTTP/1.1", "", login), " ", "  ", 1)},
		{"tab separators", strings.Replace(strings.Replace(form("POST", "/login", "HTTP/1.1", "", login), " ", "\t", 1), " ", "\t", 1)},
		{"content-length +29", strings.Replace(form("POST", "/login", "HTTP/1.1", "", login), "Content-Length: 29", "Content-Length: +29", 1)},
		{"content-length 2_9", strings.Replace(form("POST", "/login", "HTTP/1.1", "", login), "Content-Length: 29", "Content-Length: 2_9", 1)},
		{"content-length twice", form("POST", "/login", "HTTP/1.1", "Content-Length: 29\r\n", login)},
		{"space before colon", form("POST", "/login", "HTTP/1.1", "X-Note : 1\r\n", login)},
		{"chunked body", chunked},
		{"6 KB of headers", form("POST", "/login", "HTTP/1.1", bigHeaders, login)},
		{"expect 100-continue, then a second login", form("POST", "/login", "HTTP/1.1", "Expect: 100-continue\r\n", login) +
			form("POST", "/login", "HTTP/1.1", "", right)},
		{"query login, HTTP/0.9", "GET /login?username=alice&password=right\r\n\r\n"},
		{"right and wrong pipelined", form("POST", "/login", "HTTP/1.1", "", right) + form("POST", "/login", "HTTP/1.1", "", login) +
			form("POST", "/login", "HTTP/1.1", "", right)},
	}
}

func TestRealServerAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers: not in -short")
	}
	servers := map[string]func(testing.TB) int{
		"go": mustStartGo,
		"python": func(tb testing.TB) int {
			if _, err := os.Stat("/usr/bin/python3"); err != nil {
				tb.Skip("no /usr/bin/python3 (Debian's python3 package)")
			}
			return mustStartScript(tb, "/usr/bin/python3", "-c", pythonServer)
		},
		"node": func(tb testing.TB) int {
			node, err := exec.LookPath("node")
			if err != nil {
				tb.Skip("no node on PATH")
			}
			return mustStartScript(tb, node, "-e", nodeServer)
		},
	}
	for _, name := range []string{"go", "python", "node"} {
		t.Run(name, func(t *testing.T) {
			port := servers[name](t)
			var table []string
			for _, v := range evasions() {
				resp := exchangeRaw(t, port, []byte(v.req))
				answers := loginStatuses(resp)
				table = append(table, fmt.Sprintf("%-42s login answers %v", v.name, answers))
				if len(answers) == 0 {
					continue // the server did not answer it from its login handler
				}
				t.Run(v.name, func(t *testing.T) { mustDecodeLikeServer(t, []byte(v.req), resp, answers) })
			}
			t.Logf("%s:\n%s", name, strings.Join(table, "\n"))
		})
	}
}

// loginStatuses returns the status of every login answer in a response
// stream, in order: the status line before each marker (0 for an HTTP/0.9
// answer, which has none).
func loginStatuses(resp []byte) []int {
	var codes []int
	for {
		i := bytes.Index(resp, []byte("handler=login"))
		if i < 0 {
			return codes
		}
		code := 0
		if j := bytes.LastIndex(resp[:i], []byte("HTTP/1.")); j >= 0 && j+12 <= i {
			fmt.Sscanf(string(resp[j+9:j+12]), "%d", &code)
		}
		codes = append(codes, code)
		resp = resp[i+len("handler=login"):]
	}
}

// mustDecodeLikeServer feeds a connection's request and response bytes to
// a decoder and checks that every login answer is an exchange of its own,
// with the server's status, paired with a login request.
func mustDecodeLikeServer(tb testing.TB, req, resp []byte, answers []int) {
	tb.Helper()
	d := New(Config{})
	f := mustFeeder(tb, d, 1)
	exs := f.feed(Ingress, string(req))
	exs = append(exs, f.feed(Egress, string(resp))...)
	exs = append(exs, d.Close(f.key, f.time)...)
	var got []int
	for _, ex := range exs {
		if ex.Response == nil || !bytes.Contains(ex.Response.Body, []byte("handler=login")) {
			continue
		}
		got = append(got, ex.Response.StatusCode)
		target, err := url.PathUnescape(ex.Request.Target)
		if err != nil || !strings.Contains(strings.ToLower(target), "/login") {
			tb.Errorf("a login answer paired with %s %q", ex.Request.Method, ex.Request.Target)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(answers) {
		tb.Errorf("the server's login answers %v, the decoder's %v:\n%s\nstats %s",
			answers, got, strings.Join(summaries(exs), "\n"), formatStats(d.Stats()))
	}
}
