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
	// ids are the exchange IDs of the streams announced as in flight
	// (Opened), and untracked the uninteresting ones announced as
	// placeholders, which end with a Closed.
	ids       map[*http2.Exchange]uint64
	untracked map[*http2.Exchange]Closed
}

var _ streamParser = (*h2Parser)(nil)

func newH2Parser(sink *exchange.Sink, info *ConnInfo, cfg Config) *h2Parser {
	return &h2Parser{
		conn: http2.NewConn(http2.Config{MaxBodyBytes: max(cfg.MaxRequestBody, cfg.MaxResponseBody, 1)}),
		sink: sink,
		info: info,
		ids:  map[*http2.Exchange]uint64{}, untracked: map[*http2.Exchange]Closed{},
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
	done := p.conn.Feed(h2Dir(dir), data, m.T)
	p.announce(p.conn.Opened())
	p.emit(done)
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

// Evict drops the connection; its streams announced in flight end as
// timed out (as an evicted HTTP/1 connection's queue does), so that
// nothing waits for them.
func (p *h2Parser) Evict() {
	if !p.off {
		p.emitEnd(p.conn.Close(), EndTimeout)
	}
	p.off = true
}

// Quiescent is never true: streams interleave, so there is no point at
// which the kernel could go back to proving HTTP/1 requests.
func (p *h2Parser) Quiescent() bool { return false }

func (p *h2Parser) Off() bool { return p.off }

// interesting says whether a stream's request is worth an exchange.
func (p *h2Parser) interesting(r *http2.Request) bool {
	lim := &p.sink.Limits
	return lim.Interesting == nil || p.info.Role == RoleClient || lim.Interesting(r.Method, r.Path)
}

// announce tells the caller of the requests now in flight, as HTTP/1's
// queue does for each request head (decoder.Opened): an interesting one
// with the ID its exchange will carry, the others as placeholders that
// end (Closed) when the stream does. The process's own calls made while
// serving one are then attributed to it.
func (p *h2Parser) announce(opened []*http2.Exchange) {
	for _, x := range opened {
		o := Opened{Conn: *p.info, PID: p.in.PID, TID: p.in.TID, Task: p.in.Task, Start: x.RequestStart}
		if p.interesting(x.Request) {
			o.ID = p.sink.NextID()
			o.Request = h2Request(x.Request, p.sink.Limits.MaxRequestBody)
			p.ids[x] = o.ID
		} else {
			p.untracked[x] = Closed{PID: o.PID, Task: o.Task}
		}
		p.sink.Opened = append(p.sink.Opened, o)
	}
}

// emit turns finished streams into exchanges for the caller.
func (p *h2Parser) emit(exs []*http2.Exchange) { p.emitEnd(exs, EndClosed) }

// emitEnd is emit where a stream that ended without a response (and lost
// nothing) ends with unanswered.
func (p *h2Parser) emitEnd(exs []*http2.Exchange, unanswered EndReason) {
	lim := &p.sink.Limits
	for _, x := range exs {
		id := p.ids[x]
		delete(p.ids, x)
		if cl, ok := p.untracked[x]; ok {
			delete(p.untracked, x)
			cl.T = max(x.ResponseStart, x.RequestEnd)
			p.sink.Closed = append(p.sink.Closed, cl)
		}
		if x.Request == nil {
			continue // a stream whose headers were never seen: nothing to say
		}
		if !p.interesting(x.Request) {
			p.sink.Stats.Uninteresting++
			continue
		}
		p.sink.Stats.Exchanges++
		ex := Exchange{
			Conn:         *p.info,
			ID:           id,
			PID:          p.in.PID,
			TID:          p.in.TID,
			Task:         p.in.Task,
			Request:      h2Request(x.Request, lim.MaxRequestBody),
			End:          unanswered,
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
