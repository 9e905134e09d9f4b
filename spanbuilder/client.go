package spanbuilder

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/decoder/postgres"
)

// Attribute keys of client spans (OpenTelemetry HTTP client and database
// conventions) and of the decision layer.
const (
	attrURLFull       = "url.full"
	attrServerAddress = "server.address"
	attrErrorType     = "error.type"
	attrLayer         = "auth.decision.layer"
	attrLayerSQLSTATE = "auth.decision.sqlstate"
	attrLayerStatus   = "auth.decision.upstream.status_code"
)

// BuildClient makes the CLIENT span of a call the process made (an
// exchange of a client connection): an HTTP request, or a database
// operation. Its parent and ids are the Chain's to set. false: not a
// client exchange, or one with nothing to show (no request).
//
// Nothing of a call's content is kept beyond what the conventions name:
// url.full has no query string, a query text has its literals replaced
// (decoder/postgres), no header, body, parameter or row value is read.
func (b *Builder) BuildClient(ex *decoder.Exchange, p Process) (Span, bool) {
	if ex == nil || ex.Conn.Role != decoder.RoleClient {
		return Span{}, false
	}
	start := b.toWall(ex.RequestStart)
	end := start
	if ex.ResponseEnd != 0 {
		end = b.toWall(ex.ResponseEnd)
	} else if ex.RequestEnd != 0 {
		end = b.toWall(ex.RequestEnd)
	}
	if end.Before(start) {
		end = start
	}
	s := Span{Kind: trace.SpanKindClient, Start: start, End: end, Process: b.process(p)}
	switch {
	case ex.Database != nil:
		dbSpan(&s, ex.Database, ex.Conn.Peer)
	case ex.Request != nil:
		httpClientSpan(&s, ex)
	default:
		return Span{}, false
	}
	return s, true
}

func peerAttrs(attrs []attribute.KeyValue, peer netip.AddrPort) []attribute.KeyValue {
	if !peer.IsValid() {
		return attrs
	}
	return append(attrs,
		attribute.String(attrPeerAddress, peer.Addr().Unmap().String()),
		attribute.Int(attrPeerPort, int(peer.Port())))
}

func dbSpan(s *Span, op *postgres.Operation, peer netip.AddrPort) {
	s.Name = op.SpanName()
	attrs := op.Attributes()
	if op.Kind == postgres.KindStartup {
		// The session's start: the log-in the server accepted or refused.
		s.Name = "connect"
		if op.Namespace != "" {
			s.Name += " " + op.Namespace
		}
	}
	if peer.IsValid() {
		attrs = append(attrs,
			attribute.String(attrServerAddress, peer.Addr().Unmap().String()),
			attribute.Int(attrServerPort, int(peer.Port())))
	}
	s.Attributes = peerAttrs(attrs, peer)
	switch {
	case op.Error != nil:
		s.StatusCode = codes.Error
		s.StatusMessage = op.Error.Code
		if name := op.Error.Name(); name != "" {
			s.StatusMessage += " " + name
		}
	case op.Status == postgres.StatusLost || op.Status == postgres.StatusClosed:
		s.StatusCode = codes.Error
		s.StatusMessage = "no response: " + op.Status.String()
		s.Attributes = append(s.Attributes, attribute.String(attrErrorType, "no_response"))
	}
}

func httpClientSpan(s *Span, ex *decoder.Exchange) {
	req := ex.Request
	method := wireString(req.Method)
	s.Name = method
	host, port := hostPort(headerGet(req.Header, "Host"), ex.Conn.Peer)
	path := targetWithoutQuery(req.Target)
	if i := strings.Index(path, "://"); i > 0 {
		// Absolute form (a proxy's upstream): the URL is already whole.
		s.Attributes = append(s.Attributes, attribute.String(attrURLFull, wireString(path)))
	} else {
		u := "http://" + host
		if port != 80 {
			u += ":" + strconv.Itoa(port)
		}
		s.Attributes = append(s.Attributes, attribute.String(attrURLFull, wireString(u+path)))
	}
	s.Attributes = append(s.Attributes,
		attribute.String(attrMethod, method),
		attribute.String(attrServerAddress, wireString(host)),
		attribute.Int(attrServerPort, port))
	s.Attributes = peerAttrs(s.Attributes, ex.Conn.Peer)
	if ex.Response == nil {
		s.StatusCode, s.StatusMessage = codes.Error, "no response: "+ex.End.String()
		s.Attributes = append(s.Attributes, attribute.String(attrErrorType, "no_response"))
		return
	}
	code := ex.Response.StatusCode
	s.Attributes = append(s.Attributes, attribute.Int(attrStatusCode, code))
	if code >= 400 {
		// HTTP client conventions: every 4xx and 5xx is an error.
		s.StatusCode = codes.Error
		s.Attributes = append(s.Attributes, attribute.String(attrErrorType, strconv.Itoa(code)))
	}
}

// hostPort is server.address and server.port: from the Host header,
// else the socket's peer.
func hostPort(hostHeader string, peer netip.AddrPort) (string, int) {
	if hostHeader != "" {
		if h, p, err := net.SplitHostPort(hostHeader); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
				return h, n
			}
		}
		if !strings.Contains(hostHeader, ":") {
			return hostHeader, 80
		}
	}
	return peer.Addr().Unmap().String(), int(peer.Port())
}
