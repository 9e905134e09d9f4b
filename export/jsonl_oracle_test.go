package export

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The reflection-based encoding that appendSpan must reproduce byte for
// byte: the oracle of TestAppendSpanMatchesEncodingJSON.

// jsonSpan fixes the key order of a line.
type jsonSpan struct {
	Name              string         `json:"name"`
	TraceID           string         `json:"trace_id"`
	SpanID            string         `json:"span_id"`
	ParentSpanID      string         `json:"parent_span_id"`
	Kind              string         `json:"kind"`
	StartTimeUnixNano int64          `json:"start_time_unix_nano"`
	EndTimeUnixNano   int64          `json:"end_time_unix_nano"`
	StatusCode        string         `json:"status_code"`
	StatusMessage     string         `json:"status_message,omitempty"`
	TraceState        string         `json:"trace_state,omitempty"`
	Attributes        map[string]any `json:"attributes"`
	Resource          map[string]any `json:"resource"`
}

func toJSONSpan(s sdktrace.ReadOnlySpan) jsonSpan {
	sc := s.SpanContext()
	js := jsonSpan{
		Name:              s.Name(),
		TraceID:           sc.TraceID().String(),
		SpanID:            sc.SpanID().String(),
		Kind:              strings.ToUpper(s.SpanKind().String()),
		StartTimeUnixNano: s.StartTime().UnixNano(),
		EndTimeUnixNano:   s.EndTime().UnixNano(),
		StatusCode:        statusCode(s.Status().Code),
		StatusMessage:     s.Status().Description,
		TraceState:        sc.TraceState().String(),
		Attributes:        jsonAttributes(s.Attributes()),
		Resource:          map[string]any{},
	}
	if p := s.Parent(); p.SpanID().IsValid() {
		js.ParentSpanID = p.SpanID().String()
	}
	if r := s.Resource(); r != nil {
		js.Resource = jsonAttributes(r.Attributes())
	}
	return js
}

func jsonAttributes(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = jsonValue(kv.Value)
	}
	return m
}

func jsonValue(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return jsonFloat(v.AsFloat64())
	case attribute.STRING:
		return v.AsString()
	case attribute.BOOLSLICE:
		return v.AsBoolSlice()
	case attribute.INT64SLICE:
		return v.AsInt64Slice()
	case attribute.FLOAT64SLICE:
		fs := v.AsFloat64Slice()
		out := make([]any, len(fs))
		for i, f := range fs {
			out[i] = jsonFloat(f)
		}
		return out
	case attribute.STRINGSLICE:
		return v.AsStringSlice()
	case attribute.BYTESLICE:
		return v.AsByteSlice() // encoding/json writes base64
	case attribute.SLICE:
		vs := v.AsSlice()
		out := make([]any, len(vs))
		for i, e := range vs {
			out[i] = jsonValue(e)
		}
		return out
	case attribute.MAP:
		return jsonAttributes(v.AsMap())
	default:
		return nil
	}
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	default:
		return f
	}
}

func oracleLine(s sdktrace.ReadOnlySpan) []byte {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(toJSONSpan(s)); err != nil {
		panic(err)
	}
	return line.Bytes()
}
