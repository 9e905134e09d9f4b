package spanbuilder

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/spanbuilder/internal/strcache"
	"github.com/authprobe/authprobe/spanbuilder/secattr"
)

// Config is what a Builder needs.
type Config struct {
	// Routes are the configured auth routes; the first that matches wins.
	Routes   []config.Route
	Security config.Security
	// SecAttr passes the process-level inputs (environment, randomness) to
	// the security attribute extractor; zero means the process's own.
	SecAttr secattr.Options
	// ServiceName is service.name for processes that have none resolved;
	// the executable's base name when empty too.
	ServiceName string
	// ToWall converts a kernel monotonic timestamp (ns) to wall-clock time.
	ToWall func(ktimeNS uint64) time.Time
}

// Stats counts what the Builder saw.
type Stats struct {
	Matched   uint64 // exchanges on a configured route: spans built
	Unmatched uint64 // exchanges on no configured route, or without a request path
	// Joined counts spans that joined the caller's trace via traceparent.
	Joined uint64
	// MalformedTraceparent counts invalid or repeated traceparent headers;
	// those spans start a new trace.
	MalformedTraceparent uint64
	// DroppedTracestate counts tracestate headers dropped as invalid or too long.
	DroppedTracestate uint64
}

// Builder turns exchanges into auth spans. It is safe for concurrent use.
type Builder struct {
	router      *router
	sec         *secattr.Extractor
	security    config.Security
	serviceName string
	toWall      func(uint64) time.Time
	addrs       *strcache.Cache[netip.Addr, string] // client and peer addresses repeat
	statusMsgs  *strcache.Cache[statusKey, string]
	mems        sync.Pool // of *spanMem, given back by Release

	matched, unmatched, joined, badTraceparent, droppedTracestate atomic.Uint64
}

// New compiles the routes and builds the security attribute extractor.
func New(cfg Config) (*Builder, error) {
	if cfg.ToWall == nil {
		return nil, errors.New("spanbuilder: ToWall is required")
	}
	if len(cfg.Routes) == 0 {
		return nil, errors.New("spanbuilder: no routes")
	}
	r, err := newRouter(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("spanbuilder: %w", err)
	}
	sec, err := secattr.NewWithOptions(cfg.Security, cfg.SecAttr)
	if err != nil {
		return nil, fmt.Errorf("spanbuilder: security attributes: %w", err)
	}
	return &Builder{
		router:      r,
		sec:         sec,
		security:    cfg.Security,
		serviceName: cfg.ServiceName,
		toWall:      cfg.ToWall,
		addrs:       strcache.New(netip.Addr.String),
		// A reason may be cut from the exchange or the body: reused memory.
		statusMsgs: strcache.NewOwning(statusMessage, func(k statusKey) statusKey {
			k.oc.reason = strings.Clone(k.oc.reason)
			return k
		}),
	}, nil
}

// RandomKeyInUse reports that usernames are hashed with a per-run key, so
// hashes do not correlate across restarts; the caller should say so.
func (b *Builder) RandomKeyInUse() bool { return b.sec.RandomKeyInUse() }

// Stats returns the counters so far.
func (b *Builder) Stats() Stats {
	return Stats{
		Matched:              b.matched.Load(),
		Unmatched:            b.unmatched.Load(),
		Joined:               b.joined.Load(),
		MalformedTraceparent: b.badTraceparent.Load(),
		DroppedTracestate:    b.droppedTracestate.Load(),
	}
}

// Attribute keys the builder sets itself.
const (
	attrResult        = "auth.result"
	attrFailureReason = "auth.failure_reason"
	attrNetPeerIP     = "net.peer.ip"
	attrClientAddress = "client.address"
	attrPeerAddress   = "network.peer.address"
	attrPeerPort      = "network.peer.port"
	attrAuthUA        = "auth.user_agent"
	attrUserAgent     = "user_agent.original"
	attrHTTPTarget    = "http.target"
	attrURLPath       = "url.path"
	attrHTTPRoute     = "http.route"
	attrMethod        = "http.request.method"
	attrStatusCode    = "http.response.status_code"
	attrServerPort    = "server.port"
	attrResource      = "auth.resource"
	attrRouteKind     = "auth.route.kind"
	attrURLScheme     = "url.scheme"
	attrTLS           = "tls.established"
	attrProtoVersion  = "network.protocol.version"
)

// Interesting reports whether a request head could be on a configured
// route, by the rules Build matches with: the decoder asks it for every
// request to decide whether to keep the body and whether the kernel may
// stop copying. It does not allocate for paths up to 512 bytes.
func (b *Builder) Interesting(method, target string) bool {
	rt, _ := b.router.find(method, target, false)
	return rt != nil
}

