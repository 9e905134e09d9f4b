package http1

import (
	"bytes"
	"testing"

	"github.com/authprobe/authprobe/decoder/exchange"
)

func mustConn(tb testing.TB) (*Conn, *exchange.Sink) {
	tb.Helper()
	sink := &exchange.Sink{Limits: exchange.Limits{MaxRequestBody: 64, MaxResponseBody: 64, MaxPending: 8,
		MaxPendingBytes: 1 << 20, MaxTotalPendingBytes: 1 << 20}}
	q := exchange.NewQueue(sink, &exchange.ConnInfo{})
	c := New(Config{MaxHeadBytes: 1024}, &q, &sink.Stats, &Scratch{})
	tb.Cleanup(func() { c.Close(exchange.Meta{}) })
	c.Boundary(exchange.Ingress, exchange.Meta{})
	c.Boundary(exchange.Egress, exchange.Meta{})
	return &c, sink
}

// TestHeadBufferWiped: a head split across chunks is buffered, and the
// buffer must not linger in memory after parsing: it holds credentials.
func TestHeadBufferWiped(t *testing.T) {
	c, sink := mustConn(t)
	first := "POST /login HTTP/1.1\r\nAuthorization: Basic c2VjcmV0"
	c.Data(exchange.Ingress, 0, []byte(first), exchange.Meta{T: 1})
	buf := c.in.head[:cap(c.in.head)]
	c.Data(exchange.Ingress, uint64(len(first)), []byte("\r\nContent-Length: 0\r\n\r\n"), exchange.Meta{T: 2})
	if i := bytes.IndexFunc(buf, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("head buffer not wiped at %d", i)
	}
	c.Data(exchange.Egress, 0, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), exchange.Meta{T: 3})
	if len(sink.Out) != 1 || sink.Out[0].Request.Header.Get("Authorization") != "Basic c2VjcmV0" {
		t.Fatalf("got %+v", sink.Out)
	}
}

// TestOwnCopyOfHead: an exchange's strings survive the chunk they came
// from being overwritten.
func TestOwnCopyOfHead(t *testing.T) {
	c, sink := mustConn(t)
	chunk := []byte("POST /login HTTP/1.1\r\nX-User: alice\r\nContent-Length: 3\r\n\r\na=b")
	c.Data(exchange.Ingress, 0, chunk, exchange.Meta{T: 1})
	clear(chunk)
	c.Data(exchange.Egress, 0, []byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"), exchange.Meta{T: 2})
	if len(sink.Out) != 1 {
		t.Fatalf("got %d exchanges", len(sink.Out))
	}
	r := sink.Out[0].Request
	if r.Method != "POST" || r.Target != "/login" || r.Header.Get("X-User") != "alice" || string(r.Body) != "a=b" {
		t.Fatalf("got %+v", r)
	}
}

// TestCutHeadKeepsItsReader: a request head cut short by the close (the
// rest of it never came) still belongs to the process that read its
// first bytes, not to the close, which names no process.
func TestCutHeadKeepsItsReader(t *testing.T) {
	c, sink := mustConn(t)
	c.Data(exchange.Ingress, 0, []byte("POST /login HTTP/1"), exchange.Meta{T: 1, PID: 248, TID: 250})
	c.Close(exchange.Meta{T: 9})
	if len(sink.Out) != 1 {
		t.Fatalf("got %d exchanges, want the cut request", len(sink.Out))
	}
	ex := sink.Out[0]
	if ex.PID != 248 || ex.TID != 250 || ex.End != exchange.EndClosed || ex.Request.Target != "/login" {
		t.Fatalf("got PID %d TID %d end %v target %q", ex.PID, ex.TID, ex.End, ex.Request.Target)
	}
}
