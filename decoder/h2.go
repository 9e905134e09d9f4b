package decoder

import (
	"github.com/authprobe/authprobe/decoder/exchange"
	"github.com/authprobe/authprobe/decoder/http2"
)

// h2Parser is the connection layer's HTTP/2 parser: decoder/http2 framing
// and HPACK for one connection, its streams turned into exchanges exactly
// like HTTP/1's, so that span building does not care. A connection is
// HTTP/2 when its client's first bytes are the connection preface (h2
// after TLS ALPN, or h2c with prior knowledge): the preface decides, never
// a guess per chunk.
type h2Parser struct {
	conn *http2.Conn
	sink *exchange.Sink
	info *ConnInfo
	// in is who read the latest client bytes: the process an exchange
	// belongs to.
	in  exchange.Meta
	off bool
}

var _ streamParser = (*h2Parser)(nil)

func newH2Parser(sink *exchange.Sink, info *ConnInfo, cfg Config) *h2Parser {
	return &h2Parser{
		conn: http2.NewConn(http2.Config{MaxBodyBytes: max(cfg.MaxRequestBody, cfg.MaxResponseBody, 1)}),
		sink: sink,
		info: info,
	}
}

func h2Dir(d Direction) http2.Direction {
	if d == Ingress {
		return http2.Ingress
	}
	return http2.Egress
}

func (p *h2Parser) Data(dir Direction, _ uint64, data []byte, m exchange.Meta) uint64 {
	if p.off {
		return 0
	}
	if dir == Ingress {
		p.in = m
	}
	p.emit(p.conn.Feed(h2Dir(dir), data, m.T))
	if p.conn.Stats().NotHTTP2 > 0 {
		p.off = true
	}
	return 0
}

func (p *h2Parser) Hole(dir Direction, _ uint64, _ exchange.HoleCause, _ exchange.Meta) {
	if !p.off {
		p.conn.Gap(h2Dir(dir))
	}
}

func (p *h2Parser) Boundary(Direction, exchange.Meta) {}

func (p *h2Parser) Close(exchange.Meta) {
	if !p.off {
		p.emit(p.conn.Close())
	}
}

func (p *h2Parser) Evict() { p.off = true }

// Quiescent is never true: streams interleave, so there is no point at
// which the kernel could go back to proving HTTP/1 requests.
func (p *h2Parser) Quiescent() bool { return false }

func (p *h2Parser) Off() bool { return p.off }

// emit turns finished streams into exchanges for the caller.
func (p *h2Parser) emit(exs []*http2.Exchange) {
	lim := &p.sink.Limits
	for _, x := range exs {
		if x.Request == nil {
			continue // a stream whose headers were never seen: nothing to say
		}
		if lim.Interesting != nil && p.info.Role != RoleClient && !lim.Interesting(x.Request.Method, x.Request.Path) {
			p.sink.Stats.Uninteresting++
			continue
		}
		p.sink.Stats.Exchanges++
		ex := Exchange{
			Conn:         *p.info,
			PID:          p.in.PID,
			TID:          p.in.TID,
			Task:         p.in.Task,
			Request:      h2Request(x.Request, lim.MaxRequestBody),
			End:          EndClosed,
			RequestStart: x.RequestStart,
			RequestEnd:   x.RequestEnd,
			Lost:         x.Lost,
		}
		if x.Response != nil {
			ex.Response = h2Response(x.Response, lim.MaxResponseBody)
			ex.ResponseStart, ex.ResponseEnd = x.ResponseStart, x.ResponseEnd
			ex.End = EndResponse
		} else if x.End == http2.EndLost {
			ex.End = EndLost
		}
		if ex.Request.BodyTruncated || (ex.Response != nil && ex.Response.BodyTruncated) {
			p.sink.Stats.TruncatedBodies++
		}
		p.sink.Out = append(p.sink.Out, ex)
	}
}

func h2Fields(fs []http2.HeaderField, extra int) exchange.Header {
	h := make(exchange.Header, 0, len(fs)+extra)
	for _, f := range fs {
		h = append(h, exchange.HeaderField{Name: f.Name, Value: f.Value})
	}
	return h
}

func limitBody(b []byte, limit int) ([]byte, bool) {
	if len(b) > limit {
		return b[:limit], true
	}
	return b, false
}

// h2Request maps a stream's request to HTTP/1's shape: :authority is the
// Host header, :path the request target.
func h2Request(r *http2.Request, maxBody int) *Request {
	h := h2Fields(r.Header, 1)
	if r.Authority != "" {
		h = append(exchange.Header{{Name: "Host", Value: r.Authority}}, h...)
	}
	body, cut := limitBody(r.Body, maxBody)
	return &Request{
		Method:        r.Method,
		Target:        r.Path,
		Proto:         "HTTP/2",
		Header:        h,
		ContentLength: r.ContentLength,
		Body:          body,
		BodyTruncated: r.BodyTruncated || cut,
		HeadTruncated: r.Partial,
	}
}

func h2Response(r *http2.Response, maxBody int) *Response {
	body, cut := limitBody(r.Body, maxBody)
	return &Response{
		Proto:         "HTTP/2",
		StatusCode:    r.StatusCode,
		Header:        h2Fields(r.Header, 0),
		ContentLength: r.ContentLength,
		Body:          body,
		BodyTruncated: r.BodyTruncated || cut,
		HeadTruncated: r.Partial,
	}
}
