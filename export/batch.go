package export

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/authprobe/authprobe/spanbuilder"
)

// openBatch is the batch spans are encoded into as they are emitted, on the
// emitter's goroutine: JSON lines one after the other, or OTLP spans grouped
// by process. Sealing gives the batch's final bytes (all of its lines, or
// an ExportTraceServiceRequest). It is used under the exporter's lock only.
type openBatch struct {
	otlp  bool
	n     int // spans
	bytes int // encoded so far

	lines []byte // JSON

	groups  []otlpGroup // OTLP: the spans of each process, in first-seen order
	byRes   map[*resourceEntry]int
	scope   []byte // ScopeSpans.scope
	schema  []byte // ResourceSpans.schema_url
	scratch [][]byte
	body    []byte // one span's encoding, reused
}

type otlpGroup struct {
	res   *resourceEntry
	spans []byte // ScopeSpans.spans fields
}

// maxRetainedBuffer bounds what an encode buffer keeps between batches.
const maxRetainedBuffer = 4 << 20

func newOpenBatch(otlp bool) *openBatch {
	b := &openBatch{otlp: otlp}
	if otlp {
		b.byRes = map[*resourceEntry]int{}
		b.scope = scopeField()
		b.schema = schemaField()
	}
	return b
}

func (b *openBatch) addJSON(s *spanbuilder.Span, ids *spanIDs, lay *layout, traceState string, res *resourceEntry) {
	before := len(b.lines)
	b.lines = appendJSONSpan(b.lines, s, ids, lay, traceState, res.json)
	b.n++
	b.bytes += len(b.lines) - before
}

func (b *openBatch) addOTLP(s *spanbuilder.Span, ids *spanIDs, lay *layout, traceState string, res *resourceEntry) {
	g := b.group(res)
	before := len(g.spans)
	g.spans, b.body = appendOTLPSpan(g.spans, b.body, s, ids, lay, traceState)
	b.n++
	b.bytes += len(g.spans) - before
}

func (b *openBatch) group(res *resourceEntry) *otlpGroup {
	if n := len(b.groups); n > 0 && b.groups[n-1].res == res {
		return &b.groups[n-1]
	}
	if i, ok := b.byRes[res]; ok {
		return &b.groups[i]
	}
	b.byRes[res] = len(b.groups)
	// A new group reuses the span buffer an earlier batch left in its slot.
	var buf []byte
	if n := len(b.scratch); n > 0 {
		buf, b.scratch = b.scratch[n-1][:0], b.scratch[:n-1]
	}
	b.groups = append(b.groups, otlpGroup{res: res, spans: buf})
	b.bytes += len(res.otlp) + len(b.scope) + len(b.schema) + 12 // framing, near enough
	return &b.groups[len(b.groups)-1]
}

// seal returns the batch's bytes and empties it; fresh is an empty buffer
// (a recycled one) the batch continues with or writes into. The bytes
// returned are the caller's: the open batch keeps none of them.
func (b *openBatch) seal(fresh []byte) []byte {
	defer func() { b.n, b.bytes = 0, 0 }()
	if !b.otlp {
		out := b.lines
		b.lines = fresh[:0]
		return out
	}
	out := fresh[:0]
	for i := range b.groups {
		g := &b.groups[i]
		ss := len(b.scope) + len(g.spans)
		out = protowire.AppendTag(out, requestResourceSpans, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(b.resourceSpansSize(g)))
		out = append(out, g.res.otlp...)
		out = protowire.AppendTag(out, rsScopeSpans, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(ss))
		out = append(out, b.scope...)
		out = append(out, g.spans...)
		out = append(out, b.schema...)
		if cap(g.spans) <= maxRetainedBuffer {
			b.scratch = append(b.scratch, g.spans[:0])
		}
	}
	clear(b.groups) // drop the resource references
	b.groups = b.groups[:0]
	clear(b.byRes)
	return out
}

func (b *openBatch) resourceSpansSize(g *otlpGroup) int {
	ss := len(b.scope) + len(g.spans)
	return len(g.res.otlp) + 1 + sizeBytes(ss) + len(b.schema)
}
