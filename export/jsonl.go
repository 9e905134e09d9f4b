package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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
	line   []byte // reused between spans, under mu
}

// NewJSONExporter returns a JSONExporter writing to w.
func NewJSONExporter(w io.Writer) *JSONExporter {
	return &JSONExporter{w: w}
}

// maxLineBuffer bounds the encode buffer kept between batches.
const maxLineBuffer = 1 << 20

var errExporterClosed = errors.New("json exporter is shut down")

// ExportSpans writes spans, one line each.
func (e *JSONExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errExporterClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The whole batch in one write: whole lines only, so they never
	// interleave with another writer's, and one syscall instead of many.
	e.line = e.line[:0]
	for _, s := range spans {
		e.line = appendSpan(e.line, s)
	}
	if _, err := e.w.Write(e.line); err != nil {
		return fmt.Errorf("write spans: %w", err)
	}
	if cap(e.line) > maxLineBuffer {
		e.line = nil // do not pin a huge buffer after a burst
	}
	return nil
}

// Shutdown makes later exports fail; the writer is the caller's to close.
func (e *JSONExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
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
