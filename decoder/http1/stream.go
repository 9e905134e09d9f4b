// Package http1 is the decoder's HTTP/1.x stream parser. It follows the
// two byte streams of one connection (requests read by the server,
// responses written by it) through heads and bodies, hands every request
// and response to the connection's exchange.Queue, and is told where
// bytes are missing and why, so that it can tell a body the kernel did
// not copy from a place where it lost track and must resynchronise.
package http1

import (
	"bytes"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// Config bounds a parser.
type Config struct {
	// MaxHeadBytes of a head are kept (and buffered across chunks); a
	// longer head keeps its first lines, and only its framing is followed
	// beyond them.
	MaxHeadBytes int
}

// Scratch is memory the parsers of one decoder reuse from head to head;
// like the decoder, it is for one goroutine.
type Scratch struct {
	fields []fieldSpan
}

type state uint8

const (
	stUnsync state = iota // lost track: looking for the start of a message
	stIdle                // between messages
	stHead                // inside a head; a partial head is buffered
	stOver                // inside a head beyond MaxHeadBytes: only its framing is read
	stBody                // inside a body
)

type bodyMode uint8

const (
	bodyNone    bodyMode = iota
	bodyLength           // Content-Length
	bodyChunked          // chunked transfer coding
	bodyClose            // a response delimited by the connection's close
	bodyTunnel           // 101 or CONNECT 2xx: the connection leaves HTTP
)

// minRequest is the shortest request ("GET / HTTP/1.0\n\n"): a hole
// shorter than that cannot have held one.
const minRequest = 16

// stream is one direction of a connection.
type stream struct {
	state state
	head  []byte // partial head carried across chunks; nil otherwise
	// first is the first chunk of the current message: its time starts
	// the message, and a head cut short by a close or a loss belongs to
	// who read (or wrote) it, not to the close (which names no process).
	first exchange.Meta
	pos   uint64 // stream offset of the next byte
	body  framer
	// p receives the current message; nil discards it (a placeholder, an
	// orphan response, a request beyond the bounds).
	p    *exchange.Pending
	kind exchange.Kind // the request kind a response answers
	over *overflow     // stOver only
	// hole: bytes of the current body were not captured, so no more are
	// kept; full: the kept body reached its limit; skipSent: a skip
	// verdict was given for the current body.
	hole, full, skipSent bool
	// ambiguous: the last request's framing was ambiguous, so a parse
	// error right after it is the other reading, not a lost request.
	ambiguous bool
	// origin: the direction has been followed from its first byte, so a
	// head that fails to parse means the connection is not HTTP/1.
	origin bool
	lostAt uint64 // time of the hole last counted as a lost attempt
}

// Conn parses one connection. The zero Conn is not usable: use New.
type Conn struct {
	cfg     Config
	q       *exchange.Queue
	stats   *exchange.Stats
	scratch *Scratch
	in, out stream
	// off: the connection is not HTTP/1, or left it; nothing more is parsed.
	off bool
	// spoke: a request or response of this connection parsed.
	spoke bool
	// switched: it left HTTP/1 with a 101 (an upgrade: h2c, WebSocket).
	switched bool
}

// Switched reports that the connection left HTTP/1 with a 101 Switching
// Protocols: what follows may be HTTP/2 (h2c), which the caller must not
// let pass unseen.
func (c *Conn) Switched() bool { return c.switched }

// New returns the parser of one connection, feeding q and counting into
// stats, with the scratch memory of its decoder. Both directions start
// out of step, waiting for Boundary or a message start.
func New(cfg Config, q *exchange.Queue, stats *exchange.Stats, scratch *Scratch) Conn {
	return Conn{cfg: cfg, q: q, stats: stats, scratch: scratch}
}

func (c *Conn) stream(dir exchange.Direction) *stream {
	if dir == exchange.Ingress {
		return &c.in
	}
	return &c.out
}

// Off reports that the connection is not HTTP/1 or left it (a tunnel):
// the kernel may stop capturing it.
func (c *Conn) Off() bool { return c.off }

// Quiescent reports that both directions are between messages and no
// request waits for a response.
func (c *Conn) Quiescent() bool {
	return !c.off && c.in.state == stIdle && c.out.state == stIdle && c.q.Empty()
}

// Data parses the captured bytes b at stream offset off of dir, read or
// written as m says. It returns an ingress offset up to which the kernel
// need not copy (the rest of a body nobody keeps), or 0.
func (c *Conn) Data(dir exchange.Direction, off uint64, b []byte, m exchange.Meta) (skipTo uint64) {
	s := c.stream(dir)
	s.pos = off
	if off == 0 {
		s.origin = true
	}
	for len(b) > 0 && !c.off {
		var n int
		switch s.state {
		case stUnsync:
			n = c.resync(s, dir, b)
		case stIdle:
			n = c.idle(s, dir, b, m)
		case stHead:
			n = c.feedHead(s, dir, b, m)
		case stOver:
			n = c.feedOver(s, dir, b, m)
		case stBody:
			n = c.feedBody(s, dir, b, m)
		}
		b = b[n:]
		s.pos += uint64(n)
	}
	if dir == exchange.Ingress && s.state == stBody && s.body.mode == bodyLength && s.body.n > 0 &&
		!s.skipSent && (s.p == nil || s.full || s.hole) {
		s.skipSent = true
		return s.pos + uint64(s.body.n)
	}
	return 0
}

// Hole accounts for n bytes of dir that passed without being captured.
// Inside a body whose framing covers them they are body bytes; otherwise
// the direction lost its place (counted by cause) and resynchronises,
// except for the holes the kernel makes on purpose at boundaries.
func (c *Conn) Hole(dir exchange.Direction, n uint64, cause exchange.HoleCause, m exchange.Meta) {
	if c.off || n == 0 {
		return
	}
	s := c.stream(dir)
	s.pos += n
	if cause == exchange.HoleSkipped && dir == exchange.Ingress {
		// Whole requests the kernel proved and skipped: a boundary
		// follows, wherever the decoder thought it was.
		c.Boundary(dir, m)
		return
	}
	if s.state == stUnsync {
		// Already lost; the hole may still have held requests, whose
		// responses will come.
		if cause != exchange.HoleFiltered && cause != exchange.HoleOutside {
			if dir == exchange.Ingress {
				c.countHole(s, n, cause, m)
				c.q.IngressHole(m.T)
			} else {
				c.q.EgressHole()
			}
		}
		return
	}
	if s.state == stBody && s.body.absorb(n) {
		s.hole = true
		if p := s.p; p != nil && !p.Emitted() {
			if dir == exchange.Ingress {
				p.Req.BodyTruncated = true
			} else {
				p.Resp.BodyTruncated = true
			}
			p.Ex.Lost = p.Ex.Lost || cause == exchange.HoleLost
		}
		if s.body.done() {
			c.endMessage(s, dir, m, false)
		}
		return
	}
	switch {
	case cause == exchange.HoleOutside:
		// A client connection's I/O outside a served request: whatever
		// it held is not ours, but a request waiting may have lost its
		// response to it, or the next response may answer a request not
		// seen: the queue pairs what comes next by time.
		c.cut(s, dir, m, false)
		c.unsync(s)
		if dir == exchange.Ingress {
			c.q.IngressHole(m.T)
		} else {
			c.q.EgressHole()
		}
		return
	case cause == exchange.HoleFiltered && dir == exchange.Egress:
		// Responses the kernel suppressed, or the rest of one beyond its
		// capture bound: the next write it sends begins a response.
		c.cut(s, dir, m, false)
		c.unsync(s)
		return
	case cause == exchange.HoleFiltered:
		c.stats.Desyncs++ // an ingress offset jump nothing explains
	}
	lost := cause == exchange.HoleLost
	if dir == exchange.Ingress {
		c.countHole(s, n, cause, m)
		c.cut(s, dir, m, lost)
		c.q.IngressHole(m.T)
	} else {
		c.cut(s, dir, m, lost)
		c.q.EgressHole()
	}
	c.unsync(s)
}

// countHole counts the request attempt an ingress hole of n bytes may have
// held: one per read (the slices of one read share its time), none when
// it is too short to hold a request.
func (c *Conn) countHole(s *stream, n uint64, cause exchange.HoleCause, m exchange.Meta) {
	if n >= minRequest && m.T != s.lostAt {
		c.stats.Lost(exchange.HoleLoss(cause), 1)
		s.lostAt = m.T
	}
}

// Boundary is the kernel saying that the next byte of dir starts a
// request (the connection's first byte, or right after requests it
// skipped). A message the parser thought still under way ends there,
// truncated, and counts as a desync.
func (c *Conn) Boundary(dir exchange.Direction, m exchange.Meta) {
	s := c.stream(dir)
	switch s.state {
	case stUnsync, stIdle:
	default:
		c.stats.Desyncs++
		if c.cut(s, dir, m, false) && dir == exchange.Ingress {
			c.stats.Lost(exchange.LossDesync, 1) // a head too short to make a request
		}
	}
	s.releaseHead()
	s.state = stIdle
}

// Close ends the connection: a response delimited by the close is
// complete, anything else under way is cut, and every request still
// waiting ends with EndClosed.
func (c *Conn) Close(m exchange.Meta) {
	if s := &c.out; s.state == stBody && s.body.mode == bodyClose {
		c.endMessage(s, exchange.Egress, m, false)
	}
	c.cut(&c.out, exchange.Egress, m, false)
	c.cut(&c.in, exchange.Ingress, m, false)
	c.q.End(exchange.EndClosed, m.T)
	c.in.releaseHead()
	c.out.releaseHead()
}

// Evict drops the parser's state when its connection is evicted; the
// caller ends the queue. A request head still being read is lost.
func (c *Conn) Evict() {
	if c.in.state == stHead && !c.off {
		c.stats.Lost(exchange.LossEvicted, 1)
	}
	c.in.releaseHead()
	c.out.releaseHead()
	c.in, c.out = stream{}, stream{}
}

func (c *Conn) unsync(s *stream) {
	s.releaseHead()
	s.p, s.state, s.origin = nil, stUnsync, false
	c.stats.Resyncs++
}

// releaseHead wipes the buffered head: it may hold credentials.
func (s *stream) releaseHead() {
	clear(s.head)
	s.head = nil
}

// resync looks for the start of a message: a request line at the start
// of b or of one of its lines, a status line at the start of b (a write
// that begins a response). It returns how many bytes it skipped.
func (c *Conn) resync(s *stream, dir exchange.Direction, b []byte) int {
	i := -1
	if dir == exchange.Ingress {
		i = requestStart(b)
	} else {
		i = responseStart(b)
	}
	if i < 0 {
		return len(b)
	}
	s.state = stIdle
	return i
}

// idle skips blank lines between messages (RFC 9112 §2.2; Node accepts
// any number) and starts the next message.
func (c *Conn) idle(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i == len(b) {
		return i
	}
	s.first = m
	if dir == exchange.Egress && !plausibleResponse(b[i:]) {
		if k, ok := c.q.Next(); ok && k == exchange.KindSimple {
			// An HTTP/0.9 answer has no head (Python's): bytes up to the
			// close. Node answers one with a status line, read as usual.
			p, _, _ := c.q.Response(m.T)
			if p != nil {
				p.Resp.Proto, p.Resp.ContentLength = "HTTP/0.9", -1
			}
			s.p, s.state, s.body = p, stBody, framer{mode: bodyClose}
			return i
		}
	}
	s.state = stHead
	return i
}

// feedHead collects head bytes up to the empty line, and returns how many
// bytes of b it used. A start line is judged as soon as it is complete.
func (c *Conn) feedHead(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) int {
	limit := c.cfg.MaxHeadBytes
	if len(s.head) == 0 {
		// Common case: the whole head is in this chunk; parse it in place.
		if !c.plausible(dir, b) {
			c.badHead(s, dir, b)
			return lineLen(b)
		}
		n := headEnd(b, 0)
		switch {
		case n >= 0 && n <= limit:
			if !c.onHead(s, dir, b[:n], m, false) {
				c.badHead(s, dir, b)
				return lineLen(b)
			}
			return n
		case n < 0 && len(b) < limit:
			if !c.startLineOK(dir, b) {
				c.badHead(s, dir, b)
				return lineLen(b)
			}
			s.head = exchange.AppendSecret(nil, b, limit)
			return len(b)
		}
		if !c.onHead(s, dir, b[:limit], m, true) {
			c.badHead(s, dir, b)
			return lineLen(b)
		}
		return limit
	}
	old := len(s.head)
	take := min(len(b), limit-old)
	s.head = exchange.AppendSecret(s.head, b[:take], limit)
	if !c.plausible(dir, s.head) || !c.startLineOK(dir, s.head) {
		// Skip the bad line only: what follows it is searched again.
		used := take
		if i := bytes.IndexByte(s.head, '\n'); i >= old {
			used = i + 1 - old
		}
		c.badHead(s, dir, s.head)
		return used
	}
	if n := headEnd(s.head, max(0, old-3)); n >= 0 {
		h := s.head
		s.head = nil
		if !c.onHead(s, dir, h[:n], m, false) {
			c.badHead(s, dir, h)
		}
		clear(h)
		return n - old
	}
	if len(s.head) >= limit {
		h := s.head
		s.head = nil
		if !c.onHead(s, dir, h, m, true) {
			c.badHead(s, dir, h)
		}
		clear(h)
	}
	return take
}

// startLineOK reports whether b's start line, once complete, is one.
func (c *Conn) startLineOK(dir exchange.Direction, b []byte) bool {
	line, _, complete := cutLine(b)
	if !complete {
		return true
	}
	if dir == exchange.Ingress {
		_, ok := parseRequestLine(line)
		return ok
	}
	_, ok := parseStatusLine(line)
	return ok
}

func lineLen(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i + 1
	}
	return len(b)
}

