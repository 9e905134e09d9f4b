package decoder

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// feeder builds chunks for one connection with increasing Seq and Time.
type feeder struct {
	d    *Decoder
	key  ConnKey
	seq  uint32
	time uint64
}

func mustFeeder(tb testing.TB, d *Decoder, fd int32) *feeder {
	tb.Helper()
	f := &feeder{d: d, key: ConnKey{PID: 42, FD: fd, Gen: 1}}
	tb.Cleanup(func() { d.Close(f.key, f.time) })
	return f
}

func (f *feeder) feed(dir Direction, data string) []Exchange {
	f.seq++
	f.time += 10
	return f.d.Feed(Chunk{Conn: ConnInfo{Key: f.key}, Dir: dir, Seq: f.seq, Time: f.time,
		Len: uint32(len(data)), Data: []byte(data)})
}

func TestEvictLeastRecentlyUsed(t *testing.T) {
	d := New(Config{MaxConnections: 2})
	a, b, c := mustFeeder(t, d, 1), mustFeeder(t, d, 2), mustFeeder(t, d, 3)
	a.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	b.feed(Ingress, "GET /b HTTP/1.1\r\n\r\n")
	a.feed(Ingress, "GET /a2 HTTP/1.1\r\n\r\n") // a is now the most recent
	got := c.feed(Ingress, "GET /c HTTP/1.1\r\n\r\n")
	if len(got) != 1 || got[0].Request.Target != "/b" || got[0].End != EndLost {
		t.Fatalf("evicted %v, want /b with EndLost", summaries(got))
	}
	if s := d.Stats(); s.Evicted != 1 || len(d.conns) != 2 {
		t.Fatalf("evicted %d, %d connections; want 1, 2", s.Evicted, len(d.conns))
	}
}

func TestHeadLimit(t *testing.T) {
	d := New(Config{MaxHeadBytes: 256})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "GET / HTTP/1.1\r\n")
	for range 20 {
		f.feed(Ingress, "X-Filler: "+strings.Repeat("a", 50)+"\r\n")
		if n := len(d.conns[connID{42, 1}].in.head); n > 256 {
			t.Fatalf("buffered %d head bytes, limit 256", n)
		}
	}
	if d.Stats().ParseErrors != 1 {
		t.Fatalf("ParseErrors = %d, want 1", d.Stats().ParseErrors)
	}
	// The next request line resynchronises.
	f.feed(Ingress, "GET /ok HTTP/1.1\r\n\r\n")
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Request.Target != "/ok" {
		t.Fatalf("got %v, want /ok", summaries(got))
	}
}

func TestPipelineDepthBounded(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	var dropped []Exchange
	for i := range maxPending + 3 {
		dropped = append(dropped, f.feed(Ingress, fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i))...)
	}
	if len(dropped) != 3 || dropped[0].Request.Target != "/0" || dropped[0].End != EndLost {
		t.Fatalf("dropped %v, want /0../2 with EndLost", summaries(dropped))
	}
	if n := len(d.conns[connID{42, 1}].queue); n != maxPending {
		t.Fatalf("queue holds %d, want %d", n, maxPending)
	}
}

func TestUpgradeStopsDecoding(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	got := f.feed(Egress, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
	if len(got) != 1 || got[0].Response.StatusCode != 101 {
		t.Fatalf("got %v, want the 101 exchange", summaries(got))
	}
	f.feed(Ingress, "GET /not-http-anymore HTTP/1.1\r\n\r\n")
	if got := f.feed(Egress, "HTTP/1.1 200 OK\r\n\r\n"); len(got) != 0 {
		t.Fatalf("decoded %v after an upgrade", summaries(got))
	}
	if s := d.Stats(); s.ParseErrors != 0 || s.Orphans != 0 {
		t.Fatalf("stats %+v after an upgrade", s)
	}
}

func TestDuplicateAndStaleSeqIgnored(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	// Replay seq 1: must not make a second request.
	f.seq--
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Lost || d.Stats().SeqGaps != 0 {
		t.Fatalf("got %v, stats %+v", summaries(got), d.Stats())
	}
	if n := len(d.conns[connID{42, 1}].queue); n != 0 {
		t.Fatalf("%d requests left waiting", n)
	}
}

func TestSeqWraps(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.seq = ^uint32(0) - 1
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n") // seq max
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Lost || d.Stats().SeqGaps != 0 {
		t.Fatalf("got %v, stats %+v", summaries(got), d.Stats())
	}
}

// TestCapturedBytesWiped checks that buffers the decoder drops are zeroed:
// a head split across chunks is buffered, and must not linger in memory
// after parsing.
func TestCapturedBytesWiped(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "POST /login HTTP/1.1\r\nAuthorization: Basic c2VjcmV0")
	buf := d.conns[connID{42, 1}].in.head
	buf = buf[:cap(buf)]
	f.feed(Ingress, "\r\nContent-Length: 0\r\n\r\n")
	if i := bytes.IndexFunc(buf, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("head buffer not wiped at %d", i)
	}
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Request.Header.Get("Authorization") != "Basic c2VjcmV0" {
		t.Fatalf("got %v", summaries(got))
	}
}

func TestAppendSecretWipesOldArray(t *testing.T) {
	old := append(make([]byte, 0, 4), "abcd"...)
	grown := appendSecret(old, []byte("efgh"), 100)
	if string(grown) != "abcdefgh" {
		t.Fatalf("grown = %q", grown)
	}
	if !bytes.Equal(old, make([]byte, 4)) {
		t.Fatalf("old array not wiped: %q", old)
	}
}

func TestNewDefaults(t *testing.T) {
	cfg := New(Config{}).Config()
	want := Config{MaxRequestBody: 4096, MaxResponseBody: 1024, MaxConnections: 65536,
		MaxHeadBytes: 16384, ResponseTimeout: 30_000_000_000}
	if cfg != want {
		t.Fatalf("defaults %+v, want %+v", cfg, want)
	}
	if cfg := New(Config{MaxRequestBody: -1}).Config(); cfg.MaxRequestBody != 0 {
		t.Fatalf("negative body limit became %d, want 0", cfg.MaxRequestBody)
	}
}

func summaries(exs []Exchange) []string {
	var s []string
	for _, ex := range exs {
		s = append(s, summary(ex))
	}
	return s
}
