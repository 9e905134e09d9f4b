package export

import (
	"bytes"
	"encoding/json"
	"math"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// The reflection-based encoding that appendJSONSpan must reproduce byte for
// byte: the oracle of TestJSONLineMatchesEncodingJSON.

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

func toJSONSpan(s spanbuilder.Span, ids spanIDs, res []attribute.KeyValue) jsonSpan {
	js := jsonSpan{
		Name:              s.Name,
		TraceID:           trace.TraceID(ids.trace).String(),
		SpanID:            trace.SpanID(ids.span).String(),
		Kind:              "SERVER",
		StartTimeUnixNano: s.Start.UnixNano(),
		EndTimeUnixNano:   s.End.UnixNano(),
		StatusCode:        statusWord(s.StatusCode),
		Attributes:        jsonAttributes(s.Attributes),
		Resource:          jsonAttributes(res),
	}
	if s.StatusCode == codes.Error {
		js.StatusMessage = s.StatusMessage
	}
	if s.Parent.IsValid() {
		js.ParentSpanID = s.Parent.SpanID().String()
		js.TraceState = s.Parent.TraceState().String()
	}
	return js
}

// jsonAttributes is the documented meaning: the last value of each key,
// without empty keys (which the SDK drops too).
func jsonAttributes(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		if kv.Key == "" {
			continue
		}
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

func oracleLine(s spanbuilder.Span, ids spanIDs, res []attribute.KeyValue) []byte {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(toJSONSpan(s, ids, res)); err != nil {
		panic(err)
	}
	return line.Bytes()
}
