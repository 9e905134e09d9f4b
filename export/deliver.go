package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// deliverer takes one sealed batch somewhere.
type deliverer interface {
	deliver(ctx context.Context, batch []byte) error
	// retryable tells whether a failed delivery may succeed later.
	retryable(err error) bool
	shutdown(ctx context.Context) error
}

// stdoutDeliverer writes JSON lines. A failed write is not retried: part
// of the batch may be out already, and a retry would repeat it.
type stdoutDeliverer struct{ w io.Writer }

func (d stdoutDeliverer) deliver(_ context.Context, batch []byte) error {
	if _, err := d.w.Write(batch); err != nil {
		return fmt.Errorf("write spans: %w", err)
	}
	return nil
}

func (stdoutDeliverer) retryable(error) bool { return false }

func (stdoutDeliverer) shutdown(context.Context) error { return nil }

// otlpDeliverer sends batches with otlptracegrpc's client, which brings the
// gRPC connection, OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS,
// compression, timeout) and a retry of short failures within one export
// timeout that honours the collector's RetryInfo throttling. Longer outages
// are the buffer's: a batch that failed with a retryable status stays
// queued and is tried again with backoff.
//
// A batch is already an encoded ExportTraceServiceRequest. The client takes
// ResourceSpans messages, so each encoded ResourceSpans is handed over as
// the unknown fields of an empty ResourceSpans: protobuf marshals unknown
// fields back verbatim, so the bytes on the wire are the batch's, and no
// span is decoded into structs on the way.
type otlpDeliverer struct {
	client otlptrace.Client
}

func newOTLPDeliverer(ctx context.Context, cfg Config) (*otlpDeliverer, error) {
	client := otlptracegrpc.NewClient(otlpOptions(cfg)...)
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("create otlp client: %w", err)
	}
	return &otlpDeliverer{client: client}, nil
}

func otlpOptions(cfg Config) []otlptracegrpc.Option {
	var opts []otlptracegrpc.Option
	switch {
	case strings.Contains(cfg.Endpoint, "://"):
		opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	case cfg.Endpoint != "":
		opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
	}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if cfg.ExportTimeout > 0 {
		// The exporter's own timeout bounds its retries too.
		opts = append(opts, otlptracegrpc.WithTimeout(cfg.ExportTimeout))
	}
	opts = append(opts,
		// Short retries inside one export; the buffer retries beyond.
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
			Enabled:         true,
			InitialInterval: 500 * time.Millisecond,
			MaxInterval:     2 * time.Second,
			MaxElapsedTime:  10 * time.Second,
		}),
		// gRPC backs reconnects off up to 2 minutes by default: a collector
		// back from an outage would wait that long for the agent.
		otlptracegrpc.WithDialOption(grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})),
	)
	return opts
}

func (d *otlpDeliverer) deliver(ctx context.Context, batch []byte) error {
	rss, err := carriers(batch)
	if err != nil {
		return err
	}
	err = d.client.UploadTraces(ctx, rss)
	if err != nil && isPartialSuccess(err) {
		// Accepted; the collector refused some spans for its own reasons
		// and said so. Reported, not retried.
		return &partialError{err}
	}
	return err
}

// carriers wraps each encoded ResourceSpans of an encoded request.
func carriers(req []byte) ([]*tracepb.ResourceSpans, error) {
	var out []*tracepb.ResourceSpans
	for len(req) > 0 {
		num, typ, n := protowire.ConsumeTag(req)
		if n < 0 || num != requestResourceSpans || typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: not an encoded trace request", errCorrupt)
		}
		req = req[n:]
		body, n := protowire.ConsumeBytes(req)
		if n < 0 {
			return nil, fmt.Errorf("%w: truncated trace request", errCorrupt)
		}
		req = req[n:]
		rs := &tracepb.ResourceSpans{}
		rs.ProtoReflect().SetUnknown(protoreflect.RawFields(body))
		out = append(out, rs)
	}
	return out, nil
}

// partialError is a delivery the collector accepted with some spans
// rejected.
type partialError struct{ err error }

func (e *partialError) Error() string { return e.err.Error() }
func (e *partialError) Unwrap() error { return e.err }

// isPartialSuccess recognises otlptracegrpc's partial-success error, whose
// type is internal to it: an error without a gRPC status (the request got
// an OK answer) that says so.
func isPartialSuccess(err error) bool {
	if _, ok := status.FromError(err); ok {
		return false
	}
	return strings.Contains(err.Error(), "partial success")
}

// retryable follows the OTLP specification's retryable gRPC codes, as the
// client does; anything else (a malformed request, authentication) would
// fail the same way again.
func (d *otlpDeliverer) retryable(err error) bool {
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
			codes.Unavailable, codes.DataLoss, codes.ResourceExhausted:
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func (d *otlpDeliverer) shutdown(ctx context.Context) error {
	return d.client.Stop(ctx)
}