// plausible reports whether b can start a message of dir, so that binary
// bytes are judged on their first bytes instead of being buffered.
func (c *Conn) plausible(dir exchange.Direction, b []byte) bool {
	if dir == exchange.Ingress {
		return plausibleRequest(b)
	}
	return plausibleResponse(b)
}

// badHead handles a head that is not HTTP/1 (b is where it starts). A TLS
// record, or garbage at the very start of a connection, means nothing
// more will be: the connection is turned off. Otherwise it is a parse
// error (a lost attempt, unless it is the other reading of an ambiguous
// request before it) and the direction resynchronises.
func (c *Conn) badHead(s *stream, dir exchange.Direction, b []byte) {
	if (!c.spoke && s.origin) || (dir == exchange.Ingress && isTLSRecord(b)) {
		c.off = true
		c.stats.NotHTTP++
		s.releaseHead()
		s.state = stIdle
		return
	}
	c.stats.ParseErrors++
	if dir == exchange.Ingress {
		if !s.ambiguous {
			c.stats.Lost(exchange.LossParseError, 1)
		}
		c.q.IngressHole(s.first.T)
	} else {
		c.q.EgressHole()
	}
	s.ambiguous = false
	c.unsync(s)
}

// onHead parses a complete head, or with truncated the first
// MaxHeadBytes (or the captured part) of a longer one. It reports false,
// changing nothing, when the head is not one.
func (c *Conn) onHead(s *stream, dir exchange.Direction, head []byte, m exchange.Meta, truncated bool) bool {
	if dir == exchange.Ingress {
		return c.onRequestHead(s, head, m, truncated)
	}
	return c.onResponseHead(s, head, m, truncated)
}

