package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	curlPath      = "/usr/bin/curl"
	clientTimeout = 10 * time.Second
	// splitPause lets each piece of a split write arrive, and be read by
	// the server, on its own.
	splitPause = 30 * time.Millisecond
)

// Request is one HTTP request, sendable by every client below.
type Request struct {
	Method string
	Path   string
	Header map[string]string
	Body   string
}

// With returns a copy of r with one more header.
func (r Request) With(name, value string) Request {
	h := make(map[string]string, len(r.Header)+1)
	for k, v := range r.Header {
		h[k] = v
	}
	h[name] = value
	r.Header = h
	return r
}

// headerNames in a stable order, so the wire bytes are reproducible.
func (r Request) headerNames() []string {
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Wire is the request as HTTP/1.1 bytes; Content-Length is added for a
// body unless the request sets Transfer-Encoding itself.
func (r Request) Wire(host string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.Path, host)
	for _, k := range r.headerNames() {
		fmt.Fprintf(&b, "%s: %s\r\n", k, r.Header[k])
	}
	_, chunked := r.Header["Transfer-Encoding"]
	if !chunked && (r.Body != "" || r.Method == http.MethodPost) {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.Body)
	return b.Bytes()
}

func formBody(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func formRequest(method, path string, kv ...string) Request {
	return Request{
		Method: method, Path: path, Body: formBody(kv...),
		Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
	}
}

func jsonRequest(method, path string, obj any) Request {
	b, _ := json.Marshal(obj)
	return Request{
		Method: method, Path: path, Body: string(b),
		Header: map[string]string{"Content-Type": "application/json"},
	}
}

func formLogin(user, pass string) Request {
	return formRequest(http.MethodPost, "/login", "username", user, "password", pass)
}

func jsonLogin(user, pass string) Request {
	return jsonRequest(http.MethodPost, "/login", map[string]string{"username": user, "password": pass})
}

func get(path string) Request { return Request{Method: http.MethodGet, Path: path} }

func bearer(path, token string) Request {
	return get(path).With("Authorization", "Bearer "+token)
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// Response is what any client got back.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// JSON decodes the body into a map (nil when it is not a JSON object).
func (r Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal([]byte(r.Body), &m)
	return m
}

// Cookie is the value the response sets for the named cookie ("" if none).
func (r Response) Cookie(name string) string {
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// ---- Go net/http client ----

// mustClient is a keep-alive net/http client whose connections leave from
// srcIP (an address of 127.0.0.0/8).
func mustClient(tb testing.TB, srcIP string) *http.Client {
	tb.Helper()
	ip := net.ParseIP(srcIP)
	if ip == nil {
		tb.Fatalf("bad source address %q", srcIP)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: clientTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   clientTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// mustDo sends req to srv with c and reads the whole response.
func mustDo(tb testing.TB, c *http.Client, srv *Server, req Request) Response {
	tb.Helper()
	hr, err := http.NewRequest(req.Method, srv.URL(req.Path), strings.NewReader(req.Body))
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	if req.Body == "" && req.Method != http.MethodPost {
		hr.Body = http.NoBody
		hr.ContentLength = 0
	}
	for k, v := range req.Header {
		hr.Header.Set(k, v)
	}
	resp, err := c.Do(hr)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", req.Method, req.Path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// ---- curl ----

// curl runs /usr/bin/curl with args, its connections leaving from srcIP,
// and returns the last response (after any 100 Continue).
func curl(tb testing.TB, srcIP string, args ...string) Response {
	tb.Helper()
	if _, err := os.Stat(curlPath); err != nil {
		tb.Skipf("curl: %v", err)
	}
	dir := tb.TempDir()
	headers, body := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	all := append([]string{
		"--silent", "--show-error", "--noproxy", "*", "--max-time", "10",
		"--interface", srcIP, "--dump-header", headers, "--output", body,
	}, args...)
	cmd := exec.Command(curlPath, all...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	rawHeaders, err := os.ReadFile(headers)
	if err != nil {
		tb.Fatalf("curl headers: %v", err)
	}
	rawBody, err := os.ReadFile(body)
	if err != nil && !os.IsNotExist(err) { // no file for an empty body
		tb.Fatalf("curl body: %v", err)
	}
	resp, err := parseHead(rawHeaders)
	if err != nil {
		tb.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	resp.Body = string(rawBody)
	return resp
}

// curlDo sends req to srv with curl from srcIP.
func curlDo(tb testing.TB, srcIP string, srv *Server, req Request) Response {
	tb.Helper()
	args := []string{"--request", req.Method}
	for _, k := range req.headerNames() {
		args = append(args, "--header", k+": "+req.Header[k])
	}
	if req.Body != "" || req.Method == http.MethodPost {
		args = append(args, "--data-binary", req.Body)
	}
	return curl(tb, srcIP, append(args, srv.URL(req.Path))...)
}

// parseHead parses the last response head in curl's header dump.
func parseHead(raw []byte) (Response, error) {
	blocks := strings.Split(strings.TrimRight(string(raw), "\r\n"), "\r\n\r\n")
	last := blocks[len(blocks)-1]
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(last + "\r\n\r\n")))
	line, err := tp.ReadLine()
	if err != nil {
		return Response{}, fmt.Errorf("status line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return Response{}, fmt.Errorf("status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return Response{}, fmt.Errorf("status line %q: %w", line, err)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return Response{}, fmt.Errorf("headers: %w", err)
	}
	return Response{Status: status, Header: http.Header(h)}, nil
}

// ---- raw TCP ----

// RawConn is a TCP connection from a chosen source address, written byte
// for byte: pipelined requests, requests split over many segments.
type RawConn struct {
	conn *net.TCPConn
	r    *bufio.Reader
	host string
}

// rawConn connects to addr from srcIP; Cleanup closes it.
func rawConn(tb testing.TB, srcIP, addr string) *RawConn {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcIP)}, Timeout: clientTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("connect %s from %s: %v", addr, srcIP, err)
	}
	tb.Cleanup(func() { c.Close() })
	tc := c.(*net.TCPConn)
	// One Write, one segment: the split tests rely on it.
	if err := tc.SetNoDelay(true); err != nil {
		tb.Fatalf("nodelay: %v", err)
	}
	return &RawConn{conn: tc, r: bufio.NewReader(tc), host: addr}
}

// LocalAddr is the client end (the server's peer).
func (c *RawConn) LocalAddr() netip.AddrPort {
	return c.conn.LocalAddr().(*net.TCPAddr).AddrPort()
}

// Write sends b in one write.
func (c *RawConn) Write(tb testing.TB, b []byte) {
	tb.Helper()
	if err := c.conn.SetWriteDeadline(time.Now().Add(clientTimeout)); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		tb.Fatalf("write: %v", err)
	}
}

// WriteSplit sends b in pieces cut at the given offsets, pausing between
// them so each arrives on its own.
func (c *RawConn) WriteSplit(tb testing.TB, b []byte, cuts ...int) {
	tb.Helper()
	prev := 0
	for _, cut := range append(cuts, len(b)) {
		if cut < prev || cut > len(b) {
			tb.Fatalf("bad cut %d (prev %d, len %d)", cut, prev, len(b))
		}
		if prev > 0 {
			time.Sleep(splitPause)
		}
		c.Write(tb, b[prev:cut])
		prev = cut
	}
}

// Send writes the requests back to back in one write (pipelined).
func (c *RawConn) Send(tb testing.TB, reqs ...Request) {
	tb.Helper()
	var b []byte
	for _, r := range reqs {
		b = append(b, r.Wire(c.host)...)
	}
	c.Write(tb, b)
}

// ReadResponses reads n complete responses.
func (c *RawConn) ReadResponses(tb testing.TB, n int) []Response {
	tb.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(clientTimeout)); err != nil {
		tb.Fatal(err)
	}
	out := make([]Response, 0, n)
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			tb.Fatalf("response %d of %d: %v", i+1, n, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			tb.Fatalf("response %d of %d body: %v", i+1, n, err)
		}
		out = append(out, Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)})
	}
	return out
}

// ---- trace context and tokens ----

// TraceParent is a caller's span context as sent in a W3C traceparent.
type TraceParent struct {
	TraceID string // 32 hex digits
	SpanID  string // 16 hex digits
}

func (tp TraceParent) String() string { return "00-" + tp.TraceID + "-" + tp.SpanID + "-01" }

// newTraceParent makes a random, valid (non-zero) trace context.
func newTraceParent(tb testing.TB) TraceParent {
	tb.Helper()
	return TraceParent{TraceID: randomHex(tb, 16), SpanID: randomHex(tb, 8)}
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	b[0] |= 1 // never all zero
	return hex.EncodeToString(b)
}
