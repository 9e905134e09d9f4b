package export

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/authprobe/authprobe/spanbuilder"
)

// validAttributes are hostileAttributes without what protobuf cannot carry
// as is (invalid UTF-8, sanitised; see TestOTLPInvalidUTF8).
func validAttributes() []attribute.KeyValue {
	var out []attribute.KeyValue
	for _, kv := range hostileAttributes() {
		ok := utf8.ValidString(string(kv.Key))
		switch kv.Value.Type() {
		case attribute.STRING:
			ok = ok && utf8.ValidString(kv.Value.AsString())
		case attribute.STRINGSLICE:
			ok = ok && !slices.ContainsFunc(kv.Value.AsStringSlice(), func(s string) bool { return !utf8.ValidString(s) })
		}
		if ok {
			out = append(out, kv)
		}
	}
	return out
}

// otlpTestSpans cover parents, tracestate, status and every value type.
func otlpTestSpans(tb testing.TB) []spanbuilder.Span {
	ts, err := trace.ParseTraceState("vendor=opaque,other=1")
	require.NoError(tb, err)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(tb, "4bf92f3577b34da6a3ce929d0e0e4736"), SpanID: mustSpanID(tb, "00f067aa0ba902b7"),
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(tb, "4bf92f3577b34da6a3ce929d0e0e4736"), SpanID: mustSpanID(tb, "00f067aa0ba902b8"), Remote: true,
	})
	hostile := testSpan("auth.authorize", parent, procToken)
	hostile.Attributes = validAttributes()
	many := testSpan("auth.token", trace.SpanContext{}, procLogin)
	for i := range maxAttributes + 5 {
		many.Attributes = append(many.Attributes, attribute.Int("n."+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), i))
	}
	ok := testSpan("auth.logout", trace.SpanContext{}, procLogin)
	ok.StatusCode, ok.StatusMessage = codes.Ok, "ignored unless error"
	unset := testSpan("auth.login", unsampled, procToken)
	unset.StatusCode = codes.Unset
	unset.Start = time.Unix(0, -1) // before 1970: 0, as the SDK writes
	return []spanbuilder.Span{loginSpan(parent), loginSpan(trace.SpanContext{}), hostile, many, ok, unset,
		{Name: "empty", Process: procLogin, Start: time.Unix(1, 0), End: time.Unix(1, 0)}}
}

// TestOTLPMatchesSDK: the direct encoder sends what the SDK path sent, span
// for span, resource for resource (attributes compared as sets).
func TestOTLPMatchesSDK(t *testing.T) {
	spans := otlpTestSpans(t)
	cfg := Config{Kind: KindOTLP, HostName: "node-1", ExtraResource: []attribute.KeyValue{attribute.String("k8s.node.name", "node-1")}}
	sdk := newSDKPath(t, cfg)
	e := &Exporter{layouts: newLayouts(), resources: newResourceCache(mustDefaults(t, cfg)), open: newOpenBatch(true)}

	var ended []sdktrace.ReadOnlySpan
	for i := range spans {
		s := &spans[i]
		ids := testIDs(s.Parent)
		ids.span[7] = byte(i + 1)
		if !s.Parent.IsValid() {
			ids.trace[15] = byte(i + 1)
		}
		ended = append(ended, sdk.record(s, ids))
		e.open.addOTLP(s, &ids, e.layouts.get(s.Attributes), s.Parent.TraceState().String(), e.resources.get(s.Process))
	}
	want := decodeRequest(t, sdk.otlp(t, ended))
	got := decodeRequest(t, e.open.seal(nil))

	normalize(want)
	normalize(got)
	if !proto.Equal(want, got) {
		t.Fatalf("direct encoding differs from the SDK's:\nsdk:\n%s\ndirect:\n%s",
			prototext.Format(want), prototext.Format(got))
	}
	if n := countSpans(got); n != len(spans) {
		t.Fatalf("decoded %d spans, want %d", n, len(spans))
	}
}