func (c *Conn) onRequestHead(s *stream, head []byte, m exchange.Meta, truncated bool) bool {
	h, ok := readRequestHead(head, truncated, c.scratch.fields)
	if !ok {
		return false
	}
	c.scratch.fields = h.fields[:0] // keep what it grew to
	c.spoke = true
	mode, n, _ := h.f.requestBody(h.http10())
	var body int64 // bytes the body may keep: unknown (-1) when chunked
	switch mode {
	case bodyLength:
		body = n
	case bodyChunked:
		body = -1
	}
	p := c.q.Request(exchange.RequestInfo{
		// Valid only during the call: they alias the chunk or the buffer.
		Method: str(h.line.method), Target: str(h.line.target),
		Kind: h.kind(), Start: s.first.T, End: m.T, PID: m.PID, TID: m.TID, Task: m.Task, Busy: m.Busy,
		HeadBytes: len(head), BodyBytes: body,
	})
	if p != nil {
		// The message's own copy of its head, with room for the body.
		room := 0
		if mode == bodyLength {
			room = int(min(n, int64(p.MaxRequestBody())))
		}
		fillRequest(&p.Req, p.RequestHead(head, room), truncated, &h, p.RequestFields(len(h.fields)))
	}
	s.p = p
	if truncated {
		s.state = stOver
		s.over = &overflow{f: h.f, http10: h.http10()}
		s.over.start(head)
		return true
	}
	c.frameRequest(s, &h.f, h.http10(), m)
	return true
}

