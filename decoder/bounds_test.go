package decoder

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// feeder builds chunks for one connection with per-direction Seq and
// Offset, and increasing Time.
type feeder struct {
	d    *Decoder
	key  ConnKey
	seq  [2]uint32
	off  [2]uint64
	time uint64
}

func mustFeeder(tb testing.TB, d *Decoder, sock uint64) *feeder {
	tb.Helper()
	f := &feeder{d: d, key: ConnKey{Sock: sock, Gen: 1}}
	tb.Cleanup(func() { d.Close(f.key, f.time) })
	return f
}

func (f *feeder) feed(dir Direction, data string) []Exchange {
	i := dir - 1
	f.time += 10
	ch := Chunk{Conn: ConnInfo{Key: f.key}, Dir: dir, Seq: f.seq[i], Offset: f.off[i], Time: f.time,
		Len: uint32(len(data)), Data: []byte(data)}
	f.seq[i]++
	f.off[i] += uint64(len(data))
	return f.d.Feed(ch)
}

func summaries(exs []Exchange) []string {
	var s []string
	for _, ex := range exs {
		s = append(s, summary(ex))
	}
	return s
}

func TestEvictLeastRecentlyUsed(t *testing.T) {
	d := New(Config{MaxConnections: 2})
	a, b, c := mustFeeder(t, d, 1), mustFeeder(t, d, 2), mustFeeder(t, d, 3)
	a.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	b.feed(Ingress, "GET /b HTTP/1.1\r\n\r\n")
	b.feed(Ingress, "GET /b2 HTTP/1.1\r\nHost: partial") // a head under way: lost when evicted
	a.feed(Ingress, "GET /a2 HTTP/1.1\r\n\r\n")          // a is now the most recent
	got := c.feed(Ingress, "GET /c HTTP/1.1\r\n\r\n")
	if len(got) != 1 || got[0].Request.Target != "/b" || got[0].End != EndLost || !got[0].Lost {
		t.Fatalf("evicted %v, want /b with EndLost", summaries(got))
	}
	if s := d.Stats(); s.Evicted != 1 || s.LostAttempts[LossEvicted] != 1 || len(d.conns) != 2 {
		t.Fatalf("evicted %d, lost %d, %d connections; want 1, 1, 2", s.Evicted, s.LostAttempts[LossEvicted], len(d.conns))
	}
}

// TestHeadLimit: a head longer than MaxHeadBytes keeps its first lines, is
// never buffered beyond the limit, and its framing is still followed.
func TestHeadLimit(t *testing.T) {
	d := New(Config{MaxHeadBytes: 256})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "POST /login HTTP/1.1\r\nHost: a\r\n")
	for range 20 {
		f.feed(Ingress, "X-Filler: "+strings.Repeat("a", 50)+"\r\n")
		if n := d.conns[1].h1.HeldHead(); n > 256 {
			t.Fatalf("buffered %d head bytes, limit 256", n)
		}
	}
	f.feed(Ingress, "Content-Length: 3\r\n\r\na=b")
	got := f.feed(Egress, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 {
		t.Fatalf("got %v", summaries(got))
	}
	r := got[0].Request
	if r.Target != "/login" || !r.HeadTruncated || string(r.Body) != "a=b" || r.Header.Get("Host") != "a" {
		t.Fatalf("got %s with header %v", summary(got[0]), r.Header)
	}
	if s := d.Stats(); s.ParseErrors != 0 {
		t.Fatalf("stats %s", formatStats(s))
	}
}

// TestPipelineBounds: requests beyond MaxPending or MaxPendingBytes are
// counted lost one by one and keep their place, so that every response
// pairs with its own request.
func TestPipelineBounds(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"count", Config{MaxPending: 3}},
		{"bytes", Config{MaxPendingBytes: 3*(exchangeCost()+40) + 10}},
		{"total", Config{MaxTotalPendingBytes: 3*(exchangeCost()+40) + 10}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := New(tt.cfg)
			f := mustFeeder(t, d, 1)
			var burst, answers strings.Builder
			for i := range 5 {
				fmt.Fprintf(&burst, "GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
				fmt.Fprintf(&answers, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", 200+i)
			}
			f.feed(Ingress, burst.String())
			got := f.feed(Egress, answers.String())
			want := []string{"/0 200", "/1 201", "/2 202"}
			var have []string
			for _, ex := range got {
				have = append(have, fmt.Sprintf("%s %d", ex.Request.Target, ex.Response.StatusCode))
			}
			if strings.Join(have, ",") != strings.Join(want, ",") {
				t.Fatalf("got %v, want %v", have, want)
			}
			if s := d.Stats(); s.LostAttempts[LossQueueFull] != 2 || s.Orphans != 0 {
				t.Fatalf("stats %s", formatStats(s))
			}
		})
	}
}

