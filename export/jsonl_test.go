package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// goldenSpans are fixed SDK spans whose JSON lines are in
// testdata/spans.golden.jsonl.
func goldenSpans(tb testing.TB) []sdktrace.ReadOnlySpan {
	tb.Helper()
	ts, err := trace.ParseTraceState("vendor=opaque,other=1")
	if err != nil {
		tb.Fatalf("parse tracestate: %v", err)
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(tb, "4bf92f3577b34da6a3ce929d0e0e4736"),
		SpanID:     mustSpanID(tb, "00f067aa0ba902b7"),
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	child := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    parent.TraceID(),
		SpanID:     mustSpanID(tb, "b7ad6b7169203331"),
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
	})
	root := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(tb, "0af7651916cd43dd8448eb211c80319c"),
		SpanID:     mustSpanID(tb, "c8f7a6e5d4c3b2a1"),
		TraceFlags: trace.FlagsSampled,
	})
	res := resource.NewWithAttributes("",
		attribute.String("service.name", "login-api"),
		attribute.Int("process.pid", 4242),
		attribute.String("process.executable.name", "login-api"),
		attribute.String("host.name", "node-1"),
	)
	start := time.Unix(1700000000, 123456789)
	stubs := tracetest.SpanStubs{
		{
			Name:        "auth.login",
			SpanContext: child,
			Parent:      parent,
			SpanKind:    trace.SpanKindServer,
			StartTime:   start,
			EndTime:     start.Add(1500 * time.Microsecond),
			Status:      sdktrace.Status{Code: codes.Error, Description: "invalid_credentials"},
			Attributes: []attribute.KeyValue{
				attribute.String("auth.result", "failure"),
				attribute.String("url.path", "/login?next=<a>&b"),
				attribute.Int("http.response.status_code", 401),
				attribute.Bool("auth.token.verified", false),
				attribute.Float64("auth.score", 0.25),
				attribute.StringSlice("auth.roles", []string{"admin", "dev"}),
				attribute.Int64Slice("auth.ports", []int64{80, 443}),
				attribute.Float64("auth.nan", math.NaN()),
				attribute.Float64Slice("auth.inf", []float64{math.Inf(1), math.Inf(-1), 1.5}),
			},
			Resource:             res,
			InstrumentationScope: instrumentation.Scope{Name: scopeName},
		},
		{
			Name:                 "auth.token",
			SpanContext:          root,
			SpanKind:             trace.SpanKindServer,
			StartTime:            start,
			EndTime:              start.Add(time.Second),
			Status:               sdktrace.Status{Code: codes.Ok},
			Attributes:           []attribute.KeyValue{attribute.String("auth.result", "success")},
			Resource:             res,
			InstrumentationScope: instrumentation.Scope{Name: scopeName},
		},
		{
			Name:                 "auth.logout",
			SpanContext:          root,
			SpanKind:             trace.SpanKindServer,
			StartTime:            start,
			EndTime:              start,
			InstrumentationScope: instrumentation.Scope{Name: scopeName},
		},
	}
	return stubs.Snapshots()
}

func TestJSONExporterGolden(t *testing.T) {
	w := &recordingWriter{}
	exp := NewJSONExporter(w)
	spans := goldenSpans(t)
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatalf("ExportSpans: %v", err)
	}

	golden := filepath.Join("testdata", "spans.golden.jsonl")
	got := w.bytes()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}

	// One write per batch, made of whole lines only, so lines never
	// interleave with another writer's.
	if len(w.writes) != 1 {
		t.Errorf("got %d writes for one batch of %d spans, want 1", len(w.writes), len(spans))
	}
	for i, wr := range w.writes {
		if !bytes.HasSuffix(wr, []byte("\n")) || bytes.Count(wr, []byte("\n")) != len(spans) {
			t.Errorf("write %d is not %d whole lines: %q", i, len(spans), wr)
		}
	}

	gotLines, wantLines := decodeLines(t, got), decodeLines(t, want)
	if len(gotLines) != len(wantLines) {
		t.Fatalf("got %d lines, want %d", len(gotLines), len(wantLines))
	}
	for i := range wantLines {
		compareFields(t, i, gotLines[i], wantLines[i])
	}
	// Beyond the fields, the bytes are stable: keys in a fixed order and
	// no HTML escaping.
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// compareFields compares one decoded line with its golden line key by key,
// so a failure names the field.
func compareFields(t *testing.T, line int, got, want map[string]any) {
	t.Helper()
	for _, k := range sortedKeys(want) {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("line %d: %s = %v, want %v", line, k, got[k], want[k])
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("line %d: unexpected key %s = %v", line, k, got[k])
		}
	}
}

