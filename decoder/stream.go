package decoder

import "bytes"

// streamState is where a direction of a connection is in its messages.
type streamState uint8

const (
	stIdle   streamState = iota // between messages
	stHead                      // inside a head; partial heads are buffered
	stBody                      // inside a body
	stResync                    // lost track: wait for a chunk that starts a message
)

type bodyMode uint8

const (
	bodyNone    bodyMode = iota
	bodyLength           // Content-Length
	bodyChunked          // chunked transfer coding
	bodyClose            // response delimited by the connection's close
	bodyTunnel           // 101 or CONNECT 2xx: the connection leaves HTTP
)

type chunkState uint8

const (
	csSize         chunkState = iota // hex digits of a chunk size
	csExt                            // chunk extension, up to LF
	csSizeLF                         // LF after the size line's CR
	csData                           // chunk data
	csDataCR                         // CRLF after chunk data
	csDataLF                         //
	csTrailerStart                   // start of a trailer line or the final empty line
	csTrailer                        // trailer field, up to LF
	csTrailerLF                      // LF of the final empty line
)

// framer follows a body's framing without buffering it.
type framer struct {
	mode   bodyMode
	n      int64 // bytes left in the body (length) or current chunk (chunked)
	cs     chunkState
	digits int // hex digits of the current chunk size
	meta   int // bytes of chunk extensions or trailers, bounded by MaxHeadBytes
}

// stream is one direction of a connection: requests (ingress) or
// responses (egress) of a server.
type stream struct {
	state streamState
	head  []byte // partial head carried across chunks; nil otherwise
	start uint64 // time of the first chunk of the current message
	body  framer
	cur   *pending // the exchange receiving the current message; nil discards it
	hole  bool     // uncaptured bytes made the kept body discontinuous
}

// feedStream consumes the captured bytes of one chunk on one direction.
func (d *Decoder) feedStream(c *conn, s *stream, req bool, data []byte, t uint64) {
	if s.state == stResync {
		if !startsMessage(data, req) {
			return
		}
		s.state = stIdle
	}
	for len(data) > 0 && !c.upgraded {
		switch s.state {
		case stIdle:
			// Blank lines between messages are ignored (RFC 9112 §2.2).
			i := 0
			for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
				i++
			}
			if data = data[i:]; len(data) == 0 {
				return
			}
			s.state, s.start = stHead, t
		case stHead:
			data = d.feedHead(c, s, req, data, t)
		case stBody:
			n, done, err := d.consumeBody(s, req, data)
			data = data[n:]
			s.touch(req, t)
			if err != nil {
				d.stats.ParseErrors++
				d.endMessage(c, s, req, true)
				s.state = stResync
				return
			}
			if done {
				d.endMessage(c, s, req, false)
			}
		default: // stResync after an error inside this chunk
			return
		}
	}
}

// feedHead collects head bytes until the empty line, parses the head and
// returns the bytes after it.
func (d *Decoder) feedHead(c *conn, s *stream, req bool, data []byte, t uint64) []byte {
	limit := d.cfg.MaxHeadBytes
	var head []byte
	if len(s.head) == 0 {
		// Common case: the whole head is in this chunk; parse it in place.
		if !plausibleStart(data, req) {
			d.headError(s)
			return nil
		}
		n := headEnd(data, 0)
		if n < 0 {
			if len(data) > limit {
				d.headError(s)
				return nil
			}
			s.head = appendSecret(nil, data, limit)
			return nil
		}
		if n > limit {
			d.headError(s)
			return nil
		}
		head, data = data[:n], data[n:]
	} else {
		old := len(s.head)
		take := min(len(data), limit-old)
		s.head = appendSecret(s.head, data[:take], limit)
		if old < 64 && !plausibleStart(s.head, req) {
			d.headError(s)
			return nil
		}
		n := headEnd(s.head, max(0, old-3))
		if n < 0 {
			if take < len(data) || len(s.head) >= limit {
				d.headError(s)
			}
			return nil
		}
		head, data = s.head[:n], data[n-old:]
	}
	d.onHead(c, s, req, head, t)
	s.releaseHead()
	return data
}

// headError counts an unparseable head and drops the direction's bytes
// until a chunk starts a new message.
func (d *Decoder) headError(s *stream) {
	d.stats.ParseErrors++
	s.releaseHead()
	s.state = stResync
}

// releaseHead wipes the buffered head: it may hold credentials.
func (s *stream) releaseHead() {
	clear(s.head)
	s.head = nil
}

