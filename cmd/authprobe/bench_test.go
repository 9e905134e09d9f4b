package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/cmd/authprobe/internal/targets"
	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/export"
	"github.com/authprobe/authprobe/spanbuilder"
	"github.com/authprobe/authprobe/test/otlpsink"
	"github.com/authprobe/authprobe/test/testutil"
)

// The whole-path stage benchmark (`make bench-stages`): ring buffer
// samples, laid out as the kernel writes them, through bpf.Dispatch, the
// decoder, the span builder and chain, the detector and the exporter to
// the bytes it writes (stdout JSON lines to a discarding writer; OTLP
// request bytes sealed per batch). One op is one login exchange on a
// keep-alive connection: a request sample and a response sample, the
// bench's workload (form login, alternating a 401 and a 200 with a JWT in
// its JSON body). cpu-ns/op is the process's CPU time per span, every
// goroutine's (the exporter's sender and the GC's) included.

// nopWatcher takes verdicts and watches without a kernel.
type nopWatcher struct{}

func (nopWatcher) WatchWith(uint32, uint64, bpf.WatchOptions) error { return nil }
func (nopWatcher) Unwatch(uint32) error                             { return nil }
func (nopWatcher) SetVerdict(uint64, uint64, bpf.Verdict) error     { return nil }

const (
	benchBad = "POST /login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: 36\r\n\r\nusername=alice&password=wrong-horse!"
	benchGood = "POST /login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: 38\r\n\r\nusername=alice&password=correct-horse!"
	benchDenied = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 31\r\nContent-Type: application/json\r\n" +
		"X-Login-Handler: 1\r\nDate: Wed, 02 Dec 2026 05:58:47 GMT\r\n\r\n{\"error\":\"invalid_credentials\"}"
	benchToken = `{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTYxOTQ3MjgsImlhdCI6MTc5NjE5MTEyOCwicm9sZSI6InVzZXIiLCJyb2xlcyI6WyJ1c2VyIl0sInN1YiI6ImFsaWNlIn0.wk0ICMCdUEsIZeUm7ECi-8vSRWJp3UGzydnGADBPL9M"}`
)

// The bearer workload: an API call on an authorize route with a JWT
// whose claims carry a subject, an issuer, an audience list and roles,
// answered 200 and, alternately, 403.
const benchJWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
	"eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJhdWQiOlsiYXBpIiwid2ViIl0sInJvbGVzIjpbInVzZXIiLCJhdWRpdG9yIl0sImV4cCI6MTc5NjE5NDcyOH0." +
	"c2lnbmF0dXJl"

var (
	benchAPI   = "GET /api/orders/7 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer " + benchJWT + "\r\nAccept: application/json\r\n\r\n"
	benchAPIOK = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: application/json\r\n" +
		"Date: Wed, 02 Dec 2026 05:58:48 GMT\r\n\r\n{\"orders\":[]}"
	benchAPIDenied = "HTTP/1.1 403 Forbidden\r\nContent-Length: 21\r\nContent-Type: application/json\r\n" +
		"Date: Wed, 02 Dec 2026 05:58:48 GMT\r\n\r\n{\"error\":\"forbidden\"}"
)

var benchOK = "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(benchToken)) + "\r\nContent-Type: application/json\r\n" +
	"Set-Cookie: session=90279a9dd418ef0274e8771cefb13dcd; Path=/; HttpOnly\r\nX-Login-Handler: 1\r\n" +
	"Date: Wed, 02 Dec 2026 05:58:48 GMT\r\n\r\n" + benchToken

// wholePath is the agent's user-space path without a kernel.
type wholePath struct {
	pipe  *pipeline
	exp   *export.Exporter
	spans int
	conn  bpf.ConnEvent
	raw   []byte
	// stream offsets and sequence numbers per direction
	inOff, outOff uint64
	inSeq, outSeq uint32
	now           uint64
	exchanges     [2][2][]byte // a failed and a successful login: request, response
}