func TestJSONExporterKeys(t *testing.T) {
	// The documented line format, independent of the golden file.
	w := &recordingWriter{}
	if err := NewJSONExporter(w).ExportSpans(context.Background(), goldenSpans(t)); err != nil {
		t.Fatal(err)
	}
	lines := decodeLines(t, w.bytes())
	tests := []struct {
		name     string
		line     map[string]any
		wantKeys []string
	}{
		{"child with status message and tracestate", lines[0], []string{
			"name", "trace_id", "span_id", "parent_span_id", "kind", "start_time_unix_nano",
			"end_time_unix_nano", "status_code", "status_message", "trace_state", "attributes", "resource",
		}},
		{"root without message", lines[1], []string{
			"name", "trace_id", "span_id", "parent_span_id", "kind", "start_time_unix_nano",
			"end_time_unix_nano", "status_code", "attributes", "resource",
		}},
		{"no attributes no resource", lines[2], []string{
			"name", "trace_id", "span_id", "parent_span_id", "kind", "start_time_unix_nano",
			"end_time_unix_nano", "status_code", "attributes", "resource",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sortedKeys(tt.line)
			want := slices.Sorted(slices.Values(tt.wantKeys))
			if !slices.Equal(got, want) {
				t.Fatalf("keys = %v, want %v", got, want)
			}
			if _, ok := tt.line["start_time_unix_nano"].(json.Number); !ok {
				t.Errorf("start_time_unix_nano is %T, want an integer", tt.line["start_time_unix_nano"])
			}
			if _, ok := tt.line["attributes"].(map[string]any); !ok {
				t.Errorf("attributes is %T, want an object", tt.line["attributes"])
			}
			if _, ok := tt.line["resource"].(map[string]any); !ok {
				t.Errorf("resource is %T, want an object", tt.line["resource"])
			}
		})
	}
}

func TestJSONExporterErrors(t *testing.T) {
	t.Run("write error", func(t *testing.T) {
		errDisk := errors.New("disk full")
		exp := NewJSONExporter(failingWriter{errDisk})
		err := exp.ExportSpans(context.Background(), goldenSpans(t))
		if !errors.Is(err, errDisk) {
			t.Fatalf("err = %v, want %v", err, errDisk)
		}
	})
	t.Run("after shutdown", func(t *testing.T) {
		w := &recordingWriter{}
		exp := NewJSONExporter(w)
		if err := exp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := exp.ExportSpans(context.Background(), goldenSpans(t)); err == nil {
			t.Fatal("export after shutdown succeeded")
		}
		if len(w.writes) != 0 {
			t.Fatalf("wrote %d lines after shutdown", len(w.writes))
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := &recordingWriter{}
		if err := NewJSONExporter(w).ExportSpans(ctx, goldenSpans(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

// recordingWriter keeps every Write separately.
type recordingWriter struct{ writes [][]byte }

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *recordingWriter) bytes() []byte { return bytes.Join(w.writes, nil) }

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func decodeLines(tb testing.TB, b []byte) []map[string]any {
	tb.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			tb.Fatalf("decode line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mustTraceID(tb testing.TB, h string) trace.TraceID {
	tb.Helper()
	id, err := trace.TraceIDFromHex(h)
	if err != nil {
		tb.Fatalf("trace id %q: %v", h, err)
	}
	return id
}

func mustSpanID(tb testing.TB, h string) trace.SpanID {
	tb.Helper()
	id, err := trace.SpanIDFromHex(h)
	if err != nil {
		tb.Fatalf("span id %q: %v", h, err)
	}
	return id
}