// frameRequest sets up the body of the request whose head ended.
func (c *Conn) frameRequest(s *stream, f *framing, http10 bool, m exchange.Meta) {
	mode, n, amb := f.requestBody(http10)
	s.ambiguous = amb&^exchange.AmbiguousHeader != 0
	if p := s.p; p != nil {
		setRequestFraming(&p.Req, f, mode, amb)
	}
	s.body, s.hole, s.full, s.skipSent = framer{}, false, false, false
	switch mode {
	case bodyLength:
		s.body = framer{mode: bodyLength, n: n}
		s.state = stBody
	case bodyChunked:
		s.body = framer{mode: bodyChunked, limit: n}
		s.state = stBody
	default:
		c.endMessage(s, exchange.Ingress, m, false)
	}
}

func (c *Conn) onResponseHead(s *stream, head []byte, m exchange.Meta, truncated bool) bool {
	line, rest, complete := cutLine(head)
	sl, ok := parseStatusLine(line)
	if !ok || (!complete && !truncated) {
		return false
	}
	c.spoke = true
	f := newFraming()
	fields := readFields(head, len(head)-len(rest), &f, c.scratch.fields[:0])
	c.scratch.fields = fields[:0]
	if sl.code < 200 && sl.code != 101 {
		// Interim (100 Continue, 103 Early Hints): the final response is
		// still to come.
		s.p = nil
		if truncated {
			s.state, s.over = stOver, &overflow{f: f, interim: true}
			s.over.start(head)
			return true
		}
		s.state = stIdle
		return true
	}
	p, kind, _ := c.q.Response(s.first.T)
	if p != nil {
		room := 0
		if mode, n := f.responseBody(sl.code, kind); mode == bodyLength {
			room = int(min(n, int64(p.MaxResponseBody())))
		}
		fillResponse(&p.Resp, p.ResponseHead(head, room), truncated, fields, p.ResponseFields(len(fields)))
		p.ResponseBytes(m.T)
	}
	s.p, s.kind = p, kind
	if truncated {
		s.state, s.over = stOver, &overflow{f: f, code: sl.code}
		s.over.start(head)
		return true
	}
	c.frameResponse(s, &f, sl.code, m)
	return true
}

