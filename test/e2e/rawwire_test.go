package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// The raw-socket client of the evasion and burst tests: exact bytes, one
// write per piece (TCP_NODELAY), and a reader that records what a server
// did instead of failing on it (a server that refuses a variant may close
// the connection).

const (
	// evReadWait bounds the wait for each response; the servers answer in
	// milliseconds, so only a request a server is still waiting on (for
	// body bytes it thinks are missing) runs into it. Stretched in the
	// emulated guests, where a cold JVM takes seconds per request.
	evReadWait = 2 * time.Second
	// evInterimWait is how long a client that sent Expect: 100-continue
	// waits for the interim response before it sends the body anyway (as
	// curl does, with a shorter wait than curl's 1 s).
	evInterimWait = 500 * time.Millisecond
)

// loginMarker is the response header every test server's login handler
// sets (see test/servers/README.md).
const loginMarker = "X-Login-Handler"

// evReq is one request on the wire and what it is.
type evReq struct {
	wire []byte
	// line is the request line as sent, for messages.
	line string
	// login: sent for the login route (else a non-auth request).
	login bool
	// user is the auth.username its span must carry; "" checks none.
	user string
	// ambiguous: servers disagree on what it says (a field twice, CL with
	// TE); its span must carry auth.request.ambiguous.
	ambiguous bool
	// mayBeAmbiguous: its span may carry auth.request.ambiguous or not
	// (servers disagree on it, but not on its fields or framing).
	mayBeAmbiguous bool
	// noUser: its span must not carry auth.username (the value is not
	// known).
	noUser bool
	tp     TraceParent
}

// evStep writes wire[previous end:end] of a connection, then optionally
// waits for an interim response and reads final responses.
type evStep struct {
	end     int
	pause   bool // sleep splitPause first, so the server reads it apart
	interim bool // wait up to evInterimWait for a 1xx
	// answered: read final responses until this many requests of the
	// connection have one.
	answered int
}

// evConn is one client connection: its requests, and how their
// concatenated bytes are written (nil steps: all in one write).
type evConn struct {
	reqs  []evReq
	steps []evStep
}

func (c evConn) wire() []byte {
	var b []byte
	for _, r := range c.reqs {
		b = append(b, r.wire...)
	}
	return b
}

// evAnswer is what the server answered to one request.
type evAnswer struct {
	status   int   // final status; 0 when none came
	interims []int // 1xx statuses before it
	marked   bool  // from the login handler
	// noUser: the login handler read no username (marker value "nouser"):
	// the request's body never reached it, whatever was sent.
	noUser bool
	err    string
}

// evRun is one connection as it went.
type evRun struct {
	src     string
	port    int
	answers []evAnswer // one per request
}

// runEvConn dials addr from src and plays c. Only a client-side failure
// (cannot connect or write) is an error; what the server does is recorded.
func runEvConn(addr, src string, c evConn) (evRun, error) {
	run := evRun{src: src, answers: make([]evAnswer, len(c.reqs))}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: clientTimeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return run, fmt.Errorf("connect %s from %s: %w", addr, src, err)
	}
	defer nc.Close()
	tc := nc.(*net.TCPConn)
	if err := tc.SetNoDelay(true); err != nil {
		return run, fmt.Errorf("nodelay: %w", err)
	}
	run.port = tc.LocalAddr().(*net.TCPAddr).Port
	br := bufio.NewReader(tc)
	wire := c.wire()
	steps := c.steps

	next := 0       // the request the next final response answers
	broken := false // the server closed or the stream is unreadable
	read := func(wait time.Duration, interimOnly bool) bool {
		if broken || next >= len(run.answers) {
			return false
		}
		_ = tc.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if interimOnly && isTimeout(err) {
				return false
			}
			run.answers[next].err = err.Error()
			broken = true
			return false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a := &run.answers[next]
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			a.interims = append(a.interims, resp.StatusCode)
			return true
		}
		mark := resp.Header.Get(loginMarker)
		a.status, a.marked, a.noUser = resp.StatusCode, mark == "1" || mark == "nouser", mark == "nouser"
		next++
		if err != nil {
			broken = true
			if next < len(run.answers) {
				run.answers[next].err = "previous body: " + err.Error()
			}
		}
		return true
	}
	readUntil := func(answered int) {
		for next < answered && next < len(run.answers) {
			if !read(testutil.Patience(evReadWait), false) {
				return
			}
		}
	}

	if steps == nil {
		// One write, read while it goes: a long burst's answers must not
		// fill the socket buffers while the client is still writing.
		werr := make(chan error, 1)
		go func() {
			_ = tc.SetWriteDeadline(time.Now().Add(clientTimeout))
			_, err := tc.Write(wire)
			werr <- err
		}()
		readUntil(len(run.answers))
		if err := <-werr; err != nil && !broken {
			return run, fmt.Errorf("write %d bytes: %w", len(wire), err)
		}
	}
	prev := 0
	for _, s := range steps {
		if s.pause {
			time.Sleep(splitPause)
		}
		if err := tc.SetWriteDeadline(time.Now().Add(clientTimeout)); err != nil {
			return run, err
		}
		if _, err := tc.Write(wire[prev:s.end]); err != nil {
			if broken {
				break // the server had closed: recorded already
			}
			return run, fmt.Errorf("write %d bytes at %d: %w", s.end-prev, prev, err)
		}
		prev = s.end
		if s.interim {
			// A 1xx, or a final answer that did not wait for the body.
			read(evInterimWait, true)
		}
		readUntil(s.answered)
	}
	readUntil(len(run.answers))
	for i := next; i < len(run.answers); i++ {
		if run.answers[i].err == "" {
			run.answers[i].err = "no response"
		}
	}
	return run, nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// wireOpts shape one request; the zero value is a form login with
