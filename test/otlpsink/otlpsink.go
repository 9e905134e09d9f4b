// Package otlpsink is a real OTLP/gRPC trace receiver for tests: it takes
// ExportTraceServiceRequests on a loopback port and gives the received
// spans, each with its resource and scope, and the raw request payloads.
package otlpsink

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with the resource and scope it came under.
type Span struct {
	Span     *tracepb.Span
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
}

// Attrs returns the span's attributes as Go values (see Value).
func (s Span) Attrs() map[string]any { return Attrs(s.Span.GetAttributes()) }

// ResourceAttrs returns the resource's attributes as Go values (see Value).
func (s Span) ResourceAttrs() map[string]any { return Attrs(s.Resource.GetAttributes()) }

// Sink is a running OTLP/gRPC trace receiver.
type Sink struct {
	coltracepb.UnimplementedTraceServiceServer

	lis net.Listener
	srv *grpc.Server

	countOnly bool // keep no span, only count them (benchmarks)
	served    chan struct{}

	mu      sync.Mutex
	spans   []Span
	count   int
	raw     [][]byte
	failErr error
	changed chan struct{} // closed and replaced on every request
}

// Start serves OTLP/gRPC on a fresh 127.0.0.1 port until the test ends.
func Start(tb testing.TB) *Sink {
	return start(tb, false)
}

// StartCounting is Start for load: the spans are counted (Count), not kept.
func StartCounting(tb testing.TB) *Sink {
	return start(tb, true)
}

func start(tb testing.TB, countOnly bool) *Sink {
	tb.Helper()
	s, err := Listen("127.0.0.1:0", countOnly)
	if err != nil {
		tb.Fatalf("otlpsink: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen serves OTLP/gRPC on addr until Close, for programs that are not
// tests (the bench harness). With countOnly the spans are counted, not kept.
func Listen(addr string, countOnly bool) (*Sink, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Sink{lis: lis, srv: grpc.NewServer(), changed: make(chan struct{}), countOnly: countOnly, served: make(chan struct{})}
	coltracepb.RegisterTraceServiceServer(s.srv, s)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(lis) // returns when stopped
	}()
	return s, nil
}

// Close stops the receiver.
func (s *Sink) Close() {
	s.srv.Stop()
	<-s.served
}

// Count is the number of spans received so far.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Addr is the receiver's host:port.
func (s *Sink) Addr() string { return s.lis.Addr().String() }

// FailWith makes later requests fail with err (a grpc status error, e.g.
// status.Error(codes.InvalidArgument, "...")); nil accepts them again.
// Failed requests are neither recorded nor counted as received.
func (s *Sink) FailWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failErr = err
}

// Export implements coltracepb.TraceServiceServer.
func (s *Sink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var raw []byte
	if !s.countOnly {
		var err error
		if raw, err = proto.Marshal(req); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	if !s.countOnly {
		s.raw = append(s.raw, raw)
	}
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.count += len(ss.GetSpans())
			if s.countOnly {
				continue
			}
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, Span{Span: sp, Resource: rs.GetResource(), Scope: ss.GetScope()})
			}
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far, in arrival order.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Span(nil), s.spans...)
}

// RawPayloads returns every accepted request, proto-marshalled, so a test
// can search what went over the wire.
func (s *Sink) RawPayloads() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.raw...)
}

// WaitForSpans waits until at least n spans arrived and returns them all;
// it fails the test after timeout.
func (s *Sink) WaitForSpans(tb testing.TB, n int, timeout time.Duration) []Span {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.spans), s.changed
		if got >= n {
			spans := append([]Span(nil), s.spans...)
			s.mu.Unlock()
			return spans
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("otlpsink: got %d spans after %v, want at least %d", got, timeout, n)
			return nil
		}
	}
}

// Attrs turns OTLP key-values into Go values (see Value).
func Attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = Value(kv.GetValue())
	}
	return m
}

// Value turns an OTLP value into string, int64, bool, float64, []byte,
// []any (arrays) or map[string]any (kvlists); nil when empty.
func Value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, Value(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return Attrs(x.KvlistValue.GetValues())
	default:
		return nil
	}
}