func mustDefaults(tb testing.TB, cfg Config) Config {
	cfg, err := withDefaults(cfg)
	require.NoError(tb, err)
	return cfg
}

// normalize orders what may come in any order: resources, attributes.
func normalize(req *coltracepb.ExportTraceServiceRequest) {
	byKey := func(a, b *commonpb.KeyValue) int { return cmp.Compare(a.GetKey(), b.GetKey()) }
	slices.SortFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int {
		return cmp.Compare(serviceOf(a), serviceOf(b))
	})
	for _, rs := range req.GetResourceSpans() {
		slices.SortFunc(rs.GetResource().Attributes, byKey)
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				slices.SortFunc(sp.Attributes, byKey)
			}
		}
	}
}

func serviceOf(rs *tracepb.ResourceSpans) string {
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == "process.pid" {
			return kv.GetValue().String()
		}
	}
	return ""
}

func decodeRequest(tb testing.TB, b []byte) *coltracepb.ExportTraceServiceRequest {
	tb.Helper()
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(tb, proto.Unmarshal(b, &req))
	return &req
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// TestOTLPInvalidUTF8: bytes protobuf strings cannot hold become U+FFFD,
// so one bad value does not make the collector reject the whole batch.
func TestOTLPInvalidUTF8(t *testing.T) {
	s := testSpan("auth.login\xff", trace.SpanContext{}, spanbuilder.Process{PID: 1, Exe: "/bin/ba\xc3d"})
	s.StatusMessage = "bad \xfe"
	s.Attributes = hostileAttributes()
	e := &Exporter{layouts: newLayouts(), resources: newResourceCache(mustDefaults(t, Config{Kind: KindOTLP})), open: newOpenBatch(true)}
	ids := testIDs(s.Parent)
	e.open.addOTLP(&s, &ids, e.layouts.get(s.Attributes), "", e.resources.get(s.Process))
	req := decodeRequest(t, e.open.seal(nil)) // protobuf-go checks UTF-8
	sp := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
	require.Equal(t, "auth.login\uFFFD", sp.GetName())
	require.Equal(t, "bad \uFFFD", sp.GetStatus().GetMessage())
	got := map[string]any{}
	for _, kv := range sp.GetAttributes() {
		got[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	require.Equal(t, "bad utf8 \uFFFD", got["s.f"]) // a run of bad bytes is one U+FFFD
	// The empty key is dropped, as the SDK drops it.
	require.EqualValues(t, 1, sp.GetDroppedAttributesCount())
}

// FuzzOTLPSpan: whatever the strings, the encoding decodes (sizes are
// right, strings valid) to the span's values.
func FuzzOTLPSpan(f *testing.F) {
	for _, s := range hostileStrings {
		f.Add(s, s, int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, key, value string, n int64) {
		s := testSpan(value, trace.SpanContext{}, procLogin)
		s.Attributes = append(s.Attributes, attribute.String(key, value), attribute.Int64(key+".n", n),
			attribute.StringSlice(key+".s", []string{value, key}))
		e := &Exporter{layouts: newLayouts(), resources: newResourceCache(mustDefaults(t, Config{Kind: KindOTLP})), open: newOpenBatch(true)}
		ids := testIDs(s.Parent)
		e.open.addOTLP(&s, &ids, e.layouts.get(s.Attributes), "", e.resources.get(s.Process))
		req := decodeRequest(t, e.open.seal(nil))
		sp := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
		require.Equal(t, strings.ToValidUTF8(value, "\uFFFD"), sp.GetName())
		if key != "" {
			var found bool
			for _, kv := range sp.GetAttributes() {
				if kv.GetKey() == strings.ToValidUTF8(key+".n", "\uFFFD") {
					found = kv.GetValue().GetIntValue() == n
				}
			}
			require.True(t, found, "int attribute %q", key+".n")
		}
	})
}
