package http1

import (
	"slices"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// parseRequest reads a request head as the stream parser does (a head
// without its empty line is one cut short), with strings aliasing b.
func parseRequest(b []byte) (exchange.Request, bool) {
	truncated := true
	if n := headEnd(b, 0); n >= 0 {
		b, truncated = b[:n], false
	}
	h, ok := readRequestHead(b, truncated, nil)
	if !ok {
		return exchange.Request{}, false
	}
	var r exchange.Request
	fillRequest(&r, b, truncated, &h, nil)
	mode, _, amb := h.f.requestBody(h.http10())
	setRequestFraming(&r, &h.f, mode, amb)
	return r, true
}

func parseResponse(b []byte) (exchange.Response, bool) {
	truncated := true
	if n := headEnd(b, 0); n >= 0 {
		b, truncated = b[:n], false
	}
	line, rest, _ := cutLine(b)
	sl, ok := parseStatusLine(line)
	if !ok {
		return exchange.Response{}, false
	}
	f := newFraming()
	spans := readFields(b, len(b)-len(rest), &f, nil)
	var r exchange.Response
	fillResponse(&r, b, truncated, spans, nil)
	mode, _ := f.responseBody(sl.code, exchange.KindOther)
	setResponseFraming(&r, &f, mode)
	return r, true
}

func hdr(kv ...string) exchange.Header {
	var h exchange.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, exchange.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name string
		head string
		want exchange.Request // zero Method: the head is rejected
	}{
		{
			name: "get",
			head: "GET /authorize?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/authorize?x=1", Proto: "HTTP/1.1",
				Header: hdr("Host", "a"), ContentLength: -1},
		},
		{
			name: "duplicates kept in order, OWS trimmed, bare LF",
			head: "POST /login HTTP/1.0\nCookie: a=1\nX-A:\t x \t\ncookie:b=2\nContent-Length: 5, 5\n\n",
			want: exchange.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.0",
				Header:        hdr("Cookie", "a=1", "X-A", "x", "cookie", "b=2", "Content-Length", "5, 5"),
				ContentLength: 5, Ambiguous: exchange.AmbiguousCLValue},
		},
		{
			name: "chunked with content-length: both, ambiguous",
			head: "POST /t HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip,Chunked\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/t", Proto: "HTTP/1.1",
				Header:        hdr("Content-Length", "3", "Transfer-Encoding", "gzip,Chunked"),
				ContentLength: -1, Chunked: true, Ambiguous: exchange.AmbiguousCLTE | exchange.AmbiguousTE},
		},
		{
			name: "obs-fold joined with a space",
			head: "GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("X-Long", "a b"), ContentLength: -1},
		},
		{
			name: "cut by capture: last partial line ignored",
			head: "GET /x HTTP/1.1\r\nHost: a\r\nCookie: sess",
			want: exchange.Request{Method: "GET", Target: "/x", Proto: "HTTP/1.1",
				Header: hdr("Host", "a"), ContentLength: -1, HeadTruncated: true},
		},
		{
			name: "cut inside the request line: method and the start of the target",
			head: "POST /login?next=%2Fhome&x",
			want: exchange.Request{Method: "POST", Target: "/login?next=%2Fhome&x", ContentLength: -1, HeadTruncated: true},
		},
		{
			name: "HTTP/1.7, Go and Python",
			head: "POST /login HTTP/1.7\r\nContent-Length: 2\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.7",
				Header: hdr("Content-Length", "2"), ContentLength: 2},
		},
		{
			name: "HTTP/01.10, Python",
			head: "GET /login HTTP/01.10\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/login", Proto: "HTTP/01.10", ContentLength: -1},
		},
		{
			name: "lower-case method, Go",
			head: "post /login HTTP/1.1\r\n\r\n",
			want: exchange.Request{Method: "post", Target: "/login", Proto: "HTTP/1.1", ContentLength: -1},
		},
		{
			name: "absolute form",
			head: "POST http://app.example/login HTTP/1.1\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "http://app.example/login", Proto: "HTTP/1.1", ContentLength: -1},
		},
		{
			name: "whitespace runs, Python",
			head: "POST \t /login\x0c\x0bHTTP/1.1\r\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.1", ContentLength: -1},
		},
		{
			name: "HTTP/0.9 simple request, Python",
			head: "GET /login?u=a\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/login?u=a", Proto: "HTTP/0.9", ContentLength: -1},
		},
		{
			name: "content-length +41, Python",
			head: "POST /login HTTP/1.1\r\nContent-Length: +41\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.1",
				Header: hdr("Content-Length", "+41"), ContentLength: 41, Ambiguous: exchange.AmbiguousCLValue},
		},
		{
			name: "two different content-lengths: the smaller",
			head: "POST / HTTP/1.1\r\nContent-Length: 9\r\ncontent-length: 2\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("Content-Length", "9", "content-length", "2"), ContentLength: 2, Ambiguous: exchange.AmbiguousCL},
		},
		{
			name: "negative content-length: no body",
			head: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("Content-Length", "-1"), ContentLength: 0, Ambiguous: exchange.AmbiguousCLValue},
		},
		{
			name: "transfer-encoding not ending in chunked: length framing",
			head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
			want: exchange.Request{Method: "POST", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("Transfer-Encoding", "chunked, gzip"), ContentLength: -1, Ambiguous: exchange.AmbiguousTE},
		},
		{
			name: "no colon: fields stop there (Python), ambiguous",
			head: "GET / HTTP/1.1\r\nHost: a\r\nnot a field\r\nContent-Length: 5\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("Host", "a"), ContentLength: -1, Ambiguous: exchange.AmbiguousHeader},
		},
		{
			name: "space before colon: kept (Go reads on), never framing; Python stopped before the length",
			head: "GET / HTTP/1.1\r\nHost : a\r\nContent-Length: 5\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header:        hdr("Host ", "a", "Content-Length", "5"),
				ContentLength: 5, Ambiguous: exchange.AmbiguousHeader},
		},
		{
			name: "continuation first: skipped",
			head: "GET / HTTP/1.1\r\n a\r\nHost: h\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("Host", "h"), ContentLength: -1, Ambiguous: exchange.AmbiguousHeader},
		},
		{
			name: "control bytes in a value are kept",
			head: "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
			want: exchange.Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header: hdr("A", "b\x00c"), ContentLength: -1},
		},
		{name: "empty", head: ""},
		{name: "one word", head: "GET\r\n\r\n"},
		{name: "simple request other than GET", head: "POST /login\r\n\r\n"},
		{name: "four words", head: "GET /a b HTTP/1.1\r\n\r\n"},
		{name: "http/2 preface", head: "PRI * HTTP/2.0\r\n\r\n"},
		{name: "http/2.0 version", head: "GET / HTTP/2.0\r\n\r\n"},
		{name: "bad method", head: "G(T / HTTP/1.1\r\n\r\n"},
		{name: "version with a letter", head: "GET / HTTP/1.x\r\n\r\n"},
		{name: "version without minor", head: "GET / HTTP/1\r\n\r\n"},
		{name: "lower-case http", head: "GET / http/1.1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRequest([]byte(tt.head))
			if ok != (tt.want.Method != "") {
				t.Fatalf("accepted = %v, want %v", ok, !ok)
			}
			if !ok {
				return
			}
			if got.Method != tt.want.Method || got.Target != tt.want.Target || got.Proto != tt.want.Proto ||
				!slices.Equal(got.Header, tt.want.Header) || got.ContentLength != tt.want.ContentLength ||
				got.Chunked != tt.want.Chunked || got.Ambiguous != tt.want.Ambiguous || got.HeadTruncated != tt.want.HeadTruncated {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		name string
		head string
		want exchange.Response // zero StatusCode: rejected
	}{
		{
			name: "ok",
			head: "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n",
			want: exchange.Response{Proto: "HTTP/1.1", StatusCode: 401, Reason: "Unauthorized",
				Header: hdr("WWW-Authenticate", "Bearer", "Content-Length", "0")},
		},
		{
			name: "no reason",
			head: "HTTP/1.0 200\r\n\r\n",
			want: exchange.Response{Proto: "HTTP/1.0", StatusCode: 200, ContentLength: -1},
		},
		{
			name: "empty reason, close-delimited coding",
			head: "HTTP/1.1 200 \r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
			want: exchange.Response{Proto: "HTTP/1.1", StatusCode: 200,
				Header: hdr("Transfer-Encoding", "gzip", "Content-Length", "9"), ContentLength: 9},
		},
		{
			name: "chunked",
			head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: exchange.Response{Proto: "HTTP/1.1", StatusCode: 200, Reason: "OK",
				Header: hdr("Transfer-Encoding", "chunked"), ContentLength: -1, Chunked: true},
		},
		{
			name: "tab separator",
			head: "HTTP/1.1\t302\tFound\r\n\r\n",
			want: exchange.Response{Proto: "HTTP/1.1", StatusCode: 302, Reason: "Found", ContentLength: -1},
		},
		{name: "garbage", head: "\x16\x03\x01\x00\x00\r\n\r\n"},
		{name: "short code", head: "HTTP/1.1 20 OK\r\n\r\n"},
		{name: "letters", head: "HTTP/1.1 2x0 OK\r\n\r\n"},
		{name: "code too low", head: "HTTP/1.1 099 OK\r\n\r\n"},
		{name: "no space after code", head: "HTTP/1.1 2000\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseResponse([]byte(tt.head))
			if ok != (tt.want.StatusCode != 0) {
				t.Fatalf("accepted = %v, want %v", ok, !ok)
			}
			if !ok {
				return
			}
			if got.Proto != tt.want.Proto || got.StatusCode != tt.want.StatusCode || got.Reason != tt.want.Reason ||
				!slices.Equal(got.Header, tt.want.Header) || got.ContentLength != tt.want.ContentLength ||
				got.Chunked != tt.want.Chunked {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestContentLength(t *testing.T) {
	tests := []struct {
		v   string
		n   int64
		odd bool
	}{
		{"41", 41, false},
		{"0041", 41, false},
		{"+41", 41, true},
		{"4_1", 41, true},
		{"\x0b41\xa0", 41, true},
		{"5, 5", 5, true},
		{"5, 6", 0, true},
		{"-5", 0, true},
		{"4__1", 0, true},
		{"_41", 0, true},
		{"41_", 0, true},
		{"0x29", 0, true},
		{"", 0, true},
		{"99999999999999999999999", maxContentLength, false},
	}
	for _, tt := range tests {
		if n, odd := contentLength([]byte(tt.v)); n != tt.n || odd != tt.odd {
			t.Errorf("contentLength(%q) = %d, %v; want %d, %v", tt.v, n, odd, tt.n, tt.odd)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	tests := []struct {
		in   string
		from int
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\nrest", 0, 18},
		{"GET / HTTP/1.1\n\nrest", 0, 16},
		{"GET / HTTP/1.1\r\nA: b\r\n", 0, -1},
		{"GET / HTTP/1.1\r\nA: b\r\n\r", 0, -1},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\n", 20, 24},
	}
	for _, tt := range tests {
		if got := headEnd([]byte(tt.in), tt.from); got != tt.want {
			t.Errorf("headEnd(%q, %d) = %d, want %d", tt.in, tt.from, got, tt.want)
		}
	}
}

func TestTokenMasks(t *testing.T) {
	const tchars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for c := range 256 {
		if want := strings.IndexByte(tchars, byte(c)) >= 0; isTokenChar(byte(c)) != want {
			t.Errorf("isTokenChar(%#x) = %v, want %v", c, !want, want)
		}
	}
}

func TestRequestStart(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"POST /login HTTP/1.1\r\n", 0},
		{"\r\n\r\nPOST /login HTTP/1.1\r\n", 4},
		{"rest of a body\r\nGET /x HTTP/1.1\r\n", 16},
		{"ody=1GET /x HTTP/1.1\r\n", -1}, // not at a line start
		{"GET /a b c\r\nPOST /b HTTP/1.0\r\n", 12},
		{"POST /lo", 0}, // incomplete: judged on its start
		{"post /login HTTP/1.1\r\n", -1},
	}
	for _, tt := range tests {
		if got := requestStart([]byte(tt.in)); got != tt.want {
			t.Errorf("requestStart(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