// Build makes the span of one exchange; false when the request is on no
// configured route (the kernel filters by prefix only, so such requests do
// arrive) or has no path.
//
// http.target is the raw request-target WITHOUT its query string and
// fragment: query strings carry secrets (api_key=..., OAuth codes and
// tokens) and never leave the agent. url.path and auth.resource are the
// normalised path routes were matched on (see normalizePath).
func (b *Builder) Build(ex *decoder.Exchange, p Process) (Span, bool) {
	if ex == nil || ex.Request == nil {
		b.unmatched.Add(1)
		return Span{}, false
	}
	req := ex.Request
	rt, urlPath := b.router.find(req.Method, req.Target, true)
	if rt == nil {
		b.unmatched.Add(1)
		return Span{}, false
	}
	b.matched.Add(1)

	start := b.toWall(ex.RequestStart)
	end := b.toWall(ex.RequestEnd)
	if ex.Response != nil && ex.ResponseEnd != 0 {
		end = b.toWall(ex.ResponseEnd)
	}
	if end.Before(start) {
		end = start
	}

	oc := inferResult(rt, ex)
	peer := ex.Conn.Peer.Addr().Unmap()
	mem := b.newSpanMem()
	out := b.sec.Extract(secattr.Input{
		Route:       rt.cfg,
		Request:     req,
		Response:    ex.Response,
		Peer:        peer,
		RequestTime: start,
		Result:      oc.result,
		Memory:      &mem.sec,
	})
	oc = mergeOutcome(oc, out)

	tc := extractTraceContext(req.Header)
	switch {
	case tc.malformed:
		b.badTraceparent.Add(1)
	case tc.parent.IsValid():
		b.joined.Add(1)
	}
	if tc.tracestateDropped {
		b.droppedTracestate.Add(1)
	}

	client := out.ClientAddr.Unmap()
	if !client.IsValid() {
		client = peer
	}
	attrs := slices.Grow(mem.attrs[:0], 20+len(out.Attributes))
	attrs = append(attrs, attribute.String(attrResult, oc.result))
	if oc.result != ResultSuccess && oc.reason != "" {
		attrs = append(attrs, attribute.String(attrFailureReason, wireString(oc.reason)))
	}
	if client.IsValid() {
		c := b.addrs.Get(client)
		attrs = append(attrs, attribute.String(attrNetPeerIP, c), attribute.String(attrClientAddress, c))
	}
	if peer.IsValid() {
		attrs = append(attrs,
			attribute.String(attrPeerAddress, b.addrs.Get(peer)),
			attribute.Int(attrPeerPort, int(ex.Conn.Peer.Port())))
	}
	if ua := headerGet(req.Header, "User-Agent"); ua != "" {
		ua = wireString(ua)
		attrs = append(attrs, attribute.String(attrAuthUA, ua), attribute.String(attrUserAgent, ua))
	}
	resource := wireString(urlPath)
	attrs = append(attrs,
		attribute.String(attrHTTPTarget, wireString(targetWithoutQuery(req.Target))),
		attribute.String(attrURLPath, resource),
		attribute.String(attrHTTPRoute, rt.cfg.Path),
		attribute.String(attrMethod, wireString(req.Method)),
	)
	if ex.Response != nil {
		attrs = append(attrs, attribute.Int(attrStatusCode, ex.Response.StatusCode))
	}
	if port := ex.Conn.Local.Port(); port != 0 {
		attrs = append(attrs, attribute.Int(attrServerPort, int(port)))
	}
	if ex.Conn.TLS {
		// The plaintext came from the TLS library: the request was HTTPS.
		attrs = append(attrs, attribute.String(attrURLScheme, "https"), attribute.Bool(attrTLS, true))
	}
	if req.Proto == "HTTP/2" {
		// Set when not HTTP/1.1, the default, as the conventions say.
		attrs = append(attrs, attribute.String(attrProtoVersion, "2"))
	}
	attrs = append(attrs,
		attribute.String(attrResource, resource),
		attribute.String(attrRouteKind, rt.cfg.Kind),
	)
	own := len(attrs)
	for _, kv := range out.Attributes {
		if hasKey(attrs[:own], kv.Key) {
			continue // ours are authoritative; no duplicate keys
		}
		attrs = append(attrs, cleanAttr(kv))
	}

	s := Span{
		Name:          rt.cfg.Name,
		Parent:        tc.parent,
		Start:         start,
		End:           end,
		Attributes:    attrs,
		Process:       b.process(p),
		RouteKind:     rt.cfg.Kind,
		Result:        oc.result,
		FailureReason: oc.reason,
		ClientSubnet:  out.ClientSubnet,
		UserKey:       out.UserKey,
		Ambiguous:     out.Ambiguous,
		mem:           mem,
		memGen:        mem.gen,
	}
	mem.attrs = attrs
	if oc.result == ResultSuccess {
		s.FailureReason = ""
	}
	s.StatusCode, s.StatusMessage = b.status(rt.cfg.Kind, oc, ex.Response)
	return s, true
}