// frameResponse sets up the body of the response whose head ended.
func (c *Conn) frameResponse(s *stream, f *framing, code int, m exchange.Meta) {
	mode, n := f.responseBody(code, s.kind)
	if p := s.p; p != nil {
		setResponseFraming(&p.Resp, f, mode)
	}
	s.body, s.hole, s.full = framer{}, false, false
	switch mode {
	case bodyLength:
		s.body, s.state = framer{mode: bodyLength, n: n}, stBody
	case bodyChunked:
		s.body, s.state = framer{mode: bodyChunked, limit: -1}, stBody
	case bodyClose:
		s.body, s.state = framer{mode: bodyClose}, stBody
	case bodyTunnel:
		c.endMessage(s, exchange.Egress, m, false)
		c.off = true // the bytes that follow are another protocol
		c.switched = code == 101
		c.stats.Tunnels++
	default:
		c.endMessage(s, exchange.Egress, m, false)
	}
}

// feedOver reads the rest of a head beyond MaxHeadBytes for its framing.
func (c *Conn) feedOver(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) int {
	n, end := s.over.feed(b)
	if s.p != nil {
		if dir == exchange.Ingress {
			s.p.RequestBytes(m.T)
		} else {
			s.p.ResponseBytes(m.T)
		}
	}
	if !end {
		return n
	}
	o := s.over
	s.over = nil
	switch {
	case o.interim:
		s.state = stIdle
	case dir == exchange.Ingress:
		c.frameRequest(s, &o.f, o.http10, m)
	default:
		c.frameResponse(s, &o.f, o.code, m)
	}
	return n
}

