package export

import (
	"bytes"
	"encoding/json"
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
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// goldenSpan is one span of testdata/spans.golden.jsonl with the ids and
// resource it is encoded with.
type goldenSpan struct {
	span spanbuilder.Span
	ids  spanIDs
	res  []attribute.KeyValue
}

// goldenSpans are fixed spans whose JSON lines are in
// testdata/spans.golden.jsonl (written by the SDK-based exporter before the
// direct encoder, which must write the same bytes).
func goldenSpans(tb testing.TB) []goldenSpan {
	tb.Helper()
	ts, err := trace.ParseTraceState("vendor=opaque,other=1")
	if err != nil {
		tb.Fatalf("parse tracestate: %v", err)
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    mustTraceID(tb, "4bf92f3577b34da6a3ce929d0e0e4736"),
		SpanID:     mustSpanID(tb, "00f067aa0ba902b7"),
		TraceFlags: trace.FlagsSampled,
		TraceState: ts,
		Remote:     true,
	})
	res := []attribute.KeyValue{
		attribute.String("service.name", "login-api"),
		attribute.Int("process.pid", 4242),
		attribute.String("process.executable.name", "login-api"),
		attribute.String("host.name", "node-1"),
	}
	start := time.Unix(1700000000, 123456789)
	root := spanIDs{trace: [16]byte(mustTraceID(tb, "0af7651916cd43dd8448eb211c80319c")), span: [8]byte(mustSpanID(tb, "c8f7a6e5d4c3b2a1"))}
	return []goldenSpan{
		{
			span: spanbuilder.Span{
				Name:          "auth.login",
				Parent:        parent,
				Start:         start,
				End:           start.Add(1500 * time.Microsecond),
				StatusCode:    codes.Error,
				StatusMessage: "invalid_credentials",
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
			},
			ids: spanIDs{trace: [16]byte(parent.TraceID()), span: [8]byte(mustSpanID(tb, "b7ad6b7169203331")), parent: [8]byte(parent.SpanID())},
			res: res,
		},
		{
			span: spanbuilder.Span{
				Name:       "auth.token",
				Start:      start,
				End:        start.Add(time.Second),
				StatusCode: codes.Ok,
				Attributes: []attribute.KeyValue{attribute.String("auth.result", "success")},
			},
			ids: root,
			res: res,
		},
		{span: spanbuilder.Span{Name: "auth.logout", Start: start, End: start}, ids: root},
	}
}

// goldenLines encodes the golden spans.
func goldenLines(tb testing.TB) []byte {
	var out []byte
	for _, g := range goldenSpans(tb) {
		out = appendJSONSpan(out, &g.span, &g.ids, newLayout(g.span.Attributes),
			g.span.Parent.TraceState().String(), encodeResource(g.res).json)
	}
	return out
}

func TestJSONGolden(t *testing.T) {
	golden := filepath.Join("testdata", "spans.golden.jsonl")
	got := goldenLines(t)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
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

// TestStdoutWholeLines: one write per batch, made of whole lines only, so
// lines never interleave with another writer's.
func TestStdoutWholeLines(t *testing.T) {
	w := &recordingWriter{}
	e := mustExporter(t, Config{Kind: KindStdout, Stdout: w, BatchTimeout: time.Hour})
	for range 3 {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
	mustShutdown(t, e)
	if len(w.writes) != 1 {
		t.Errorf("got %d writes for one batch of 3 spans, want 1", len(w.writes))
	}
	for i, wr := range w.writes {
		if !bytes.HasSuffix(wr, []byte("\n")) || bytes.Count(wr, []byte("\n")) != 3 {
			t.Errorf("write %d is not 3 whole lines: %q", i, wr)
		}
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

func TestJSONKeys(t *testing.T) {
	// The documented line format, independent of the golden file.
	lines := decodeLines(t, goldenLines(t))
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
