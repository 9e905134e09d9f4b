package otlpsink

import (
	"bytes"
	"context"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func mustClient(tb testing.TB, addr string) coltracepb.TraceServiceClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc client: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return coltracepb.NewTraceServiceClient(conn)
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func request(service string, names ...string) *coltracepb.ExportTraceServiceRequest {
	var spans []*tracepb.Span
	for _, n := range names {
		spans = append(spans, &tracepb.Span{Name: n, Attributes: []*commonpb.KeyValue{
			str("auth.result", "success"),
			{Key: "code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}},
			{Key: "roles", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
				Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: "admin"}}},
			}}}},
		}})
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", service)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "test"}, Spans: spans}},
	}}}
}

func TestSink(t *testing.T) {
	sink := Start(t)
	client := mustClient(t, sink.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := client.Export(ctx, request("svc-a", "one", "two")); err != nil {
		t.Fatalf("export: %v", err)
	}
	sink.FailWith(status.Error(codes.Unavailable, "down"))
	if _, err := client.Export(ctx, request("svc-b", "lost")); status.Code(err) != codes.Unavailable {
		t.Fatalf("export while failing: err = %v, want Unavailable", err)
	}
	sink.FailWith(nil)
	if _, err := client.Export(ctx, request("svc-b", "three")); err != nil {
		t.Fatalf("export: %v", err)
	}

	spans := sink.WaitForSpans(t, 3, 5*time.Second)
	tests := []struct {
		name, service string
	}{
		{"one", "svc-a"},
		{"two", "svc-a"},
		{"three", "svc-b"},
	}
	if len(spans) != len(tests) {
		t.Fatalf("got %d spans, want %d", len(spans), len(tests))
	}
	for i, tt := range tests {
		s := spans[i]
		if s.Span.GetName() != tt.name || s.ResourceAttrs()["service.name"] != tt.service || s.Scope.GetName() != "test" {
			t.Errorf("span %d = %s from %v, want %s from %s", i, s.Span.GetName(), s.ResourceAttrs(), tt.name, tt.service)
		}
		attrs := s.Attrs()
		if attrs["auth.result"] != "success" || attrs["code"] != int64(200) {
			t.Errorf("span %d attrs = %v", i, attrs)
		}
		if roles, _ := attrs["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
			t.Errorf("span %d roles = %v", i, attrs["roles"])
		}
	}

	raw := sink.RawPayloads()
	if len(raw) != 2 {
		t.Fatalf("got %d payloads, want 2 (failed requests are not kept)", len(raw))
	}
	if !bytes.Contains(raw[0], []byte("svc-a")) || bytes.Contains(bytes.Join(raw, nil), []byte("lost")) {
		t.Errorf("payloads do not match the accepted requests")
	}
}
