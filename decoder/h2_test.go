package decoder

import (
	"bytes"
	"testing"

	"github.com/authprobe/authprobe/decoder/http2"
	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Frames encodes frames with x/net's framer and HPACK encoder.
type h2Frames struct {
	buf bytes.Buffer
	fr  *xhttp2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func newH2Frames() *h2Frames {
	f := &h2Frames{}
	f.fr = xhttp2.NewFramer(&f.buf, nil)
	f.enc = hpack.NewEncoder(&f.hb)
	return f
}

func (f *h2Frames) headers(tb testing.TB, id uint32, end bool, kv ...string) {
	tb.Helper()
	f.hb.Reset()
	for i := 0; i < len(kv); i += 2 {
		if err := f.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: f.hb.Bytes(), EndHeaders: true, EndStream: end}); err != nil {
		tb.Fatal(err)
	}
}

func (f *h2Frames) take() []byte {
	b := append([]byte(nil), f.buf.Bytes()...)
	f.buf.Reset()
	return b
}

// TestHTTP2Connection: a connection whose client starts with the preface
// is decoded as HTTP/2: two logins on streams 1 and 3, answered out of
// order, become two exchanges shaped like HTTP/1's (Host from
// :authority, headers, body), with the process that read them.
func TestHTTP2Connection(t *testing.T) {
	cli, srv := newH2Frames(), newH2Frames()
	cli.buf.WriteString(http2.Preface)
	if err := cli.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	cli.headers(t, 1, false, ":method", "POST", ":scheme", "https", ":authority", "example", ":path", "/login",
		"content-type", "application/x-www-form-urlencoded", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err := cli.fr.WriteData(1, true, []byte("username=alice&password=x")); err != nil {
		t.Fatal(err)
	}
	cli.headers(t, 3, true, ":method", "GET", ":scheme", "https", ":authority", "example", ":path", "/health")
	if err := srv.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	srv.headers(t, 3, true, ":status", "200")
	srv.headers(t, 1, false, ":status", "401", "content-type", "application/json")
	if err := srv.fr.WriteData(1, true, []byte(`{"error":"invalid_credentials"}`)); err != nil {
		t.Fatal(err)
	}

	d := New(Config{Interesting: func(method, target string) bool { return target == "/login" }})
	conn := ConnInfo{Key: ConnKey{Sock: 1, Gen: 1}, TLS: true}
	in, out := cli.take(), srv.take()
	var got []Exchange
	got = append(got, d.Feed(Chunk{Conn: conn, PID: 7, TID: 8, Task: 8, Dir: Ingress, Seq: 0, Offset: 0, Time: 10, Len: uint32(len(in)), Data: in, Flags: Boundary | Episode})...)
	got = append(got, d.Feed(Chunk{Conn: conn, PID: 7, TID: 8, Task: 8, Dir: Egress, Seq: 0, Offset: 0, Time: 20, Len: uint32(len(out)), Data: out})...)
	if len(got) != 1 {
		t.Fatalf("want the login exchange only (/health is not interesting), got %d: %+v", len(got), got)
	}
	ex := got[0]
	if ex.Request.Method != "POST" || ex.Request.Target != "/login" || ex.Request.Proto != "HTTP/2" {
		t.Errorf("request %s %s %s", ex.Request.Method, ex.Request.Target, ex.Request.Proto)
	}
	if h := ex.Request.Header; len(h) < 3 || h[0].Name != "Host" || h[0].Value != "example" {
		t.Errorf("header %v: want Host first", h)
	}
	if string(ex.Request.Body) != "username=alice&password=x" {
		t.Errorf("body %q", ex.Request.Body)
	}
	if ex.Response == nil || ex.Response.StatusCode != 401 || ex.End != EndResponse {
		t.Fatalf("response %+v end %v", ex.Response, ex.End)
	}
	if ex.PID != 7 || ex.TID != 8 || !ex.Conn.TLS {
		t.Errorf("pid %d tid %d tls %v", ex.PID, ex.TID, ex.Conn.TLS)
	}
	if ex.RequestStart != 10 || ex.ResponseEnd != 20 {
		t.Errorf("times %d..%d", ex.RequestStart, ex.ResponseEnd)
	}
	if vs := d.Verdicts(); len(vs) != 0 {
		t.Errorf("verdicts %+v: an HTTP/2 connection is never resumed nor turned off", vs)
	}
	// Both streams were announced in flight when their heads were read,
	// as HTTP/1 requests are: the login with its exchange's ID and
	// request, /health as a placeholder that ended with its response.
	opened := d.Opened()
	if len(opened) != 2 {
		t.Fatalf("opened %+v: want both streams", opened)
	}
	if o := opened[0]; o.ID == 0 || o.ID != ex.ID || o.Request == nil || o.Request.Target != "/login" ||
		o.PID != 7 || o.Task != 8 || o.Start != 10 {
		t.Errorf("login opened %+v, exchange ID %d", o, ex.ID)
	}
	if o := opened[1]; o.ID != 0 || o.Request != nil || o.PID != 7 || o.Task != 8 {
		t.Errorf("/health opened %+v: want a placeholder", o)
	}
	if cl := d.Closed(); len(cl) != 1 || cl[0].PID != 7 || cl[0].Task != 8 || cl[0].T != 20 {
		t.Errorf("closed %+v: want the /health placeholder ended at 20", cl)
	}
}

// TestH2CUpgrade: after an HTTP/1.1 upgrade request answered 101, the
// client's HTTP/2 is decoded: a login on stream 3 becomes an exchange
// (an h2c upgrade cannot hide a login); a WebSocket after its 101 turns
// the connection off.
func TestH2CUpgrade(t *testing.T) {
	const (
		upgrade  = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
		switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	)
	cli, srv := newH2Frames(), newH2Frames()
	cli.buf.WriteString(http2.Preface)
	if err := cli.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	cli.headers(t, 3, true, ":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/login")
	if err := srv.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	srv.headers(t, 1, true, ":status", "200")
	srv.headers(t, 3, true, ":status", "401")
	h2in, h2out := cli.take(), srv.take()

	d := New(Config{Interesting: func(method, target string) bool { return target == "/login" }})
	conn := ConnInfo{Key: ConnKey{Sock: 2, Gen: 1}}
	var got []Exchange
	feed := func(dir Direction, seq uint32, off uint64, b []byte, flags ChunkFlags) {
		got = append(got, d.Feed(Chunk{Conn: conn, PID: 7, TID: 8, Task: 8, Dir: dir, Seq: seq, Offset: off, Time: uint64(100 + seq), Len: uint32(len(b)), Data: b, Flags: flags})...)
	}
	feed(Ingress, 0, 0, []byte(upgrade), Boundary|Episode)
	feed(Egress, 0, 0, []byte(switched), 0)
	feed(Ingress, 1, uint64(len(upgrade)), h2in, 0)
	feed(Egress, 1, uint64(len(switched)), h2out, 0)
	if len(got) != 1 || got[0].Request.Target != "/login" || got[0].Response == nil || got[0].Response.StatusCode != 401 {
		t.Fatalf("want the h2c login answered 401, got %+v", got)
	}
	for _, v := range d.Verdicts() {
		if v.Kind&VerdictOff != 0 {
			t.Errorf("verdict off on an h2c connection")
		}
	}

	ws := ConnInfo{Key: ConnKey{Sock: 3, Gen: 1}}
	wsUp := "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	d.Feed(Chunk{Conn: ws, Dir: Ingress, Len: uint32(len(wsUp)), Data: []byte(wsUp), Flags: Boundary | Episode})
	d.Feed(Chunk{Conn: ws, Dir: Egress, Len: uint32(len(switched)), Data: []byte(switched)})
	frame := []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}
	d.Feed(Chunk{Conn: ws, Dir: Ingress, Seq: 1, Offset: uint64(len(wsUp)), Len: uint32(len(frame)), Data: frame})
	off := false
	for _, v := range d.Verdicts() {
		off = off || (v.Key == ws.Key && v.Kind&VerdictOff != 0)
	}
	if !off {
		t.Error("a WebSocket after its 101 is not turned off")
	}
}
