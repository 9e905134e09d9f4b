package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// JSONExporter is an sdktrace.SpanExporter that writes one JSON object per
// span per line:
//
//	name, trace_id (32 hex), span_id (16 hex), parent_span_id (16 hex, ""
//	for a root), kind ("SERVER", ...), start_time_unix_nano and
//	end_time_unix_nano (integers), status_code ("UNSET", "OK", "ERROR"),
//	status_message (omitted when empty), trace_state (omitted when empty),
//	attributes and resource (objects).
//
// Attribute values keep their JSON type (string, integer, bool, number,
// arrays for slices); non-finite floats, which JSON cannot carry, become the
// strings "NaN", "+Inf" and "-Inf"; byte slices are base64 strings. Each line
// is a single Write, under a lock, so lines never interleave.
type JSONExporter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// NewJSONExporter returns a JSONExporter writing to w.
func NewJSONExporter(w io.Writer) *JSONExporter {
	return &JSONExporter{w: w}
}

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

var errExporterClosed = errors.New("json exporter is shut down")

// ExportSpans writes spans, one line each. A span that cannot be encoded is
// skipped and reported in the returned error; the others are written.
func (e *JSONExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errExporterClosed
	}
	var (
		errs []error
		line bytes.Buffer
	)
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false) // keep "<" and "&" readable in URLs and messages
	for _, s := range spans {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		line.Reset()
		if err := enc.Encode(toJSONSpan(s)); err != nil { // Encode ends the line
			// Only the span name goes into the error: attribute values
			// never leave through error strings.
			errs = append(errs, fmt.Errorf("encode span %q: %w", s.Name(), err))
			continue
		}
		if _, err := e.w.Write(line.Bytes()); err != nil {
			return errors.Join(append(errs, fmt.Errorf("write span: %w", err))...)
		}
	}
	return errors.Join(errs...)
}

// Shutdown makes later exports fail; the writer is the caller's to close.
func (e *JSONExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
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

func statusCode(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "OK"
	case codes.Error:
		return "ERROR"
	default:
		return "UNSET"
	}
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
