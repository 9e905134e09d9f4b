package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

var (
	hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

var (
	procLogin = spanbuilder.Process{PID: 4242, Exe: "/usr/local/bin/login-api", ServiceName: "login-svc"}
	procToken = spanbuilder.Process{PID: 77, Exe: "/opt/idp/bin/tokend"} // service.name from exe
)

func mustParent(tb testing.TB, traceID, spanID, state string) trace.SpanContext {
	tb.Helper()
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		tb.Fatalf("parse tracestate %q: %v", state, err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(tb, traceID),
		SpanID:     mustSpanID(tb, spanID),
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
		Remote:     true,
	})
}

// testSpan is an auth span as spanbuilder would give it.
func testSpan(name string, parent trace.SpanContext, p spanbuilder.Process) spanbuilder.Span {
	start := time.Unix(1700000000, 987654321)
	return spanbuilder.Span{
		Name:          name,
		Parent:        parent,
		Start:         start,
		End:           start.Add(2345678 * time.Nanosecond),
		StatusCode:    codes.Error,
		StatusMessage: "invalid_credentials",
		Attributes: []attribute.KeyValue{
			attribute.String("auth.result", "failure"),
			attribute.String("auth.failure_reason", "invalid_credentials"),
			attribute.Int("http.response.status_code", 401),
			attribute.StringSlice("auth.roles", []string{"admin", "dev"}),
			attribute.Bool("auth.token.verified", false),
		},
		Process: p,
		Result:  spanbuilder.ResultFailure,
		UserKey: 0xfeedface, // never exported
	}
}

// syncBuffer is a bytes.Buffer the test may read while the worker writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// mustExporter starts an exporter and shuts it down when the test ends (a
// second Shutdown is harmless).
func mustExporter(tb testing.TB, cfg Config) *Exporter {
	tb.Helper()
	e, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		// Bounded: during an outage Shutdown waits as long as it may.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func mustShutdown(tb testing.TB, e *Exporter) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		tb.Fatalf("Shutdown: %v", err)
	}
}

// mustStdoutLines emits spans through a stdout exporter, shuts it down and
// returns the decoded lines.
func mustStdoutLines(tb testing.TB, cfg Config, spans ...spanbuilder.Span) []map[string]any {
	tb.Helper()
	out := &syncBuffer{}
	cfg.Kind, cfg.Stdout = KindStdout, out
	e := mustExporter(tb, cfg)
	for _, s := range spans {
		e.Emit(s)
	}
	mustShutdown(tb, e)
	lines := decodeLines(tb, out.Bytes())
	if len(lines) != len(spans) {
		tb.Fatalf("got %d lines, want %d:\n%s", len(lines), len(spans), out.Bytes())
	}
	return lines
}

func TestStdoutTraceContext(t *testing.T) {
	const (
		parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentSpan  = "00f067aa0ba902b7"
	)
	tests := []struct {
		name           string
		parent         trace.SpanContext
		wantTrace      string // "" means a fresh trace id
		wantParentSpan string
		wantState      string
	}{
		{
			name:           "child of caller keeps trace and tracestate",
			parent:         mustParent(t, parentTrace, parentSpan, "vendor=opaque,other=1"),
			wantTrace:      parentTrace,
			wantParentSpan: parentSpan,
			wantState:      "vendor=opaque,other=1",
		},
		{
			name:           "child of caller without tracestate",
			parent:         mustParent(t, parentTrace, parentSpan, ""),
			wantTrace:      parentTrace,
			wantParentSpan: parentSpan,
		},
		{
			name: "unsampled caller is still exported in its trace",
			parent: trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: mustTraceID(t, parentTrace), SpanID: mustSpanID(t, parentSpan), Remote: true,
			}),
			wantTrace:      parentTrace,
			wantParentSpan: parentSpan,
		},
		{name: "no traceparent starts a new trace", parent: trace.SpanContext{}},
		{
			name: "invalid parent starts a new trace",
			parent: trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: mustTraceID(t, parentTrace), Remote: true, // no span id
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testSpan("auth.login", tt.parent, procLogin)
			line := mustStdoutLines(t, Config{HostName: "node-1"}, in)[0]

			traceID, _ := line["trace_id"].(string)
			spanID, _ := line["span_id"].(string)
			if !hex32.MatchString(traceID) || traceID == strings.Repeat("0", 32) {
				t.Errorf("trace_id = %q, want 32 hex digits, not zero", traceID)
			}
			if !hex16.MatchString(spanID) || spanID == strings.Repeat("0", 16) || spanID == parentSpan {
				t.Errorf("span_id = %q, want fresh 16 hex digits", spanID)
			}
			if tt.wantTrace != "" && traceID != tt.wantTrace {
				t.Errorf("trace_id = %q, want the caller's %q", traceID, tt.wantTrace)
			}
			if tt.wantTrace == "" && traceID == parentTrace {
				t.Errorf("trace_id = caller's %q, want a new trace", traceID)
			}
			if got := line["parent_span_id"]; got != tt.wantParentSpan {
				t.Errorf("parent_span_id = %q, want %q", got, tt.wantParentSpan)
			}
			if got, _ := line["trace_state"].(string); got != tt.wantState {
				t.Errorf("trace_state = %q, want %q", got, tt.wantState)
			}
			checkSpanBody(t, line, in)
		})
	}
}

