package decoder

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/test/testutil"
)

// A browser-like form login and its response, one syscall each.
var (
	benchLoginRequest = []byte("POST /login HTTP/1.1\r\n" +
		"Host: app.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Content-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: 45\r\n" +
		"Origin: https://app.example.com\r\n" +
		"Connection: keep-alive\r\n" +
		"Referer: https://app.example.com/login\r\n" +
		"Cookie: csrftoken=Yk3nQb8dXw; _ga=GA1.2.3.4\r\n" +
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
		"\r\n" +
		"username=alice%40example.com&password=hunter2")
	benchLoginResponse = []byte("HTTP/1.1 302 Found\r\n" +
		"Server: nginx\r\n" +
		"Date: Sat, 28 Nov 2026 06:46:48 GMT\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Content-Length: 0\r\n" +
		"Connection: keep-alive\r\n" +
		"Location: /dashboard\r\n" +
		"Set-Cookie: sessionid=0f1e2d3c4b5a69788796a5b4c3d2e1f0; HttpOnly; Secure; SameSite=Lax\r\n" +
		"Set-Cookie: csrftoken=Zz9y8x7w6v; Secure\r\n" +
		"\r\n")
)

// benchConn is the benchmarks' keep-alive connection, socket sock.
func benchConn(sock uint64) ConnInfo {
	return ConnInfo{
		Key:   ConnKey{Sock: sock, Gen: 1},
		Peer:  netip.MustParseAddrPort("10.0.0.1:40000"),
		Local: netip.MustParseAddrPort("10.0.0.2:8080"),
	}
}

// BenchmarkFeedLoginExchange feeds a browser-like form login and its
// response, one syscall each, on a keep-alive connection; allocs/op are
// per exchange. The exchanges are not released: a caller that keeps them.
func BenchmarkFeedLoginExchange(b *testing.B) {
	req, resp := benchLoginRequest, benchLoginResponse
	d := New(Config{})
	info := benchConn(0xffff8881234)
	var (
		seq     uint32
		in, out uint64
		t       uint64
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	for b.Loop() {
		t += 1000
		d.Feed(Chunk{Conn: info, Dir: Ingress, Seq: seq, Offset: in, Time: t, Len: uint32(len(req)), Data: req})
		t += 1000
		if exs := d.Feed(Chunk{Conn: info, Dir: Egress, Seq: seq, Offset: out, Time: t, Len: uint32(len(resp)), Data: resp}); len(exs) != 1 {
			b.Fatalf("got %d exchanges, want 1", len(exs))
		}
		d.Verdicts() // the pipeline drains them after every batch
		seq++
		in += uint64(len(req))
		out += uint64(len(resp))
	}
}

// BenchmarkFeedUninteresting feeds a POST to a route nobody watches (the
// kernel cannot prove a request with a body non-auth, so these reach user
// space): a placeholder only, no exchange.
func BenchmarkFeedUninteresting(b *testing.B) {
	req := []byte("POST /api/v1/items HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: curl/8.5.0\r\n" +
		"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"widget\",\"qty\":12}\n")
	resp := []byte("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"id\":7}\n")
	d := New(Config{Interesting: func(method, target string) bool { return strings.HasPrefix(target, "/login") }})
	info := ConnInfo{Key: ConnKey{Sock: 0xffff8881235, Gen: 1}}
	var (
		seq     uint32
		in, out uint64
		t       uint64
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	for b.Loop() {
		t += 1000
		d.Feed(Chunk{Conn: info, Dir: Ingress, Seq: seq, Offset: in, Time: t, Len: uint32(len(req)), Data: req})
		t += 1000
		if exs := d.Feed(Chunk{Conn: info, Dir: Egress, Seq: seq, Offset: out, Time: t, Len: uint32(len(resp)), Data: resp}); len(exs) != 0 {
			b.Fatalf("got %d exchanges, want 0", len(exs))
		}
		d.Verdicts()
		seq++
		in += uint64(len(req))
		out += uint64(len(resp))
	}
	if s := d.Stats(); s.Uninteresting != uint64(b.N) {
		b.Fatalf("uninteresting %d, want %d", s.Uninteresting, b.N)
	}
}

// BenchmarkFeedPipelinedLogins feeds 500 pipelined logins in 16 KiB
// slices and their answers one write each; ns/op and allocs/op are per
// burst of 500.
func BenchmarkFeedPipelinedLogins(b *testing.B) {
	req, resps, _ := loginBurst(500)
	b.ReportAllocs()
	info := ConnInfo{Key: ConnKey{Sock: 1, Gen: 1}}
	for b.Loop() {
		d := New(Config{})
		var seq uint32
		for i := 0; i < len(req); i += 16384 {
			data := req[i:min(i+16384, len(req))]
			d.Feed(Chunk{Conn: info, Dir: Ingress, Seq: seq, Offset: uint64(i), Time: 1, Len: uint32(len(data)), Data: data})
			seq++
		}
		n, off := 0, uint64(0)
		for i, r := range resps {
			n += len(d.Feed(Chunk{Conn: info, Dir: Egress, Seq: uint32(i), Offset: off, Time: 2, Len: uint32(len(r)), Data: r}))
			off += uint64(len(r))
		}
		if n != 500 {
			b.Fatalf("%d exchanges", n)
		}
	}
}

// BenchmarkStageDecoder is the decoder stage of the agent's path (`make
// bench-stages`): chunks → exchange, one op a form login and its response
// on a keep-alive connection, each chunk's results taken and released as
// the pipeline does (Opened, Verdicts, Release). cpu-ns/op is the
// process's CPU time per exchange.
func BenchmarkStageDecoder(b *testing.B) {
	req, resp := benchLoginRequest, benchLoginResponse
	d := New(Config{})
	info := benchConn(0xffff8881236)
	var (
		seq     uint32
		in, out uint64
		t       uint64
	)
	feed := func(ch Chunk) int {
		n := len(d.Feed(ch))
		d.Opened()
		d.Closed()
		d.Verdicts()
		d.Release()
		return n
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	cpu0 := testutil.ProcessCPU(b)
	for b.Loop() {
		t += 1000
		feed(Chunk{Conn: info, Dir: Ingress, Seq: seq, Offset: in, Time: t, Len: uint32(len(req)), Data: req})
		t += 1000
		if n := feed(Chunk{Conn: info, Dir: Egress, Seq: seq, Offset: out, Time: t, Len: uint32(len(resp)), Data: resp}); n != 1 {
			b.Fatalf("got %d exchanges, want 1", n)
		}
		seq++
		in += uint64(len(req))
		out += uint64(len(resp))
	}
	b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
