package export

import (
	"math"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/authprobe/authprobe/spanbuilder"
)

// The OTLP protobuf encoding of spans, written with protowire straight from
// spanbuilder.Span: no SDK span, no tracepb structs, no reflection. Field
// numbers are those of opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto (go.opentelemetry.io/proto/otlp); the tests decode
// the output with those generated types and compare it with the SDK's.

// Span fields.
const (
	spanTraceID       = 1
	spanSpanID        = 2
	spanTraceState    = 3
	spanParentSpanID  = 4
	spanName          = 5
	spanKind          = 6
	spanStart         = 7
	spanEnd           = 8
	spanAttributes    = 9
	spanDroppedAttrs  = 10
	spanStatus        = 15
	spanFlags         = 16
	statusMessageNum  = 2
	statusCodeNum     = 3
	kindServer        = 2 // SPAN_KIND_SERVER
	kindClient        = 3 // SPAN_KIND_CLIENT
	statusCodeOK      = 1
	statusCodeError   = 2
	flagsHasIsRemote  = 0x100 // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
	flagsIsRemote     = 0x200 // SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
	traceFlagsSampled = 0x01
)

// Fields of the messages around spans.
const (
	requestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	rsResource           = 1 // ResourceSpans.resource
	rsScopeSpans         = 2 // ResourceSpans.scope_spans
	rsSchemaURL          = 3 // ResourceSpans.schema_url
	ssScope              = 1 // ScopeSpans.scope
	ssSpans              = 2 // ScopeSpans.spans
	resAttributes        = 1 // Resource.attributes
	scopeName            = 1 // InstrumentationScope.name
	kvKey                = 1 // KeyValue.key
	kvValue              = 2 // KeyValue.value
	avString             = 1 // AnyValue.string_value
	avBool               = 2
	avInt                = 3
	avDouble             = 4
	avArray              = 5
	avKvlist             = 6
	avBytes              = 7
	listValues           = 1 // ArrayValue.values and KeyValueList.values
)

// appendOTLPSpan appends s as a ScopeSpans.spans entry (tag, length, Span).
// The body is written into scratch first, since its length comes before
// it; scratch (returned for reuse) saves sizing every field twice.
func appendOTLPSpan(b, scratch []byte, s *spanbuilder.Span, ids *spanIDs, lay *layout, traceState string) (out, scratchOut []byte) {
	body := scratch[:0]
	body = append(body, spanTraceID<<3|2, 16)
	body = append(body, ids.trace[:]...)
	body = append(body, spanSpanID<<3|2, 8)
	body = append(body, ids.span[:]...)
	if traceState != "" {
		body = protowire.AppendTag(body, spanTraceState, protowire.BytesType)
		body = protowire.AppendString(body, validUTF8(traceState))
	}
	hasParent := ids.parent != [8]byte{}
	if hasParent {
		body = append(body, spanParentSpanID<<3|2, 8)
		body = append(body, ids.parent[:]...)
	}
	body = protowire.AppendTag(body, spanName, protowire.BytesType)
	body = protowire.AppendString(body, validUTF8(s.Name))
	kind := byte(kindServer)
	if s.Kind == trace.SpanKindClient {
		kind = kindClient
	}
	body = append(body, spanKind<<3|0, kind)
	body = append(body, spanStart<<3|1)
	body = protowire.AppendFixed64(body, unixNano(s.Start.UnixNano()))
	body = append(body, spanEnd<<3|1)
	body = protowire.AppendFixed64(body, unixNano(s.End.UnixNano()))
	for i, at := range lay.order {
		body = appendAttribute(body, spanAttributes, lay.otlpKey(i), s.Attributes[at].Value)
	}
	if lay.dropped > 0 {
		body = append(body, spanDroppedAttrs<<3|0)
		body = protowire.AppendVarint(body, uint64(lay.dropped))
	}
	msg := validUTF8(statusMessage(s))
	body = protowire.AppendTag(body, spanStatus, protowire.BytesType)
	body = protowire.AppendVarint(body, uint64(statusSize(s.StatusCode, msg)))
	body = appendStatus(body, s.StatusCode, msg)
	// The SDK's flags: sampled, and whether the parent is remote (known).
	flags := uint32(traceFlagsSampled | flagsHasIsRemote)
	if hasParent && s.Parent.IsRemote() {
		flags |= flagsIsRemote
	}
	body = protowire.AppendTag(body, spanFlags, protowire.Fixed32Type)
	body = protowire.AppendFixed32(body, flags)

	b = protowire.AppendTag(b, ssSpans, protowire.BytesType)
	b = protowire.AppendBytes(b, body)
	return b, body
}