// checkSpanBody checks what every exported span repeats of its input.
func checkSpanBody(t *testing.T, line map[string]any, in spanbuilder.Span) {
	t.Helper()
	want := map[string]any{
		"name":                 in.Name,
		"kind":                 "SERVER",
		"start_time_unix_nano": json.Number(itoa(in.Start.UnixNano())),
		"end_time_unix_nano":   json.Number(itoa(in.End.UnixNano())),
		"status_code":          "ERROR",
		"status_message":       in.StatusMessage,
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	attrs, _ := line["attributes"].(map[string]any)
	wantAttrs := map[string]any{
		"auth.result":               "failure",
		"auth.failure_reason":       "invalid_credentials",
		"http.response.status_code": json.Number("401"),
		"auth.roles":                []any{"admin", "dev"},
		"auth.token.verified":       false,
	}
	compareFields(t, 0, attrs, wantAttrs)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestZeroTimesAreNow: a span without times gets the time of Emit, as the
// SDK gave it.
func TestZeroTimesAreNow(t *testing.T) {
	before := time.Now().UnixNano()
	line := mustStdoutLines(t, Config{}, spanbuilder.Span{Name: "auth.login", Process: procLogin})[0]
	for _, k := range []string{"start_time_unix_nano", "end_time_unix_nano"} {
		n, err := line[k].(json.Number).Int64()
		if err != nil || n < before || n > time.Now().UnixNano() {
			t.Errorf("%s = %v, want the time of Emit", k, line[k])
		}
	}
}

func TestStdoutNewTracesDiffer(t *testing.T) {
	lines := mustStdoutLines(t, Config{},
		testSpan("auth.login", trace.SpanContext{}, procLogin),
		testSpan("auth.login", trace.SpanContext{}, procLogin),
	)
	if lines[0]["trace_id"] == lines[1]["trace_id"] {
		t.Fatalf("two spans without traceparent share trace id %v", lines[0]["trace_id"])
	}
}

func TestResourcePerProcess(t *testing.T) {
	extra := []attribute.KeyValue{
		attribute.String("k8s.node.name", "node-1"),
		attribute.String("service.name", "must-not-win"),
	}
	perProcess := func(p spanbuilder.Process) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.Int("test.pid_copy", int(p.PID))}
	}
	tests := []struct {
		name         string
		maxProcesses int // small values force evictions between spans
	}{
		{"cached", 0},
		{"evicting", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{HostName: "node-1", ExtraResource: extra, ProcessResource: perProcess, MaxProcesses: tt.maxProcesses}
			procs := []spanbuilder.Process{procLogin, procToken, procLogin, {PID: 9}, procToken}
			var in []spanbuilder.Span
			for _, p := range procs {
				in = append(in, testSpan("auth.login", trace.SpanContext{}, p))
			}
			lines := mustStdoutLines(t, cfg, in...)
			for i, p := range procs {
				res, _ := lines[i]["resource"].(map[string]any)
				want := map[string]any{
					"service.name":           wantServiceName(p),
					"process.pid":            json.Number(itoa(int64(p.PID))),
					"host.name":              "node-1",
					"k8s.node.name":          "node-1",
					"test.pid_copy":          json.Number(itoa(int64(p.PID))),
					"telemetry.sdk.name":     "opentelemetry",
					"telemetry.sdk.language": "go",
				}
				if p.Exe != "" {
					want["process.executable.name"] = p.Exe[strings.LastIndex(p.Exe, "/")+1:]
					want["process.executable.path"] = p.Exe
				}
				if v, _ := res["telemetry.sdk.version"].(string); v == "" {
					t.Errorf("span %d: no telemetry.sdk.version", i)
				}
				want["telemetry.sdk.version"] = res["telemetry.sdk.version"]
				compareFields(t, i, res, want)
			}
		})
	}
}