func newWholePath(tb testing.TB, kind string) *wholePath {
	tb.Helper()
	return newWholePathTo(tb, kind, io.Discard)
}

// newWholePathTo is newWholePath writing its JSON lines (stdout) to out.
func newWholePathTo(tb testing.TB, kind string, out io.Writer) *wholePath {
	tb.Helper()
	return newWholePathOf(tb, kind, out, false)
}

// newWholePathOf is the whole path of the login workload, or with bearer
// set of the bearer workload, writing its JSON lines (stdout) to out.
func newWholePathOf(tb testing.TB, kind string, out io.Writer, bearer bool) *wholePath {
	tb.Helper()
	clock, err := bpf.NewKernelClock()
	if err != nil {
		tb.Fatal(err)
	}
	routes := []config.Route{
		{Name: "auth.login", Kind: config.KindLogin, Method: "POST", Path: "/login"},
		{Name: "api.authorize", Kind: config.KindAuthorize, Path: "/api/**"},
	}
	builder, err := spanbuilder.New(spanbuilder.Config{
		Routes:   routes,
		Security: config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyHash, RandomKey: true}},
		ToWall:   clock.Wall,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ecfg := export.Config{Kind: kind, Stdout: out, HostName: "bench"}
	if kind == config.ExporterOTLP {
		ecfg.Endpoint = benchOTLPSink(tb)
		ecfg.Insecure = true
	}
	exp, err := export.New(context.Background(), ecfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = exp.Shutdown(ctx)
	})
	det, err := detect.New(detect.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	dec := decoder.New(decoder.Config{Interesting: builder.Interesting})
	w := &wholePath{exp: exp, now: clock.Now()}
	count := func(spanbuilder.Span) { w.spans++ }
	w.pipe = newPipeline(slog.New(slog.DiscardHandler), nopWatcher{}, dec, builder, clock,
		targets.NewMatcher(nil, "", "/proc"), func() uint64 { return 0 }, exp.Emit, det.Observe, count)
	const pid = 4242
	w.pipe.procs[pid] = targets.Process{PID: pid, Exe: "/usr/local/bin/goserver", ServiceName: "goserver"}
	w.conn = bpf.ConnEvent{
		Sock: 0xffff888012345678, Gen: 7, PID: pid, TID: pid, Task: pid,
		Peer:  netip.MustParseAddrPort("127.0.0.2:40000"),
		Local: netip.MustParseAddrPort("127.0.0.1:8080"),
	}
	w.raw = make([]byte, 0, 4096)
	w.exchanges = [2][2][]byte{{[]byte(benchBad), []byte(benchDenied)}, {[]byte(benchGood), []byte(benchOK)}}
	if bearer {
		w.exchanges = [2][2][]byte{{[]byte(benchAPI), []byte(benchAPIDenied)}, {[]byte(benchAPI), []byte(benchAPIOK)}}
	}
	return w
}

// sample dispatches one data sample of payload in dir.
func (w *wholePath) sample(tb testing.TB, dir bpf.Direction, payload []byte) {
	ev := w.conn
	ev.Dir, ev.Time, ev.Flags = dir, w.now, bpf.FlagBoundary
	w.now += 20_000
	if dir == bpf.Ingress {
		ev.Seq, ev.Off = w.inSeq, w.inOff
		w.inSeq++
		w.inOff += uint64(len(payload))
		if ev.Seq == 0 {
			ev.Flags |= bpf.FlagEpisode
		}
	} else {
		ev.Seq, ev.Off = w.outSeq, w.outOff
		w.outSeq++
		w.outOff += uint64(len(payload))
	}
	ev.Len = uint32(len(payload))
	ev.Data = payload
	w.raw = bpf.AppendSample(w.raw[:0], ev, false)
	if err := bpf.Dispatch(w.raw, w.pipe); err != nil {
		tb.Fatal(err)
	}
}