// spanMem is the memory of one span besides its exchange's: its
// attribute slice and what the extractor made for it (the bodies' field
// text, the username's hash), reused from span to span (Release).
type spanMem struct {
	attrs []attribute.KeyValue
	sec   secattr.Memory
	// gen counts the times it was given back, so that a stale copy of a
	// span cannot give it back again while another span uses it.
	gen uint64
}

// maxKeptAttrs bounds the attribute slice a released span's memory keeps.
const maxKeptAttrs = 256

func (b *Builder) newSpanMem() *spanMem {
	if m, ok := b.mems.Get().(*spanMem); ok {
		return m
	}
	return &spanMem{}
}

// Release gives back the memory of a span that every consumer is done
// with: the exporters have encoded it (export.Exporter.Emit encodes before
// it returns) and nothing kept any of its strings without copying them.
// Its Attributes, and the strings the Builder and the extractor made for
// it, are wiped and reused by the spans built next, so s must not be read
// after Release, nor any copy of it. Releasing a span that was not built
// with memory of its own (a call's, or a copy released already) does
// nothing; a span never released is simply collected.
func (b *Builder) Release(s *Span) {
	m := s.mem
	if m == nil || m.gen != s.memGen {
		return
	}
	s.mem = nil
	m.gen++
	m.attrs = s.Attributes[:0:cap(s.Attributes)] // what the Chain grew it to, too
	clear(m.attrs[:len(s.Attributes)])
	m.sec.Reset()
	if cap(m.attrs) > maxKeptAttrs || m.sec.Oversized() {
		return // a hostile exchange's memory is left to the collector
	}
	b.mems.Put(m)
}

// mergeOutcome lets what the extractor found in the body (failure
// matchers, OAuth2 errors) refine or override the status-based outcome.
func mergeOutcome(oc outcome, out secattr.Output) outcome {
	switch {
	case out.Result != "":
		reason := out.FailureReason
		if reason == "" && out.Result == oc.result {
			reason = oc.reason
		}
		oc = outcome{out.Result, reason}
	case out.FailureReason != "" && oc.result != ResultSuccess:
		oc.reason = out.FailureReason
	}
	if oc.result == ResultSuccess {
		oc.reason = ""
	}
	return oc
}

// status is Error for failure and error, as the detection rules expect,
// unless configured to leave 4xx unset as HTTP server semconv does.
func (b *Builder) status(kind string, oc outcome, resp *decoder.Response) (codes.Code, string) {
	if oc.result != ResultFailure && oc.result != ResultError {
		return codes.Unset, ""
	}
	if b.security.StatusUnsetOn4xx && resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return codes.Unset, ""
	}
	return codes.Error, b.statusMsgs.Get(statusKey{authorize: kind == config.KindAuthorize, oc: oc})
}

// statusKey is what a span's error status message says; a few messages
// repeat, so they are made once (statusMessage) and cached.
type statusKey struct {
	authorize bool
	oc        outcome
}

func statusMessage(k statusKey) string {
	what := "authentication"
	if k.authorize {
		what = "authorization"
	}
	msg := what + " failed"
	if k.oc.result == ResultError {
		msg = what + " error"
	}
	if k.oc.reason != "" {
		msg += ": " + k.oc.reason
	}
	return msg
}

func (b *Builder) process(p Process) Process {
	if p.ServiceName == "" {
		p.ServiceName = b.serviceName
	}
	if p.ServiceName == "" && p.Exe != "" {
		p.ServiceName = path.Base(p.Exe)
	}
	return p
}

// targetWithoutQuery drops the query and fragment of a request-target.
func targetWithoutQuery(t string) string {
	for i := 0; i < len(t); i++ {
		if t[i] == '?' || t[i] == '#' {
			return t[:i]
		}
	}
	return t
}

func hasKey(kvs []attribute.KeyValue, k attribute.Key) bool {
	for _, kv := range kvs {
		if kv.Key == k {
			return true
		}
	}
	return false
}

// cleanAttr passes the extractor's string values through wireString too:
// they are derived from the wire. Its string slices (roles, audiences,
// ambiguity kinds) are left as they are: each element is made by
// secattr's clean (its fuzzers' checkClean holds every output to that),
// which leaves nothing wireString would change (no control character, no
// invalid UTF-8, at most maxAttrBytes), and reading one out of a Value
// copies it.
func cleanAttr(kv attribute.KeyValue) attribute.KeyValue {
	if kv.Value.Type() == attribute.STRING {
		if v := kv.Value.AsString(); !isPlainASCII(v) {
			return attribute.String(string(kv.Key), wireString(v))
		}
	}
	return kv
}