// feedBody follows the body framing over b, keeping body bytes, and
// returns how many bytes of b belonged to the body.
func (c *Conn) feedBody(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) int {
	f := &s.body
	switch f.mode {
	case bodyLength:
		n := min(int64(len(b)), f.n)
		c.keep(s, dir, b[:n], m)
		if f.n -= n; f.n == 0 {
			c.endMessage(s, dir, m, false)
		}
		return int(n)
	case bodyClose:
		c.keep(s, dir, b, m)
		return len(b)
	}
	if f.limit >= 0 && int64(len(b)) > f.limit {
		b = b[:f.limit]
	}
	n, done, ok := c.chunked(s, dir, b, m)
	if f.limit >= 0 {
		// A Content-Length next to the chunked coding: the body also
		// ends where it says, whichever comes first.
		if f.limit -= int64(n); f.limit == 0 {
			done = true
		}
	}
	switch {
	case !ok:
		c.stats.ParseErrors++
		if dir == exchange.Ingress {
			c.q.IngressHole(m.T)
		} else {
			c.q.EgressHole()
		}
		c.cut(s, dir, m, false)
		c.unsync(s)
	case done:
		c.endMessage(s, dir, m, false)
	}
	return n
}

// keep gives body bytes to the current message, up to its body limit.
func (c *Conn) keep(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) {
	p := s.p
	if p == nil {
		return
	}
	if p.Emitted() {
		s.p = nil // answered (or timed out) before its body ended
		return
	}
	if dir == exchange.Ingress {
		p.RequestBytes(m.T)
		if !s.hole {
			s.full = p.KeepRequestBody(b)
		}
	} else {
		p.ResponseBytes(m.T)
		if !s.hole {
			s.full = p.KeepResponseBody(b)
		}
	}
}

// endMessage finishes the direction's current message: a request now just
// waits for its response, a response completes its exchange. broken says
// the message's end was not seen.
func (c *Conn) endMessage(s *stream, dir exchange.Direction, m exchange.Meta, broken bool) {
	p := s.p
	s.p, s.state, s.body, s.over = nil, stIdle, framer{}, nil
	s.hole, s.full, s.skipSent = false, false, false
	if p == nil || p.Emitted() {
		return
	}
	if dir == exchange.Ingress {
		if broken {
			p.Req.BodyTruncated = true
		}
		p.RequestDone(m.T)
		return
	}
	if broken {
		p.Resp.BodyTruncated = true
	}
	c.q.Done(p)
}

// cut ends whatever message dir was in because its place in the stream
// is lost: a head with its first line makes a truncated message, a body
// ends truncated. lost marks the exchange as touched by lost events. It
// reports a head that was dropped because it made no message.
func (c *Conn) cut(s *stream, dir exchange.Direction, m exchange.Meta, lost bool) (dropped bool) {
	switch s.state {
	case stHead:
		// What was seen of the head makes a truncated message when its
		// start line is there; otherwise it is dropped.
		h := s.head
		s.head = nil
		reader := s.first
		reader.T = m.T
		ok := len(h) > 0 && c.onHead(s, dir, h, reader, true)
		clear(h)
		if !ok {
			s.state = stIdle
			return true
		}
	case stOver, stBody:
	default:
		return false
	}
	if p := s.p; p != nil && !p.Emitted() {
		p.Ex.Lost = p.Ex.Lost || lost
		if dir == exchange.Ingress {
			p.Req.HeadTruncated = p.Req.HeadTruncated || s.state == stOver
		}
	}
	c.endMessage(s, dir, m, true)
	return false
}

// HeldHead is the most head bytes one direction buffers (bounded by
// MaxHeadBytes).
func (c *Conn) HeldHead() int { return max(len(c.in.head), len(c.out.head)) }