func wantServiceName(p spanbuilder.Process) string {
	switch {
	case p.ServiceName != "":
		return p.ServiceName
	case p.Exe != "":
		return p.Exe[strings.LastIndex(p.Exe, "/")+1:]
	default:
		return "unknown_service"
	}
}

func TestStdoutIsPrompt(t *testing.T) {
	// Without Shutdown, the default stdout batch timeout delivers the line.
	out := &syncBuffer{}
	e := mustExporter(t, Config{Kind: KindStdout, Stdout: out})
	e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	deadline := time.Now().Add(5 * time.Second)
	for len(out.Bytes()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no line written before Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(decodeLines(t, out.Bytes())); got != 1 {
		t.Fatalf("got %d lines, want 1", got)
	}
}

func TestShutdownFlushes(t *testing.T) {
	out := &syncBuffer{}
	e := mustExporter(t, Config{Kind: KindStdout, Stdout: out, BatchTimeout: time.Hour})
	for range 5 {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	mustShutdown(t, e)
	if got := len(decodeLines(t, out.Bytes())); got != 5 {
		t.Fatalf("got %d lines after Shutdown, want 5", got)
	}

	e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	want := Stats{Emitted: 6, Exported: 5, DroppedShutdown: 1}
	if got := e.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

// blockingWriter blocks every Write until released, and says when a Write
// is waiting.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	syncBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return w.syncBuffer.Write(p)
}

func TestBufferFullDrops(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	one := len(testLine(t))
	// Room for the batch being written and two more spans.
	e := mustExporter(t, Config{Kind: KindStdout, Stdout: w, MaxExportBatchSize: 1, BufferBytes: int64(3*one - one/2)})

	// The first span occupies the sender in Write; then the buffer takes
	// two and the remaining seven are dropped, without Emit waiting.
	e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	<-w.entered
	for range 9 {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	if got := e.Stats().DroppedBufferFull; got != 7 {
		t.Fatalf("DroppedBufferFull = %d while blocked, want 7", got)
	}
	close(w.release)
	mustShutdown(t, e)

	want := Stats{Emitted: 10, Exported: 3, DroppedBufferFull: 7}
	if got := e.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if got := len(decodeLines(t, w.Bytes())); got != 3 {
		t.Fatalf("got %d lines, want 3", got)
	}
}

// testLine is the JSON line of the test span.
func testLine(tb testing.TB) []byte {
	s := testSpan("auth.login", trace.SpanContext{}, procLogin)
	ids := testIDs(s.Parent)
	return appendJSONSpan(nil, &s, &ids, newLayout(s.Attributes), "", newResourceCache(Config{MaxProcesses: 1}).get(procLogin).json)
}

func TestExportErrorsCounted(t *testing.T) {
	errDisk := errors.New("disk full")
	var (
		mu       sync.Mutex
		reported []error
		spans    int
	)
	e := mustExporter(t, Config{
		Kind: KindStdout, Stdout: failingWriter{errDisk}, BatchTimeout: time.Hour,
		OnExportError: func(err error, n int, retrying bool) {
			if retrying {
				t.Errorf("stdout write error retried")
			}
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, err)
			spans += n
		},
	})
	for range 3 {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	mustShutdown(t, e)

	want := Stats{Emitted: 3, ExportFailed: 3, ExportErrors: 1}
	if got := e.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if got := e.Stats().Dropped(); got != 3 {
		t.Fatalf("Dropped() = %d, want 3", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !errors.Is(reported[0], errDisk) || spans != 3 {
		t.Fatalf("OnExportError got %v for %d spans, want one %v for 3", reported, spans, errDisk)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown kind", Config{Kind: "zipkin"}, `unknown exporter kind "zipkin"`},
		{"empty kind", Config{}, `unknown exporter kind ""`},
		{"stdout without writer", Config{Kind: KindStdout}, "needs a writer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
