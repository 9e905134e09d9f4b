package export

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// hostileStrings are values the wire can put into attributes.
var hostileStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"ctl \x00\x01\x1f\x7f \b\f\n\r\t", "bad utf8 \xff\xfe\xc3", "sep \u2028 \u2029",
	"emoji 🔐 ünïcödé", "\xe2\x80", "trailing \\",
}

func TestAppendSpanMatchesEncodingJSON(t *testing.T) {
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, Remote: true,
	})
	ts, err := trace.ParseTraceState("a=1,b=2")
	require.NoError(t, err)
	var attrs []attribute.KeyValue
	for i, s := range hostileStrings {
		attrs = append(attrs, attribute.String("s."+string(rune('a'+i)), s))
	}
	attrs = append(attrs,
		attribute.Int64("i", -42), attribute.Bool("b", true),
		attribute.Float64("f", 0.1), attribute.Float64("f.big", 1e300), attribute.Float64("f.small", 1e-9),
		attribute.Float64("f.nan", math.NaN()), attribute.Float64("f.inf", math.Inf(-1)),
		attribute.StringSlice("ss", hostileStrings), attribute.Int64Slice("is", []int64{1, -2}),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{1.5, math.Inf(1)}),
		attribute.String("dup", "first"), attribute.String("dup", "last"),
		attribute.String(hostileStrings[4], "key with control chars"),
	)
	stubs := tracetest.SpanStubs{
		{
			Name:        "auth.login",
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{7}, TraceState: ts}),
			Parent:      parent,
			SpanKind:    trace.SpanKindServer,
			StartTime:   time.Unix(1, 2), EndTime: time.Unix(3, 4),
			Status:     sdktrace.Status{Code: codes.Error, Description: hostileStrings[5]},
			Attributes: attrs,
			Resource:   resource.NewSchemaless(attribute.String("service.name", "svc"), attribute.Int("process.pid", 7)),
		},
		{Name: hostileStrings[6], SpanKind: trace.SpanKindInternal},
	}.Snapshots()
	for _, s := range stubs {
		got := appendSpan(nil, s)
		require.Equal(t, string(oracleLine(s)), string(got))
		require.True(t, json.Valid(got))
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range hostileStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// encoding/json escapes <, > and & by default; appendString, like
		// the exporter's encoder before it, does not.
		var unescaped []byte
		enc := json.NewEncoder(&byteWriter{&unescaped})
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(s))
		require.Equal(t, string(unescaped[:len(unescaped)-1]), string(appendString(nil, s)))
	})
}

type byteWriter struct{ b *[]byte }

func (w *byteWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func BenchmarkAppendSpan(b *testing.B) {
	attrs := []attribute.KeyValue{
		attribute.String("auth.result", "failure"), attribute.String("auth.failure_reason", "invalid_credentials"),
		attribute.String("auth.method", "password"), attribute.String("client.address", "127.0.0.2"),
		attribute.String("http.route", "/login"), attribute.Int("http.response.status_code", 401),
		attribute.String("user_agent.original", "curl/7.88.1"), attribute.String("auth.username", "hmac:81c4f8bb16c423d13879bd3d4d87383c"),
	}
	s := tracetest.SpanStubs{{Name: "auth.login", SpanKind: trace.SpanKindServer, Attributes: attrs,
		Resource: resource.NewSchemaless(attribute.String("service.name", "svc"))}}.Snapshots()[0]
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = appendSpan(buf[:0], s)
	}
}
