package export

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// hostileStrings are values the wire can put into attributes.
var hostileStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"ctl \x00\x01\x1f\x7f \b\f\n\r\t", "bad utf8 \xff\xfe\xc3", "sep \u2028 \u2029",
	"emoji 🔐 ünïcödé", "\xe2\x80", "trailing \\",
}

// hostileAttributes holds every value type, repeated keys, an empty key
// (dropped) and an invalid value (null, as the SDK path wrote it).
func hostileAttributes() []attribute.KeyValue {
	var attrs []attribute.KeyValue
	for i, s := range hostileStrings {
		attrs = append(attrs, attribute.String("s."+string(rune('a'+i)), s))
	}
	return append(attrs,
		attribute.Int64("i", -42), attribute.Bool("b", true), attribute.Int64("i.max", math.MaxInt64),
		attribute.Float64("f", 0.1), attribute.Float64("f.big", 1e300), attribute.Float64("f.small", 1e-9),
		attribute.Float64("f.nan", math.NaN()), attribute.Float64("f.inf", math.Inf(-1)),
		attribute.StringSlice("ss", hostileStrings), attribute.Int64Slice("is", []int64{1, -2}),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{1.5, math.Inf(1)}),
		attribute.StringSlice("ss.empty", []string{}),
		attribute.String("dup", "first"), attribute.String("dup", "last"),
		attribute.String(hostileStrings[4], "key with control chars"),
		attribute.String("", "empty key, dropped"),
		attribute.KeyValue{Key: "invalid", Value: attribute.Value{}},
	)
}

func TestJSONLineMatchesEncodingJSON(t *testing.T) {
	ts, err := trace.ParseTraceState("a=1,b=2")
	require.NoError(t, err)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceState: ts, Remote: true,
	})
	res := []attribute.KeyValue{attribute.String("service.name", "svc"), attribute.Int("process.pid", 7),
		attribute.String("host.name", hostileStrings[5]), attribute.String("service.name", "last wins")}
	spans := []spanbuilder.Span{
		{
			Name: "auth.login", Parent: parent,
			Start: time.Unix(1, 2), End: time.Unix(3, 4),
			StatusCode: codes.Error, StatusMessage: hostileStrings[5],
			Attributes: hostileAttributes(),
		},
		{Name: hostileStrings[6], StatusCode: codes.Unset, StatusMessage: "dropped: not an error"},
		{Name: "auth.token", StatusCode: codes.Ok, Start: time.Unix(0, -5)},
	}
	for _, s := range spans {
		ids := testIDs(s.Parent)
		got := appendJSONSpan(nil, &s, &ids, newLayout(s.Attributes), s.Parent.TraceState().String(), encodeResource(res).json)
		require.Equal(t, string(oracleLine(s, ids, res)), string(got))
		require.True(t, json.Valid(got))
	}
}

// testIDs are fixed ids for the oracle and golden tests.
func testIDs(parent trace.SpanContext) spanIDs {
	ids := spanIDs{trace: [16]byte{0xa, 0xb}, span: [8]byte{7, 7, 7}}
	if parent.IsValid() {
		ids.trace, ids.parent = parent.TraceID(), parent.SpanID()
	}
	return ids
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
