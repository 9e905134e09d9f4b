package export

import (
	"container/list"
	"context"
	"path/filepath"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// scopeName is the instrumentation scope of every exported span.
const scopeName = "github.com/authprobe/authprobe"

// processCache turns spans into SDK read-only spans carrying their process's
// resource. The SDK owns a span's resource through its TracerProvider, so
// there is one provider per process, kept in a bounded LRU. The providers
// export nothing themselves: a capture processor hands each ended span back
// to the worker, which batches spans of all processes for one exporter.
// It is used by the worker goroutine only, so it takes no locks.
type processCache struct {
	max     int
	base    []attribute.KeyValue // telemetry.sdk.*, host.name, ExtraResource
	extra   func(spanbuilder.Process) []attribute.KeyValue
	capture *captureProcessor
	byKey   map[spanbuilder.Process]*list.Element
	lru     *list.List // of *processEntry, most recently used first
}

type processEntry struct {
	key      spanbuilder.Process
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

func newProcessCache(cfg Config) *processCache {
	base := []attribute.KeyValue{
		semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo,
		semconv.TelemetrySDKVersion(sdk.Version()),
	}
	if cfg.HostName != "" {
		base = append(base, semconv.HostName(cfg.HostName))
	}
	base = append(base, cfg.ExtraResource...)
	return &processCache{
		max:     cfg.MaxProcesses,
		base:    base,
		extra:   cfg.ProcessResource,
		capture: &captureProcessor{},
		byKey:   make(map[spanbuilder.Process]*list.Element),
		lru:     list.New(),
	}
}

// record turns s into an ended SDK span: the exact times of s, a child of
// s.Parent in its trace (tracestate kept) or the root of a new trace.
func (c *processCache) record(s spanbuilder.Span) (sdktrace.ReadOnlySpan, bool) {
	ctx := context.Background()
	if s.Parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, s.Parent)
	}
	_, span := c.tracer(s.Process).Start(ctx, s.Name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(s.Start),
		trace.WithAttributes(s.Attributes...),
	)
	span.SetStatus(s.StatusCode, s.StatusMessage)
	span.End(trace.WithTimestamp(s.End))
	return c.capture.take()
}

func (c *processCache) tracer(p spanbuilder.Process) trace.Tracer {
	if el, ok := c.byKey[p]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*processEntry).tracer
	}
	if c.lru.Len() >= c.max {
		oldest := c.lru.Back()
		c.evict(oldest)
	}
	provider := sdktrace.NewTracerProvider(
		// The agent's spans are security events: a caller's unsampled
		// traceparent must not hide them; the collector samples.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(c.resource(p)),
		sdktrace.WithSpanProcessor(c.capture),
	)
	entry := &processEntry{key: p, provider: provider, tracer: provider.Tracer(scopeName)}
	c.byKey[p] = c.lru.PushFront(entry)
	return entry.tracer
}

func (c *processCache) resource(p spanbuilder.Process) *resource.Resource {
	attrs := append([]attribute.KeyValue(nil), c.base...)
	if c.extra != nil {
		attrs = append(attrs, c.extra(p)...)
	}
	// The process's own identity comes last so that nothing overrides it
	// (attribute sets keep the last value of a key).
	name := p.ServiceName
	if name == "" && p.Exe != "" {
		name = filepath.Base(p.Exe)
	}
	if name == "" {
		name = "unknown_service"
	}
	attrs = append(attrs, semconv.ServiceName(name))
	if p.PID != 0 {
		attrs = append(attrs, semconv.ProcessPID(int(p.PID)))
	}
	if p.Exe != "" {
		attrs = append(attrs,
			semconv.ProcessExecutableName(filepath.Base(p.Exe)),
			semconv.ProcessExecutablePath(p.Exe),
		)
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...)
}

func (c *processCache) evict(el *list.Element) {
	entry := c.lru.Remove(el).(*processEntry)
	delete(c.byKey, entry.key)
	// Shutting the provider down only releases it: the capture processor
	// ignores Shutdown and the shared exporter is not the provider's.
	_ = entry.provider.Shutdown(context.Background())
}

func (c *processCache) close() {
	for c.lru.Len() > 0 {
		c.evict(c.lru.Back())
	}
}

// captureProcessor is the span processor of every provider in the cache: it
// keeps the span that just ended for record to take. End calls OnEnd
// synchronously, on the worker goroutine.
type captureProcessor struct {
	ended sdktrace.ReadOnlySpan
}

func (p *captureProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *captureProcessor) OnEnd(s sdktrace.ReadOnlySpan) { p.ended = s }

func (p *captureProcessor) Shutdown(context.Context) error { return nil }

func (p *captureProcessor) ForceFlush(context.Context) error { return nil }

func (p *captureProcessor) take() (sdktrace.ReadOnlySpan, bool) {
	s := p.ended
	p.ended = nil
	return s, s != nil
}
