package export

import (
	"container/list"
	"path/filepath"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/authprobe/authprobe/spanbuilder"
)

// instrumentationScope is the scope of every exported span.
const instrumentationScope = "github.com/authprobe/authprobe"

// resourceEntry is one process's resource, encoded once: the JSON object of
// the stdout line and the OTLP ResourceSpans.resource field.
type resourceEntry struct {
	key  spanbuilder.Process
	json []byte
	otlp []byte // tag, length, Resource
	el   *list.Element
}

// resourceCache builds and keeps the resources of the processes seen
// lately, in a bounded LRU. It is used under the exporter's lock only.
type resourceCache struct {
	max   int
	base  []attribute.KeyValue // telemetry.sdk.*, host.name, ExtraResource
	extra func(spanbuilder.Process) []attribute.KeyValue
	byKey map[spanbuilder.Process]*resourceEntry
	lru   *list.List // of *resourceEntry, most recently used first
	last  *resourceEntry
}

func newResourceCache(cfg Config) *resourceCache {
	base := []attribute.KeyValue{
		semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo,
		semconv.TelemetrySDKVersion(sdk.Version()),
	}
	if cfg.HostName != "" {
		base = append(base, semconv.HostName(cfg.HostName))
	}
	base = append(base, cfg.ExtraResource...)
	return &resourceCache{
		max:   cfg.MaxProcesses,
		base:  base,
		extra: cfg.ProcessResource,
		byKey: map[spanbuilder.Process]*resourceEntry{},
		lru:   list.New(),
	}
}

// get returns p's resource, building it on first sight. Spans arrive in
// runs of one process, so the last entry is checked before the map.
func (c *resourceCache) get(p spanbuilder.Process) *resourceEntry {
	if c.last != nil && c.last.key == p {
		return c.last
	}
	r, ok := c.byKey[p]
	if ok {
		c.lru.MoveToFront(r.el)
	} else {
		if c.lru.Len() >= c.max {
			old := c.lru.Remove(c.lru.Back()).(*resourceEntry)
			delete(c.byKey, old.key)
		}
		r = c.build(p)
		r.el = c.lru.PushFront(r)
		c.byKey[p] = r
	}
	c.last = r
	return r
}

func (c *resourceCache) build(p spanbuilder.Process) *resourceEntry {
	r := encodeResource(c.attributes(p))
	r.key = p
	return r
}

// attributes is p's resource before encoding.
func (c *resourceCache) attributes(p spanbuilder.Process) []attribute.KeyValue {
	attrs := append([]attribute.KeyValue(nil), c.base...)
	if c.extra != nil {
		attrs = append(attrs, c.extra(p)...)
	}
	// The process's own identity comes last so that nothing overrides it
	// (a repeated key keeps its last value).
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
	return attrs
}

// encodeResource encodes a resource's attributes; a repeated key keeps its
// last value.
func encodeResource(attrs []attribute.KeyValue) *resourceEntry {
	lay := newLayout(attrs)
	r := &resourceEntry{}

	r.json = append(r.json, '{')
	for i, at := range lay.order {
		if i > 0 {
			r.json = append(r.json, ',')
		}
		r.json = append(r.json, lay.jsonKey(i)...)
		r.json = appendValue(r.json, attrs[at].Value)
	}
	r.json = append(r.json, '}')

	var body []byte
	for i, at := range lay.order {
		body = appendAttribute(body, resAttributes, lay.otlpKey(i), attrs[at].Value)
	}
	r.otlp = protowire.AppendTag(nil, rsResource, protowire.BytesType)
	r.otlp = protowire.AppendBytes(r.otlp, body)
	return r
}

// scopeSpansHead is ScopeSpans.scope, the same for every batch.
func scopeField() []byte {
	var scope []byte
	scope = protowire.AppendTag(scope, scopeName, protowire.BytesType)
	scope = protowire.AppendString(scope, instrumentationScope)
	b := protowire.AppendTag(nil, ssScope, protowire.BytesType)
	return protowire.AppendBytes(b, scope)
}

// schemaField is ResourceSpans.schema_url.
func schemaField() []byte {
	b := protowire.AppendTag(nil, rsSchemaURL, protowire.BytesType)
	return protowire.AppendString(b, semconv.SchemaURL)
}