// onHead parses a complete (or capture-truncated) head and starts its
// message: a request joins the connection's queue, a response is paired
// with the oldest request waiting for one.
func (d *Decoder) onHead(c *conn, s *stream, req bool, head []byte, t uint64) {
	s.cur, s.hole, s.body = nil, false, framer{}
	if req {
		p := &pending{epoch: c.epoch}
		if err := parseRequestHead(head, &p.req); err != nil {
			d.headError(s)
			return
		}
		p.ex.Conn, p.ex.Request = c.info, &p.req
		p.ex.RequestStart, p.ex.RequestEnd = s.start, t
		d.enqueue(c, p)
		switch {
		case p.req.Chunked:
			s.body.mode = bodyChunked
		case p.req.ContentLength > 0:
			s.body.mode, s.body.n = bodyLength, p.req.ContentLength
			p.req.Body = make([]byte, 0, min(p.req.ContentLength, int64(d.cfg.MaxRequestBody)))
		default:
			s.state = stIdle
			return
		}
		s.cur, s.state = p, stBody
		return
	}

	var r Response
	if err := parseResponseHead(head, &r); err != nil {
		d.headError(s)
		return
	}
	if r.StatusCode < 200 && r.StatusCode != 101 {
		// Interim response (100 Continue, 103 Early Hints): the final
		// one is still to come.
		s.state = stIdle
		return
	}
	p := d.responseTarget(c)
	method := ""
	if p != nil {
		method = p.req.Method
		p.resp = r
		p.ex.Response = &p.resp
		p.respHead = true
		p.ex.ResponseStart, p.ex.ResponseEnd = s.start, t
	}
	switch m := responseMode(&r, method); m {
	case bodyNone, bodyTunnel:
		s.state = stIdle
		if p != nil {
			d.emit(c, p, EndResponse)
		}
		if m == bodyTunnel {
			// The bytes that follow are another protocol.
			c.upgraded = true
		}
		return
	case bodyLength:
		s.body.mode, s.body.n = bodyLength, r.ContentLength
		if p != nil {
			p.resp.Body = make([]byte, 0, min(r.ContentLength, int64(d.cfg.MaxResponseBody)))
		}
	default:
		s.body.mode = m
	}
	s.cur, s.state = p, stBody
}

// responseMode applies RFC 9112 §6.3 to find how a response body ends.
func responseMode(r *Response, method string) bodyMode {
	switch {
	case r.StatusCode == 101 || (method == "CONNECT" && r.StatusCode/100 == 2):
		return bodyTunnel
	case method == "HEAD" || r.StatusCode < 200 || r.StatusCode == 204 || r.StatusCode == 304:
		return bodyNone
	case r.Chunked:
		return bodyChunked
	case r.ContentLength == 0:
		return bodyNone
	case r.ContentLength > 0:
		return bodyLength
	}
	return bodyClose
}

// touch records that the current message received bytes at t.
func (s *stream) touch(req bool, t uint64) {
	if s.cur == nil {
		return
	}
	if req {
		s.cur.ex.RequestEnd = max(s.cur.ex.RequestEnd, t)
	} else {
		s.cur.ex.ResponseEnd = max(s.cur.ex.ResponseEnd, t)
	}
}

// endMessage finishes the direction's current message: a request now waits
// for its response, a response completes its exchange. broken says the
// body's end was not seen.
func (d *Decoder) endMessage(c *conn, s *stream, req bool, broken bool) {
	p := s.cur
	s.cur, s.state, s.body, s.hole = nil, stIdle, framer{}, false
	if p == nil {
		return
	}
	if req {
		if broken {
			p.req.BodyTruncated = true
		}
		return
	}
	if broken {
		p.resp.BodyTruncated = true
	}
	d.emit(c, p, EndResponse)
}

// skipStream accounts for n bytes the syscall moved beyond the capture:
// they are body bytes of the current message when its framing allows,
// never the start of a new head.
func (d *Decoder) skipStream(c *conn, s *stream, req bool, n int64, t uint64) {
	switch s.state {
	case stIdle:
		s.state = stResync
	case stHead:
		// The head was cut by the capture budget: keep what it says up to
		// its last complete line, then wait for the next message.
		if i := bytes.LastIndexByte(s.head, '\n'); i >= 0 {
			d.onHead(c, s, req, s.head[:i+1], t)
			if s.state == stBody {
				d.endMessage(c, s, req, true)
			}
		} else {
			d.stats.ParseErrors++
		}
		s.releaseHead()
		if !c.upgraded {
			s.state = stResync
		}
	case stBody:
		s.touch(req, t)
		s.hole = true
		s.markTruncated(req)
		f := &s.body
		switch f.mode {
		case bodyClose:
			return
		case bodyLength:
			if n < f.n {
				f.n -= n
				return
			}
			over := n > f.n
			d.endMessage(c, s, req, false)
			if over {
				s.state = stResync
			}
			return
		case bodyChunked:
			if f.cs == csData && n <= f.n {
				if f.n -= n; f.n == 0 {
					f.cs = csDataCR
				}
				return
			}
		}
		d.endMessage(c, s, req, true)
		s.state = stResync
	}
}

