package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// requestSeeds are heads real clients send and heads real servers accept
// although RFC 9112 would not (README.md).
var requestSeeds = []string{
	"POST /login HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nu=a&p=b",
	"GET /authorize?client_id=x HTTP/1.1\r\nHost: a\r\nCookie: sid=1\r\n\r\n",
	"POST /token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=b\r\n0\r\n\r\n",
	"POST /login HTTP/1.7\r\nContent-Length: +3\r\n\r\na=b",
	"post http://h/login HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
	"POST  /login\tHTTP/01.1\r\r\nX: a\r\n  b\r\n\r\n",
	"GET /login?u=a\r\n\r\n",
	"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\nContent-Length: 4\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

var responseSeeds = []string{
	"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 302 Found\r\nLocation: /cb?code=1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.0 200\r\n\r\nbody",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1\t103\tEarly Hints\r\nLink: </a>\r\n\r\n",
}

func checkFields(t *testing.T, h exchange.Header) {
	t.Helper()
	for _, f := range h {
		for i := 0; i < len(f.Name); i++ {
			if c := f.Name[i]; (c < 0x21 && c != ' ') || c > 0x7e || c == ':' {
				t.Fatalf("accepted a field name with %#x", c)
			}
		}
		if f.Value != string(trimOWS([]byte(f.Value))) && bytes.IndexByte([]byte(f.Value), '\n') < 0 {
			t.Fatalf("field value %q not trimmed", f.Value)
		}
	}
}

func FuzzParseRequestHead(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := headEnd(b, 0); n >= 0 && (n > len(b) || b[n-1] != '\n') {
			t.Fatalf("headEnd = %d for %d bytes", n, len(b))
		}
		r, ok := parseRequest(b)
		if !ok {
			return
		}
		if !isToken([]byte(r.Method)) || r.Target == "" || bytes.ContainsAny([]byte(r.Target), " \t") {
			t.Fatalf("accepted a bad request line: %q %q %q", r.Method, r.Target, r.Proto)
		}
		if r.Proto != "" && r.Proto != "HTTP/0.9" && !validVersion([]byte(r.Proto)) {
			t.Fatalf("accepted version %q", r.Proto)
		}
		checkFields(t, r.Header)
		if r.ContentLength < -1 || (r.Chunked && r.ContentLength != -1) {
			t.Fatalf("framing: length %d chunked %v", r.ContentLength, r.Chunked)
		}
		// The framing read and the overflow reader see the same fields.
		if n := headEnd(b, 0); n >= 0 {
			h, _ := readRequestHead(b[:n], false, nil)
			o := newFraming()
			_, rest, _ := cutLine(b[:n])
			for {
				line, next, ok := cutLine(rest)
				if !ok || len(line) == 0 || o.line(line) {
					break
				}
				rest = next
			}
			if o.fields != h.f.fields || o.cl != h.f.cl || o.chunked != h.f.chunked || o.broken != h.f.broken {
				t.Fatalf("line by line %+v, in one pass %+v", o, h.f)
			}
		}
	})
}

func FuzzParseResponseHead(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseResponse(b)
		if !ok {
			return
		}
		if r.StatusCode < 100 || r.StatusCode > 999 || !validStatusProto(r.Proto) {
			t.Fatalf("accepted a bad status line: %q %d %q", r.Proto, r.StatusCode, r.Reason)
		}
		checkFields(t, r.Header)
		if r.ContentLength < -1 || (r.Chunked && r.ContentLength != -1) {
			t.Fatalf("framing: length %d chunked %v", r.ContentLength, r.Chunked)
		}
	})
}

func validStatusProto(p string) bool {
	rest, ok := bytes.CutPrefix([]byte(p), []byte("HTTP/"))
	major, minor, ok2 := bytes.Cut(rest, []byte{'.'})
	return ok && ok2 && isDigits(major, 10) && isDigits(minor, 10)
}

// streamFirstRequest feeds b to a parser as the start of a connection and
// returns the first request it queued.
func streamFirstRequest(b []byte) *exchange.Request {
	sink := &exchange.Sink{Limits: exchange.Limits{MaxRequestBody: 64, MaxPending: 8,
		MaxPendingBytes: 1 << 30, MaxTotalPendingBytes: 1 << 30}}
	q := exchange.NewQueue(sink, &exchange.ConnInfo{})
	c := New(Config{MaxHeadBytes: 1 << 20}, &q, &sink.Stats, &Scratch{})
	m := exchange.Meta{T: 1}
	c.Boundary(exchange.Ingress, m)
	c.Data(exchange.Ingress, 0, b, m)
	q.End(exchange.EndClosed, 0)
	if len(sink.Out) == 0 {
		return nil
	}
	return sink.Out[0].Request
}

// FuzzNetHTTPRequest is the differential target against net/http's
// request reader: whatever http.ReadRequest reads as an HTTP/1 request
// (what a Go server would go on to answer), the stream parser must read
// too, with the same method, target and body framing. The differences
// that remain on purpose are listed in README.md and skipped here.
func FuzzNetHTTPRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || req.ProtoMajor != 1 {
			return // a Go server answers it with an error and closes
		}
		r := streamFirstRequest(b)
		if r == nil {
			t.Fatalf("net/http reads %s %q %s; the decoder reads no request", req.Method, req.RequestURI, req.Proto)
		}
		if r.Method != req.Method || r.Target != req.RequestURI {
			t.Fatalf("net/http reads %s %q, the decoder %s %q", req.Method, req.RequestURI, r.Method, r.Target)
		}
		goChunked := len(req.TransferEncoding) > 0
		cl := r.ContentLength
		if cl < 0 && !r.Chunked {
			cl = 0
		}
		same := goChunked == r.Chunked && (goChunked || req.ContentLength == cl)
		// Where servers disagree the decoder ends the body no later than
		// net/http does (a chunked body may be cut by a length too).
		earlier := (goChunked && !r.Chunked) || (!goChunked && !r.Chunked && cl <= req.ContentLength) ||
			(!goChunked && r.Chunked && r.Ambiguous&exchange.AmbiguousCLTE != 0) // cut at that length
		if !same && (r.Ambiguous == 0 || !earlier) {
			t.Fatalf("net/http frames chunked=%v length=%d, the decoder chunked=%v length=%d (ambiguous %d)",
				goChunked, req.ContentLength, r.Chunked, r.ContentLength, r.Ambiguous)
		}
	})
}

// TestFuzzCorpusFiles makes sure the committed corpus directories exist,
// so that a lost corpus is noticed rather than silently not run.
func TestFuzzCorpusFiles(t *testing.T) {
	for _, name := range []string{"FuzzParseRequestHead", "FuzzParseResponseHead", "FuzzNetHTTPRequest"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("no committed corpus for %s: %v", name, err)
		}
	}
}