// appendAttribute appends field num holding a KeyValue whose key field
// (tag, length, key) is keyField. Strings and integers, nearly every
// attribute, are written without the general sizing.
func appendAttribute(b []byte, num protowire.Number, keyField []byte, v attribute.Value) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	switch v.Type() {
	case attribute.STRING:
		str := validUTF8(v.AsString())
		av := 1 + sizeBytes(len(str))
		b = protowire.AppendVarint(b, uint64(len(keyField)+1+sizeBytes(av)))
		b = append(b, keyField...)
		b = append(b, kvValue<<3|2)
		b = protowire.AppendVarint(b, uint64(av))
		b = append(b, avString<<3|2)
		b = protowire.AppendVarint(b, uint64(len(str)))
		return append(b, str...)
	case attribute.INT64:
		i := uint64(v.AsInt64())
		av := 1 + protowire.SizeVarint(i)
		b = protowire.AppendVarint(b, uint64(len(keyField)+2+av))
		b = append(b, keyField...)
		b = append(b, kvValue<<3|2, byte(av), avInt<<3|0)
		return protowire.AppendVarint(b, i)
	case attribute.STRINGSLICE:
		// Read out of the Value once: each read copies it.
		return appendStringSlice(b, keyField, v.AsStringSlice())
	}
	b = protowire.AppendVarint(b, uint64(sizeKeyValue(len(keyField), v)))
	b = append(b, keyField...)
	return appendAnyValueField(b, kvValue, v)
}

// appendStringSlice appends the length and body of a KeyValue whose
// key field is keyField and whose value is an ArrayValue of vals.
func appendStringSlice(b, keyField []byte, vals []string) []byte {
	arr := sizeStringArray(vals)
	av := 1 + sizeBytes(arr)
	b = protowire.AppendVarint(b, uint64(len(keyField)+1+sizeBytes(av)))
	b = append(b, keyField...)
	b = append(b, kvValue<<3|2)
	b = protowire.AppendVarint(b, uint64(av))
	b = append(b, avArray<<3|2)
	b = protowire.AppendVarint(b, uint64(arr))
	return appendStringArray(b, vals)
}

// sizeStringArray is the size of the ArrayValue body of vals.
func sizeStringArray(vals []string) int {
	n := 0
	for _, s := range vals {
		n += 1 + sizeBytes(1+sizeBytes(len(validUTF8(s))))
	}
	return n
}

// appendStringArray appends the ArrayValue body of vals.
func appendStringArray(b []byte, vals []string) []byte {
	for _, x := range vals {
		b = appendAnyValueField(b, listValues, attribute.StringValue(x))
	}
	return b
}

func unixNano(ns int64) uint64 { return uint64(max(0, ns)) }

func sizeBytes(n int) int { return protowire.SizeVarint(uint64(n)) + n }

func statusSize(c codes.Code, msg string) int {
	n := 0
	if msg != "" {
		n += 1 + sizeBytes(len(msg))
	}
	if code := statusCode(c); code != 0 {
		n += 2
	}
	return n
}

func appendStatus(b []byte, c codes.Code, msg string) []byte {
	if msg != "" {
		b = protowire.AppendTag(b, statusMessageNum, protowire.BytesType)
		b = protowire.AppendString(b, msg)
	}
	if code := statusCode(c); code != 0 {
		b = append(b, statusCodeNum<<3|0, code)
	}
	return b
}

func statusCode(c codes.Code) byte {
	switch c {
	case codes.Ok:
		return statusCodeOK
	case codes.Error:
		return statusCodeError
	}
	return 0
}

// sizeKeyValue is the size of a KeyValue body whose key field (tag,
// length, bytes) is keyField bytes.
func sizeKeyValue(keyField int, v attribute.Value) int {
	return keyField + 1 + sizeBytes(sizeAnyValue(v))
}

