// Package spanbuilder turns decoder exchanges on configured auth routes into
// auth spans: it matches the route, infers the result from the response,
// adds the security attributes, and takes the caller's trace context from
// the W3C traceparent header. It knows auth, not the kernel, and never logs.
package spanbuilder

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Process is the traced process an exchange belongs to.
type Process struct {
	PID         uint32
	Exe         string // executable path
	ServiceName string // resolved service.name
	// Meta is the revision of the process's resource attributes from
	// k8smeta: exporters that keep a resource per Process build a new one
	// when it changes (the pod became known, its owner was resolved).
	Meta uint64
	// Gateway: the process is a gateway (configured): a denial it answers
	// without a denying call behind it is the gateway's decision.
	Gateway bool
}

// Span is one auth attempt (SERVER), or a call the traced process made
// while serving one (CLIENT), ready for an exporter. It holds no secret.
//
// Its strings point into memory that is reused once the span is done
// with: its exchange's (decoder.Decoder.Release) and its own
// (Builder.Release). A consumer that keeps a string past the call that
// handed it the span must copy it (strings.Clone).
type Span struct {
	Name string
	// Kind is SpanKindClient for a call; anything else is a SERVER span.
	Kind trace.SpanKind
	// Parent is the caller's span context from traceparent (remote), or
	// the span this one is a child of on this node (not remote); not
	// valid when there is none: the span then starts a new trace.
	Parent trace.SpanContext
	// TraceID and SpanID, when valid, are the span's own: chosen when its
	// request began (Chain), so that its children could name it before it
	// ended. Else the exporter picks them, in Parent's trace.
	TraceID       trace.TraceID
	SpanID        trace.SpanID
	Start, End    time.Time
	StatusCode    codes.Code
	StatusMessage string
	Attributes    []attribute.KeyValue
	Process       Process

	// RouteKind is the configured route kind (login, authorize, ...).
	RouteKind string
	// Result and FailureReason repeat the auth.result / auth.failure_reason
	// attributes for consumers that aggregate (detection metrics).
	Result        string
	FailureReason string
	// ClientSubnet is the client's /24 (IPv4) or /48 (IPv6), "" if unknown.
	ClientSubnet string
	// UserKey identifies the username for in-agent aggregation (a keyed
	// hash, whatever the privacy mode; 0 when no username, or when the
	// request named several). Never exported.
	UserKey uint64
	// Ambiguous repeats the auth.request.ambiguous kinds (secattr's
	// Ambiguous* constants): what in the request servers read differently.
	// nil for an ordinary request.
	Ambiguous []string
	// Layer repeats auth.decision.layer on a denial: which layer said no
	// (LayerGateway, LayerService, LayerDatabase, LayerUpstream).
	Layer string

	// mem is the memory the span's attributes and strings live in
	// besides its exchange's, given back by Builder.Release; memGen is
	// its generation when the span got it.
	mem    *spanMem
	memGen uint64
}

// Decision layers (auth.decision.layer).
const (
	LayerGateway  = "gateway"  // a gateway answered without a denying call behind it
	LayerService  = "service"  // the service answered with no failing call behind it
	LayerDatabase = "database" // a query of the request failed with an authorization SQLSTATE
	LayerUpstream = "upstream" // a service it called denied
)

// Results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultError   = "error"
	ResultUnknown = "unknown"
)