// exchangeCost is what one tracked request holds beyond its head and body.
func exchangeCost() int {
	q := exchange.NewQueue(&exchange.Sink{Limits: exchange.Limits{MaxPending: 1, MaxPendingBytes: 1 << 20, MaxTotalPendingBytes: 1 << 20}}, &ConnInfo{})
	q.Request(exchange.RequestInfo{})
	return q.Bytes()
}

func TestDuplicateAndStaleSeqIgnored(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	// Replay seq 0: must not make a second request.
	f.seq[0]--
	f.off[0] -= 19
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n")
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Lost || d.Stats().SeqGaps != 0 || d.Stats().LateChunks != 1 {
		t.Fatalf("got %v, stats %s", summaries(got), formatStats(d.Stats()))
	}
	if n := d.conns[1].queue.Waiting(); n != 0 {
		t.Fatalf("%d requests left waiting", n)
	}
}

func TestSeqWraps(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	f.seq = [2]uint32{^uint32(0) - 1, ^uint32(0)}
	f.feed(Ingress, "GET /a HTTP/1.1\r\n\r\n") // seq max-1
	f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	f.feed(Ingress, "GET /b HTTP/1.1\r\n\r\n") // seq max
	f.feed(Ingress, "GET /c HTTP/1.1\r\n\r\n") // seq 0
	f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Request.Target != "/c" || got[0].Lost || d.Stats().SeqGaps != 0 {
		t.Fatalf("got %v, stats %s", summaries(got), formatStats(d.Stats()))
	}
}

// TestHeldChunkWiped checks that the copy of a chunk held for reordering
// is zeroed once it was taken: it may hold credentials.
func TestHeldChunkWiped(t *testing.T) {
	d := New(Config{})
	f := mustFeeder(t, d, 1)
	first, second := "POST /login HTTP/1.1\r\nAuthorization: Basic c2Vj", "cmV0\r\nContent-Length: 0\r\n\r\n"
	d.Feed(Chunk{Conn: ConnInfo{Key: f.key}, Dir: Ingress, Seq: 1, Offset: uint64(len(first)), Time: 20,
		Len: uint32(len(second)), Data: []byte(second)})
	held := d.conns[1].dirs[0].held[0].Data
	d.Feed(Chunk{Conn: ConnInfo{Key: f.key}, Dir: Ingress, Seq: 0, Time: 10, Len: uint32(len(first)), Data: []byte(first)})
	if !bytes.Equal(held, make([]byte, len(held))) {
		t.Fatalf("held chunk not wiped: %q", held)
	}
	got := f.feed(Egress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	if len(got) != 1 || got[0].Request.Header.Get("Authorization") != "Basic c2VjcmV0" {
		t.Fatalf("got %v", summaries(got))
	}
}

func TestAppendSecretWipesOldArray(t *testing.T) {
	old := append(make([]byte, 0, 4), "abcd"...)
	grown := exchange.AppendSecret(old, []byte("efgh"), 100)
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
		MaxHeadBytes: 16384, ResponseTimeout: 30_000_000_000, MaxPending: 1024,
		MaxPendingBytes: 4 << 20, MaxTotalPendingBytes: 32 << 20, ReorderWindow: 8, ReorderBytes: 64 << 10,
		HoldIdle: 1_000_000_000, HoldSkipped: 8}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Fatalf("defaults %+v, want %+v", cfg, want)
	}
	if cfg := New(Config{MaxRequestBody: -1}).Config(); cfg.MaxRequestBody != 0 {
		t.Fatalf("negative body limit became %d, want 0", cfg.MaxRequestBody)
	}
}