// sizeAnyValue is the size of an AnyValue body. Strings that are not valid
// UTF-8, which protobuf strings must be, are sent with U+FFFD in place of
// bad bytes (validUTF8): they are sized the same way.
func sizeAnyValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.BOOL:
		return 2
	case attribute.INT64:
		return 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return 9
	case attribute.STRING:
		return 1 + sizeBytes(len(validUTF8(v.AsString())))
	case attribute.BYTESLICE:
		return 1 + sizeBytes(len(v.AsByteSlice()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		return 1 + sizeBytes(sizeArray(v))
	case attribute.MAP:
		return 1 + sizeBytes(sizeKvlist(v.AsMap()))
	}
	return 0 // INVALID: an empty AnyValue, as the SDK's transform writes
}

// sizeArray is the size of the ArrayValue body of a slice value.
func sizeArray(v attribute.Value) int {
	n := 0
	switch v.Type() {
	case attribute.BOOLSLICE:
		n = len(v.AsBoolSlice()) * (2 + 2)
	case attribute.INT64SLICE:
		for _, i := range v.AsInt64Slice() {
			n += 2 + 1 + protowire.SizeVarint(uint64(i))
		}
	case attribute.FLOAT64SLICE:
		n = len(v.AsFloat64Slice()) * (2 + 9)
	case attribute.STRINGSLICE:
		n = sizeStringArray(v.AsStringSlice())
	case attribute.SLICE:
		for _, e := range v.AsSlice() {
			n += 1 + sizeBytes(sizeAnyValue(e))
		}
	}
	return n
}

func sizeKvlist(kvs []attribute.KeyValue) int {
	n := 0
	for _, kv := range kvs {
		n += 1 + sizeBytes(sizeKeyValue(1+sizeBytes(len(validUTF8(string(kv.Key)))), kv.Value))
	}
	return n
}

// appendAnyValueField appends field num holding v as an AnyValue.
func appendAnyValueField(b []byte, num protowire.Number, v attribute.Value) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeAnyValue(v)))
	switch v.Type() {
	case attribute.BOOL:
		x := byte(0)
		if v.AsBool() {
			x = 1
		}
		return append(b, avBool<<3|0, x)
	case attribute.INT64:
		b = append(b, avInt<<3|0)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = append(b, avDouble<<3|1)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = append(b, avString<<3|2)
		return protowire.AppendString(b, validUTF8(v.AsString()))
	case attribute.BYTESLICE:
		b = append(b, avBytes<<3|2)
		return protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		b = append(b, avArray<<3|2)
		b = protowire.AppendVarint(b, uint64(sizeArray(v)))
		return appendArray(b, v)
	case attribute.MAP:
		kvs := v.AsMap()
		b = append(b, avKvlist<<3|2)
		b = protowire.AppendVarint(b, uint64(sizeKvlist(kvs)))
		return appendKvlist(b, listValues, kvs)
	}
	return b
}

func appendArray(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			b = appendAnyValueField(b, listValues, attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			b = appendAnyValueField(b, listValues, attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			b = appendAnyValueField(b, listValues, attribute.Float64Value(x))
		}
	case attribute.STRINGSLICE:
		b = appendStringArray(b, v.AsStringSlice())
	case attribute.SLICE:
		for _, x := range v.AsSlice() {
			b = appendAnyValueField(b, listValues, x)
		}
	}
	return b
}

// appendKvlist appends each of kvs as field num (a KeyValue).
func appendKvlist(b []byte, num protowire.Number, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		key := validUTF8(string(kv.Key))
		keyField := 1 + sizeBytes(len(key))
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeKeyValue(keyField, kv.Value)))
		b = protowire.AppendTag(b, kvKey, protowire.BytesType)
		b = protowire.AppendString(b, key)
		b = appendAnyValueField(b, kvValue, kv.Value)
	}
	return b
}

// validUTF8 replaces invalid UTF-8 with U+FFFD: protobuf strings must be
// valid, and a receiver (the Go protobuf runtime, for one) rejects the whole
// request otherwise. Wire-derived values are the ones at risk.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
