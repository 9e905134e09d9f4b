package export

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/authprobe/authprobe/spanbuilder"
)

// sdkPath is how spans were exported before the direct encoders, kept as
// the reference the tests compare with and the benchmarks race: one SDK
// TracerProvider per process (its resource), an SDK span started and ended
// per auth span, then otlptrace's transform to protobuf structs and
// proto.Marshal (what the gRPC client does), or the JSON line of the
// ended SDK span.
type sdkPath struct {
	res       *resourceCache
	ids       *fixedIDs
	capture   *captureProcessor
	providers map[spanbuilder.Process]trace.Tracer
	exp       *otlptrace.Exporter
	client    *captureClient
}

func newSDKPath(tb testing.TB, cfg Config) *sdkPath {
	tb.Helper()
	cfg, err := withDefaults(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	client := &captureClient{}
	exp, err := otlptrace.New(context.Background(), client)
	if err != nil {
		tb.Fatal(err)
	}
	return &sdkPath{
		res: newResourceCache(cfg), ids: &fixedIDs{}, capture: &captureProcessor{},
		providers: map[spanbuilder.Process]trace.Tracer{}, exp: exp, client: client,
	}
}

// record ends s as an SDK span with ids.
func (p *sdkPath) record(s *spanbuilder.Span, ids spanIDs) sdktrace.ReadOnlySpan {
	tr, ok := p.providers[s.Process]
	if !ok {
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, p.res.attributes(s.Process)...)),
			sdktrace.WithSpanProcessor(p.capture),
			sdktrace.WithIDGenerator(p.ids),
		)
		tr = tp.Tracer(instrumentationScope)
		p.providers[s.Process] = tr
	}
	p.ids.next = ids
	ctx := context.Background()
	if s.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, s.Parent)
	}
	_, span := tr.Start(ctx, s.Name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(s.Start),
		trace.WithAttributes(s.Attributes...),
	)
	span.SetStatus(s.StatusCode, s.StatusMessage)
	span.End(trace.WithTimestamp(s.End))
	return p.capture.ended
}

// otlp is the SDK's protobuf of spans, as the gRPC client would send it.
func (p *sdkPath) otlp(tb testing.TB, ended []sdktrace.ReadOnlySpan) []byte {
	if err := p.exp.ExportSpans(context.Background(), ended); err != nil {
		tb.Fatal(err)
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: p.client.got})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type captureProcessor struct{ ended sdktrace.ReadOnlySpan }

func (p *captureProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *captureProcessor) OnEnd(s sdktrace.ReadOnlySpan)                   { p.ended = s }
func (p *captureProcessor) Shutdown(context.Context) error                  { return nil }
func (p *captureProcessor) ForceFlush(context.Context) error                { return nil }

// captureClient is an otlptrace.Client that keeps what it is given.
type captureClient struct{ got []*tracepb.ResourceSpans }

func (c *captureClient) Start(context.Context) error { return nil }
func (c *captureClient) Stop(context.Context) error  { return nil }
func (c *captureClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	c.got = rs
	return nil
}

// fixedIDs makes the SDK use the ids of the direct path.
type fixedIDs struct{ next spanIDs }

func (g *fixedIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return g.next.trace, g.next.span
}

func (g *fixedIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return g.next.span }

// appendSDKSpan is the JSON encoder of SDK spans the direct encoder
// replaced (its output is testdata/spans.golden.jsonl).
func appendSDKSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name())
	b = append(b, `,"trace_id":"`...)
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendHex(b, tid[:])
	b = append(b, `","span_id":"`...)
	b = appendHex(b, sid[:])
	b = append(b, `","parent_span_id":"`...)
	if p := s.Parent(); p.SpanID().IsValid() {
		id := p.SpanID()
		b = appendHex(b, id[:])
	}
	b = append(b, `","kind":`...)
	b = appendString(b, strings.ToUpper(s.SpanKind().String()))
	b = append(b, `,"start_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.StartTime().UnixNano(), 10)
	b = append(b, `,"end_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.EndTime().UnixNano(), 10)
	b = append(b, `,"status_code":`...)
	b = appendString(b, statusWord(s.Status().Code))
	if m := s.Status().Description; m != "" {
		b = append(b, `,"status_message":`...)
		b = appendString(b, m)
	}
	if ts := sc.TraceState().String(); ts != "" {
		b = append(b, `,"trace_state":`...)
		b = appendString(b, ts)
	}
	b = append(b, `,"attributes":`...)
	b = appendAttributes(b, s.Attributes())
	b = append(b, `,"resource":`...)
	if r := s.Resource(); r != nil {
		b = appendAttributes(b, r.Attributes())
	} else {
		b = append(b, "{}"...)
	}
	return append(b, "}\n"...)
}

// loginSpan is the span of a failed form login as spanbuilder builds it
// (the README's example), the shape the benchmarks measure.
func loginSpan(parent trace.SpanContext) spanbuilder.Span {
	s := testSpan("auth.login", parent, spanbuilder.Process{PID: 9698,
		Exe: filepath.Join("/root/.pyenv/versions/3.11.7/bin", "python3.11"), ServiceName: "auth-service"})
	s.StatusMessage = "authentication failed: invalid_credentials"
	s.Attributes = []attribute.KeyValue{
		attribute.String("auth.result", "failure"),
		attribute.String("auth.failure_reason", "invalid_credentials"),
		attribute.String("net.peer.ip", "127.0.0.2"),
		attribute.String("client.address", "127.0.0.2"),
		attribute.String("network.peer.address", "127.0.0.2"),
		attribute.Int("network.peer.port", 58092),
		attribute.String("auth.user_agent", "curl/7.88.1"),
		attribute.String("user_agent.original", "curl/7.88.1"),
		attribute.String("http.target", "/login"),
		attribute.String("url.path", "/login"),
		attribute.String("http.route", "/login"),
		attribute.String("http.request.method", "POST"),
		attribute.Int("http.response.status_code", 401),
		attribute.Int("server.port", 34767),
		attribute.String("auth.resource", "/login"),
		attribute.String("auth.route.kind", "login"),
		attribute.String("auth.method", "password"),
		attribute.String("auth.username", "hmac:81c4f8bb16c423d13879bd3d4d87383c"),
		attribute.String("auth.client.subnet", "127.0.0.0/24"),
	}
	return s
}