func (s *stream) markTruncated(req bool) {
	if s.cur == nil {
		return
	}
	if req {
		s.cur.req.BodyTruncated = true
	} else {
		s.cur.resp.BodyTruncated = true
	}
}

// keep appends body bytes to the current message up to the body limit.
func (d *Decoder) keep(s *stream, req bool, b []byte) {
	if s.cur == nil || len(b) == 0 {
		return
	}
	body, trunc, limit := &s.cur.resp.Body, &s.cur.resp.BodyTruncated, d.cfg.MaxResponseBody
	if req {
		body, trunc, limit = &s.cur.req.Body, &s.cur.req.BodyTruncated, d.cfg.MaxRequestBody
	}
	room := limit - len(*body)
	if s.hole || room <= 0 {
		*trunc = true
		return
	}
	if len(b) > room {
		b = b[:room]
		*trunc = true
	}
	*body = appendSecret(*body, b, limit)
}

// consumeBody follows the body framing over data, keeping body bytes, and
// returns how many bytes belonged to the body and whether it ended.
func (d *Decoder) consumeBody(s *stream, req bool, data []byte) (int, bool, error) {
	f := &s.body
	switch f.mode {
	case bodyLength:
		n := min(int64(len(data)), f.n)
		d.keep(s, req, data[:n])
		f.n -= n
		return int(n), f.n == 0, nil
	case bodyClose:
		d.keep(s, req, data)
		return len(data), false, nil
	case bodyChunked:
		return d.consumeChunked(s, req, data)
	}
	return 0, true, nil
}

// consumeChunked de-chunks data incrementally (RFC 9112 §7.1); chunk
// boundaries may fall anywhere relative to the syscall boundaries.
func (d *Decoder) consumeChunked(s *stream, req bool, data []byte) (int, bool, error) {
	f := &s.body
	limit := d.cfg.MaxHeadBytes
	i := 0
	for i < len(data) {
		c := data[i]
		switch f.cs {
		case csSize:
			if v := unhex(c); v >= 0 {
				if f.digits >= 15 {
					return i, false, errChunkSize
				}
				f.n = f.n<<4 | int64(v)
				f.digits++
				i++
				continue
			}
			if f.digits == 0 {
				return i, false, errChunkSize
			}
			i++
			switch c {
			case ';', ' ', '\t':
				f.cs = csExt
			case '\r':
				f.cs = csSizeLF
			case '\n':
				f.endSizeLine()
			default:
				return i, false, errChunkSize
			}
		case csExt, csTrailer:
			j := bytes.IndexByte(data[i:], '\n')
			if j < 0 {
				f.meta += len(data) - i
				i = len(data)
			} else {
				f.meta += j
				i += j + 1
				if f.cs == csExt {
					f.endSizeLine()
				} else {
					f.cs = csTrailerStart
				}
			}
			if f.meta > limit {
				return i, false, errChunkMetaSize
			}
		case csSizeLF:
			if c != '\n' {
				return i, false, errChunkFraming
			}
			i++
			f.endSizeLine()
		case csData:
			n := min(int64(len(data)-i), f.n)
			d.keep(s, req, data[i:i+int(n)])
			i += int(n)
			if f.n -= n; f.n == 0 {
				f.cs = csDataCR
			}
		case csDataCR:
			i++
			switch c {
			case '\r':
				f.cs = csDataLF
			case '\n':
				f.cs = csSize
			default:
				return i, false, errChunkFraming
			}
		case csDataLF:
			if c != '\n' {
				return i, false, errChunkFraming
			}
			i++
			f.cs = csSize
		case csTrailerStart:
			switch c {
			case '\r':
				i++
				f.cs = csTrailerLF
			case '\n':
				return i + 1, true, nil
			default:
				f.cs = csTrailer
			}
		case csTrailerLF:
			if c != '\n' {
				return i, false, errChunkFraming
			}
			return i + 1, true, nil
		}
	}
	return i, false, nil
}

// endSizeLine moves from a chunk-size line to the chunk data, or to the
// trailers after the last (zero-size) chunk.
func (f *framer) endSizeLine() {
	if f.n == 0 {
		f.cs = csTrailerStart
	} else {
		f.cs = csData
	}
	f.digits, f.meta = 0, 0
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendSecret appends b to dst (never beyond limit bytes of capacity
// need) and wipes the old backing array when it has to grow, so that no
// stray copy of captured bytes outlives its use.
func appendSecret(dst, b []byte, limit int) []byte {
	if len(dst)+len(b) <= cap(dst) {
		return append(dst, b...)
	}
	n := max(2*cap(dst), len(dst)+len(b), 256)
	n = min(n, max(limit, len(dst)+len(b)))
	grown := make([]byte, len(dst), n)
	copy(grown, dst)
	clear(dst)
	return append(grown, b...)
}