// Content-Length over HTTP/1.1.
type wireOpts struct {
	Method, Target, Version string // "POST", "/login", "HTTP/1.1"
	// Line replaces the whole request line.
	Line string
	// Prefix goes before the request line (empty lines).
	Prefix string
	// EOL ends every head line ("\r\n").
	EOL    string
	NoHost bool
	// JSON sends the credentials as a JSON object (else a form).
	JSON bool
	// Headers go after Host, traceparent and Content-Type.
	Headers []string
	// Body replaces the credentials body.
	Body string
	// Chunked sends the body in three chunks with Transfer-Encoding.
	Chunked bool
	// Framing gives the framing header lines for a body of n bytes as sent
	// (after chunked encoding); nil: Content-Length: n (none if Chunked).
	Framing func(n int) []string
}

// buildWire is one request's bytes; host is the server's address.
func buildWire(host string, tp TraceParent, user, pass string, o wireOpts) (wire []byte, line string) {
	eol := o.EOL
	if eol == "" {
		eol = "\r\n"
	}
	line = o.Line
	if line == "" {
		method, target, version := o.Method, o.Target, o.Version
		if method == "" {
			method = http.MethodPost
		}
		if target == "" {
			target = "/login"
		}
		if version == "" {
			version = "HTTP/1.1"
		}
		line = method + " " + strings.ReplaceAll(target, "{host}", host) + " " + version
	}
	body := o.Body
	ctype := "application/x-www-form-urlencoded"
	if o.JSON {
		ctype = "application/json"
	}
	if body == "" && o.JSON {
		body = fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)
	} else if body == "" {
		body = url.Values{"username": {user}, "password": {pass}}.Encode()
	}
	if o.Chunked {
		body = chunkBody(body, 3)
	}

	var b strings.Builder
	b.WriteString(o.Prefix)
	b.WriteString(line + eol)
	if !o.NoHost {
		b.WriteString("Host: " + host + eol)
	}
	b.WriteString("traceparent: " + tp.String() + eol)
	b.WriteString("Content-Type: " + ctype + eol)
	for _, h := range o.Headers {
		b.WriteString(h + eol)
	}
	var framing []string
	switch {
	case o.Framing != nil:
		framing = o.Framing(len(body))
	case o.Chunked:
		framing = []string{"Transfer-Encoding: chunked"}
	default:
		framing = []string{fmt.Sprintf("Content-Length: %d", len(body))}
	}
	for _, h := range framing {
		b.WriteString(h + eol)
	}
	b.WriteString(eol)
	b.WriteString(body)
	return []byte(b.String()), line
}

// chunkBody encodes body in n chunks (the last ones may be shorter).
func chunkBody(body string, n int) string {
	var b strings.Builder
	size := (len(body) + n - 1) / n
	for len(body) > 0 {
		c := body[:min(size, len(body))]
		body = body[len(c):]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(c), c)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// getWire is a plain GET with a traceparent.
func getWire(host, path string, tp TraceParent) (wire []byte, line string) {
	line = "GET " + path + " HTTP/1.1"
	return []byte(line + "\r\nHost: " + host + "\r\ntraceparent: " + tp.String() + "\r\n\r\n"), line
}

// wireHeadEnd is the offset just after the first empty line of wire.
func wireHeadEnd(wire []byte) int {
	if i := strings.Index(string(wire), "\r\n\r\n"); i >= 0 {
		return i + 4
	}
	return strings.Index(string(wire), "\n\n") + 2
}