// login is one op: a request and its answer, failures and successes
// alternating.
func (w *wholePath) login(tb testing.TB, i int) {
	ex := w.exchanges[i%2]
	w.sample(tb, bpf.Ingress, ex[0])
	w.sample(tb, bpf.Egress, ex[1])
	w.pipe.Drained() // one batch per login: live batches are larger
}

func BenchmarkStageWholePath(b *testing.B) {
	for _, name := range []string{config.ExporterStdout, config.ExporterOTLP, "stdout-bearer", "otlp-bearer"} {
		b.Run(name, func(b *testing.B) {
			kind, bearer := strings.CutSuffix(name, "-bearer")
			w := newWholePathOf(b, kind, io.Discard, bearer)
			for i := range 1000 { // warm the pools, maps and batches
				w.login(b, i)
			}
			w.spans = 0
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU(b)
			i := 0
			for b.Loop() {
				w.login(b, i)
				i++
			}
			b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			if w.spans != i {
				b.Fatalf("%d logins gave %d spans", i, w.spans)
			}
		})
	}
}

// TestWholePathSpans: the benchmark's events make one span per login, all
// exported.
func TestWholePathSpans(t *testing.T) {
	w := newWholePath(t, config.ExporterStdout)
	for i := range 100 {
		w.login(t, i)
	}
	if w.spans != 100 {
		t.Fatalf("100 logins gave %d spans", w.spans)
	}
}

// TestWholePathLines: every failed login of the benchmark's workload is
// exported as the same line, and so is every successful one, once the
// ids and times that differ are set aside. The memory of each exchange
// and span is reused for the next; a string still read from it after its
// reuse would make a line differ.
func TestWholePathLines(t *testing.T) {
	var out bytes.Buffer
	w := newWholePathTo(t, config.ExporterStdout, &out)
	const logins = 300
	for i := range logins {
		w.login(t, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	varying := regexp.MustCompile(`"(trace_id|span_id|start_time_unix_nano|end_time_unix_nano)":("[^"]*"|[0-9]+)`)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != logins {
		t.Fatalf("%d lines for %d logins", len(lines), logins)
	}
	for i, l := range lines {
		if got, want := varying.ReplaceAllString(l, `"$1":""`), varying.ReplaceAllString(lines[i%2], `"$1":""`); got != want {
			t.Fatalf("login %d exported\n %s\nwhere login %d exported\n %s", i, got, i%2, want)
		}
	}
	for _, want := range []string{`"auth.result":"failure"`, `"auth.username":"hmac:`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the failed login's line has no %s: %s", want, lines[0])
		}
	}
}

// maxWholePathAllocs bounds the heap allocations of one login on the
// whole path once its pools are warm: every exchange, span and request
// record is recycled once its span was exported (pipeline.deliver).
const maxWholePathAllocs = 2

// TestWholePathAllocs keeps the whole path's allocations per login at
// maxWholePathAllocs or fewer, so that one more cannot slip in unseen.
func TestWholePathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	for _, name := range []string{config.ExporterStdout, config.ExporterOTLP, "stdout-bearer", "otlp-bearer"} {
		t.Run(name, func(t *testing.T) {
			kind, bearer := strings.CutSuffix(name, "-bearer")
			w := newWholePathOf(t, kind, io.Discard, bearer)
			i := 0
			login := func() { w.login(t, i); i++ }
			for range 1000 { // warm the pools, maps and batches
				login()
			}
			n := testing.AllocsPerRun(2000, login)
			t.Logf("%.2f allocations per login", n)
			if n > maxWholePathAllocs {
				t.Errorf("%.2f allocations per login, want at most %d", n, maxWholePathAllocs)
			}
			if w.spans != i {
				t.Fatalf("%d logins gave %d spans", i, w.spans)
			}
		})
	}
}

func benchOTLPSink(tb testing.TB) string {
	tb.Helper()
	return otlpsink.StartRaw(tb)
}
