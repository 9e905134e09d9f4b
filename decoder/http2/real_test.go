package http2

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// record is one read of the recording proxy.
type record struct {
	Conn int // which proxied connection
	Dir  Direction
	Data []byte
}

// recorder is a loopback TCP proxy that records every byte each way, in
// the order it forwarded them.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	recs []record
	wg   sync.WaitGroup
}

func mustRecorder(tb testing.TB, target string) *recorder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &recorder{ln: ln}
	tb.Cleanup(func() { ln.Close(); r.wg.Wait() })
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.wg.Add(2)
			go r.pipe(n, c, s, Ingress)
			go r.pipe(n, s, c, Egress)
		}
	}()
	return r
}

func (r *recorder) pipe(conn int, from, to net.Conn, dir Direction) {
	defer r.wg.Done()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.recs = append(r.recs, record{conn, dir, append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			to.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// conns returns the records of each connection, in accept order.
func (r *recorder) conns() [][]record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]record
	for _, rec := range r.recs {
		for len(out) <= rec.Conn {
			out = append(out, nil)
		}
		out[rec.Conn] = append(out[rec.Conn], rec)
	}
	return out
}

// mustH2CServer runs a Go net/http server speaking HTTP/2 without TLS
// (prior knowledge) with a login handler that answers with a trailer, an
// early hint and a JSON body.
func mustH2CServer(tb testing.TB) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		extras := r.Header.Get("X-Extras") != ""
		if extras {
			// curl 7.88 fails on a 103 over HTTP/2; the Go client asks.
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		if extras {
			w.Header().Set("Trailer", "X-Auth-Result")
		}
		w.Header().Set("Content-Type", "application/json")
		if string(body) == "username=alice&password=correct" {
			w.Header().Set("Set-Cookie", "session=s3cr3t; HttpOnly")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, `{"ok":true}`)
			w.Header().Set("X-Auth-Result", "success")
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_credentials"}`)
		w.Header().Set("X-Auth-Result", "failure")
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// mustCurlTraffic sends logins with curl --http2-prior-knowledge through
// the recorder, one connection each (curl 7.88 cannot reuse a
// prior-knowledge connection), and returns each connection's bytes.
func mustCurlTraffic(tb testing.TB) [][]record {
	tb.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		tb.Skip("curl not installed")
	}
	rec := mustRecorder(tb, mustH2CServer(tb))
	url := "http://" + rec.ln.Addr().String()
	for _, args := range [][]string{
		{"-d", "username=alice&password=wrong", url + "/login"},
		{"-d", "username=alice&password=correct", url + "/login"},
		{url + "/health"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--http2-prior-knowledge",
			"-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, args...)...).CombinedOutput()
		cancel()
		if err != nil {
			tb.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}
	return waitRecords(tb, rec)
}

// waitRecords waits for the proxy to see the connection close.
func waitRecords(tb testing.TB, rec *recorder) [][]record {
	tb.Helper()
	rec.ln.Close()
	done := make(chan struct{})
	go func() { rec.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		tb.Fatal("proxied connection did not close")
	}
	return rec.conns()
}

// mustGoClientTraffic sends logins with Go's HTTP/2 client (another HPACK
// encoder), with a request trailer, on one connection.
func mustGoClientTraffic(tb testing.TB) [][]record {
	tb.Helper()
	rec := mustRecorder(tb, mustH2CServer(tb))
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + rec.ln.Addr().String()
	for _, pw := range []string{"wrong", "correct", "wrong"} {
		req, err := http.NewRequest("POST", url+"/login", strings.NewReader("username=alice&password="+pw))
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer abc.def.ghi")
		req.Header.Set("X-Extras", "1")
		req.Trailer = http.Header{"X-Checksum": {"c0ffee"}}
		resp, err := client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	return waitRecords(tb, rec)
}

// feed runs records through a fresh Conn, splitting each record into
// pieces of at most step bytes (0: whole).
func feed(cfg Config, recs []record, step int) ([]*Exchange, Stats) {
	c := NewConn(cfg)
	var out []*Exchange
	for i, r := range recs {
		d := r.Data
		for len(d) > 0 {
			n := len(d)
			if step > 0 && n > step {
				n = step
			}
			out = append(out, c.Feed(r.Dir, d[:n], uint64(i+1))...)
			d = d[n:]
		}
	}
	out = append(out, c.Close()...)
	return out, c.Stats()
}

func header(h []HeaderField, name string) string {
	for _, f := range h {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

func byStream(exs []*Exchange) map[uint32]*Exchange {
	m := map[uint32]*Exchange{}
	for _, e := range exs {
		m[e.StreamID] = e
	}
	return m
}

func TestCurlPriorKnowledge(t *testing.T) {
	conns := mustCurlTraffic(t)
	want := []struct {
		method, path, body string
		status             int
		respBody           string
	}{
		{"POST", "/login", "username=alice&password=wrong", 401, `{"error":"invalid_credentials"}`},
		{"POST", "/login", "username=alice&password=correct", 200, `{"ok":true}`},
		{"GET", "/health", "", 200, "ok"},
	}
	if len(conns) != len(want) {
		t.Fatalf("%d connections, want %d", len(conns), len(want))
	}
	for i, w := range want {
		recs := conns[i]
		exs, st := feed(Config{}, recs, 0)
		t.Logf("connection %d: %d records, stats %+v", i, len(recs), st)
		if len(exs) != 1 {
			t.Fatalf("connection %d: %d exchanges, want 1", i, len(exs))
		}
		e := exs[0]
		if e.End != EndResponse || e.Request == nil || e.Response == nil {
			t.Fatalf("exchange %d: %+v", i, e)
		}
		q, r := e.Request, e.Response
		if q.Method != w.method || q.Path != w.path || q.Scheme != "http" || !strings.HasPrefix(q.Authority, "127.0.0.1:") {
			t.Errorf("exchange %d: %s %s %s %s", i, q.Method, q.Scheme, q.Authority, q.Path)
		}
		if string(q.Body) != w.body || r.StatusCode != w.status || string(r.Body) != w.respBody {
			t.Errorf("exchange %d: body %q status %d response body %q", i, q.Body, r.StatusCode, r.Body)
		}
		if !strings.HasPrefix(header(q.Header, "user-agent"), "curl/") || header(q.Header, "traceparent") == "" {
			t.Errorf("exchange %d: headers %v", i, q.Header)
		}
		if w.method == "POST" && (q.ContentLength != int64(len(w.body)) || header(q.Header, "content-type") != "application/x-www-form-urlencoded") {
			t.Errorf("exchange %d: headers %v", i, q.Header)
		}
		if w.status == 200 && w.method == "POST" && !strings.HasPrefix(header(r.Header, "set-cookie"), "session=") {
			t.Errorf("exchange %d: response headers %v", i, r.Header)
		}
		if q.Partial || r.Partial || e.Lost {
			t.Errorf("exchange %d partial", i)
		}
		if st.FieldsUndecodable+st.BlocksUndecodable+st.ProtocolErrors+st.Orphans+st.ResyncBytes != 0 {
			t.Errorf("stats %+v", st)
		}
		mustSameAtEverySplit(t, recs, exs)
	}
}

func TestGoClient(t *testing.T) {
	conns := mustGoClientTraffic(t)
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	recs := conns[0]
	exs, st := feed(Config{}, recs, 0)
	if len(exs) != 3 {
		t.Fatalf("%d exchanges, want 3 (stats %+v)", len(exs), st)
	}
	for i, e := range exs {
		q := e.Request
		if q.Method != "POST" || q.Path != "/login" || header(q.Header, "authorization") != "Bearer abc.def.ghi" ||
			header(q.Trailer, "x-checksum") != "c0ffee" || header(e.Response.Trailer, "x-auth-result") == "" || !strings.HasPrefix(string(q.Body), "username=alice&password=") {
			t.Errorf("exchange %d: %+v", i, q)
		}
		if e.Response == nil || (e.Response.StatusCode != 200 && e.Response.StatusCode != 401) {
			t.Errorf("exchange %d: response %+v", i, e.Response)
		}
	}
	mustSameAtEverySplit(t, recs, exs)
}

// mustSameAtEverySplit feeds the records byte by byte, and split into two
// at every byte of the concatenated traffic, and expects the same
// exchanges every time.
func mustSameAtEverySplit(t *testing.T, recs []record, want []*Exchange) {
	t.Helper()
	got, _ := feed(Config{}, recs, 1)
	if !reflect.DeepEqual(strip(got), strip(want)) {
		t.Fatalf("byte-by-byte feeding differs")
	}
	for ri, r := range recs {
		for k := 1; k < len(r.Data); k++ {
			split := append(append(append([]record(nil), recs[:ri]...), record{r.Conn, r.Dir, r.Data[:k]}, record{r.Conn, r.Dir, r.Data[k:]}), recs[ri+1:]...)
			got, _ := feed(Config{}, split, 0)
			if !reflect.DeepEqual(strip(got), strip(want)) {
				t.Fatalf("split of record %d at byte %d differs", ri, k)
			}
		}
	}
}

// strip drops the times, which depend on how bytes were fed.
func strip(exs []*Exchange) []Exchange {
	var out []Exchange
	for _, e := range exs {
		c := *e
		c.RequestStart, c.RequestEnd, c.ResponseStart, c.ResponseEnd = 0, 0, 0, 0
		out = append(out, c)
	}
	return out
}
