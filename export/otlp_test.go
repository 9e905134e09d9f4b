package export

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
	"github.com/authprobe/authprobe/test/otlpsink"
)

func TestOTLPExport(t *testing.T) {
	const (
		parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentSpan  = "00f067aa0ba902b7"
	)
	parent := mustParent(t, parentTrace, parentSpan, "vendor=opaque")
	in := []spanbuilder.Span{
		testSpan("auth.login", parent, procLogin),
		testSpan("auth.token", trace.SpanContext{}, procToken),
	}
	in[1].Start = in[1].Start.Add(time.Hour)
	in[1].End = in[1].End.Add(time.Hour + 17)

	tests := []struct {
		name     string
		endpoint func(t *testing.T, sink *otlpsink.Sink) Config
	}{
		{"host:port", func(t *testing.T, sink *otlpsink.Sink) Config {
			return Config{Endpoint: sink.Addr(), Insecure: true}
		}},
		{"url", func(t *testing.T, sink *otlpsink.Sink) Config {
			return Config{Endpoint: "http://" + sink.Addr()}
		}},
		{"environment", func(t *testing.T, sink *otlpsink.Sink) Config {
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+sink.Addr())
			return Config{}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := otlpsink.Start(t)
			cfg := tt.endpoint(t, sink)
			cfg.Kind, cfg.HostName, cfg.BatchTimeout = KindOTLP, "node-1", time.Hour
			e := mustExporter(t, cfg)
			for _, s := range in {
				e.Emit(s)
			}
			mustShutdown(t, e) // flushes: the batch timeout never fires
			got := sink.WaitForSpans(t, len(in), 5*time.Second)
			if len(got) != len(in) {
				t.Fatalf("got %d spans, want %d", len(got), len(in))
			}
			if st := e.Stats(); st != (Stats{Emitted: 2, Exported: 2}) {
				t.Fatalf("Stats = %+v", st)
			}

			byName := map[string]otlpsink.Span{}
			for _, s := range got {
				byName[s.Span.GetName()] = s
			}
			login, token := byName["auth.login"], byName["auth.token"]
			if login.Span == nil || token.Span == nil {
				t.Fatalf("missing spans, got %v", byName)
			}

			// Trace context.
			if got := hex.EncodeToString(login.Span.GetTraceId()); got != parentTrace {
				t.Errorf("login trace id = %s, want the caller's %s", got, parentTrace)
			}
			if got := hex.EncodeToString(login.Span.GetParentSpanId()); got != parentSpan {
				t.Errorf("login parent span id = %s, want %s", got, parentSpan)
			}
			if got := login.Span.GetTraceState(); got != "vendor=opaque" {
				t.Errorf("login tracestate = %q", got)
			}
			if len(token.Span.GetParentSpanId()) != 0 {
				t.Errorf("token parent span id = %x, want none", token.Span.GetParentSpanId())
			}
			if id := token.Span.GetTraceId(); len(id) != 16 || bytes.Equal(id, make([]byte, 16)) || hex.EncodeToString(id) == parentTrace {
				t.Errorf("token trace id = %x, want a new one", id)
			}
			for _, s := range got {
				if id := s.Span.GetSpanId(); len(id) != 8 || bytes.Equal(id, make([]byte, 8)) {
					t.Errorf("%s span id = %x", s.Span.GetName(), id)
				}
			}

			// Body and resource.
			for i, s := range []otlpsink.Span{login, token} {
				want := in[i]
				if s.Span.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
					t.Errorf("%s kind = %v", want.Name, s.Span.GetKind())
				}
				if got := s.Span.GetStartTimeUnixNano(); got != uint64(want.Start.UnixNano()) {
					t.Errorf("%s start = %d, want %d", want.Name, got, want.Start.UnixNano())
				}
				if got := s.Span.GetEndTimeUnixNano(); got != uint64(want.End.UnixNano()) {
					t.Errorf("%s end = %d, want %d", want.Name, got, want.End.UnixNano())
				}
				if s.Span.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.Span.GetStatus().GetMessage() != "invalid_credentials" {
					t.Errorf("%s status = %v", want.Name, s.Span.GetStatus())
				}
				compareFields(t, i, s.Attrs(), map[string]any{
					"auth.result":               "failure",
					"auth.failure_reason":       "invalid_credentials",
					"http.response.status_code": int64(401),
					"auth.roles":                []any{"admin", "dev"},
					"auth.token.verified":       false,
				})
				res := s.ResourceAttrs()
				p := want.Process
				for k, v := range map[string]any{
					"service.name":            wantServiceName(p),
					"process.pid":             int64(p.PID),
					"process.executable.path": p.Exe,
					"host.name":               "node-1",
					"telemetry.sdk.language":  "go",
				} {
					if res[k] != v {
						t.Errorf("%s resource %s = %v, want %v", want.Name, k, res[k], v)
					}
				}
				if s.Scope.GetName() != instrumentationScope {
					t.Errorf("%s scope = %q", want.Name, s.Scope.GetName())
				}
			}
			if raw := sink.RawPayloads(); len(raw) == 0 || !bytes.Contains(bytes.Join(raw, nil), []byte("auth.login")) {
				t.Errorf("raw payloads (%d) lack the span name", len(raw))
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// TestOTLPUnreachableBuffers: while nothing listens, batches stay buffered
// and are retried; what exceeds the buffer is dropped and counted, and
// Shutdown counts what is left. Every span is accounted for.
func TestOTLPUnreachableBuffers(t *testing.T) {
	var retried atomic.Int64
	e := mustExporter(t, Config{
		Kind: KindOTLP, Endpoint: closedAddr(t), Insecure: true,
		BatchTimeout: 10 * time.Millisecond, ExportTimeout: 200 * time.Millisecond,
		MaxExportBatchSize: 2, BufferBytes: 16 << 10,
		RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		OnExportError: func(_ error, _ int, retrying bool) {
			if retrying {
				retried.Add(1)
			}
		},
	})
	const n = 200
	for range n {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	waitFor(t, func() bool { return retried.Load() >= 3 })
	st := e.Stats()
	if st.Exported != 0 || st.DroppedBufferFull == 0 || st.Pending == 0 || st.MemoryBytes == 0 {
		t.Fatalf("Stats = %+v, want spans pending in memory, the rest dropped, none exported", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown err = %v, want deadline exceeded", err)
	}

	st = e.Stats()
	if st.Exported != 0 || st.ExportErrors == 0 || st.ExportFailed != 0 || st.DroppedShutdown == 0 {
		t.Fatalf("Stats = %+v, want failed attempts, nothing rejected, the buffer dropped at shutdown", st)
	}
	if st.Emitted != n || st.Pending != 0 || st.DroppedBufferFull+st.DroppedShutdown != n {
		t.Fatalf("Stats = %+v do not account for %d spans", st, n)
	}
}

func TestOTLPShutdownDeadline(t *testing.T) {
	// The exporter's own timeout (10s) is longer than Shutdown's context:
	// Shutdown cancels the pending export and still accounts for the spans.
	e := mustExporter(t, Config{Kind: KindOTLP, Endpoint: closedAddr(t), Insecure: true, BatchTimeout: time.Hour})
	for range 3 {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown err = %v, want deadline exceeded", err)
	}
	if st := e.Stats(); st != (Stats{Emitted: 3, DroppedShutdown: 3}) {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestOTLPRejectedThenAccepted(t *testing.T) {
	sink := otlpsink.Start(t)
	sink.FailWith(status.Error(codes.InvalidArgument, "rejected by test"))
	var lastErr error
	e := mustExporter(t, Config{
		Kind: KindOTLP, Endpoint: sink.Addr(), Insecure: true,
		MaxExportBatchSize: 1, ExportTimeout: 5 * time.Second,
		OnExportError: func(err error, _ int, retrying bool) {
			if retrying {
				t.Errorf("InvalidArgument retried")
			}
			lastErr = err
		},
	})
	e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	waitFor(t, func() bool { return e.Stats().ExportErrors == 1 })
	sink.FailWith(nil)
	e.Emit(testSpan("auth.token", trace.SpanContext{}, procLogin))
	got := sink.WaitForSpans(t, 1, 5*time.Second)
	mustShutdown(t, e)

	if got[0].Span.GetName() != "auth.token" {
		t.Errorf("received %q, want auth.token", got[0].Span.GetName())
	}
	if st := e.Stats(); st != (Stats{Emitted: 2, Exported: 1, ExportFailed: 1, ExportErrors: 1}) {
		t.Fatalf("Stats = %+v", st)
	}
	if status.Code(lastErr) != codes.InvalidArgument {
		t.Errorf("OnExportError got %v, want InvalidArgument", lastErr)
	}
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
