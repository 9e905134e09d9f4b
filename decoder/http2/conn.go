package http2

import (
	"encoding/binary"
	"strconv"

	"golang.org/x/net/http2/hpack"
)

// Preface is what an HTTP/2 client sends first (RFC 9113 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Detection is what the first bytes of a connection say.
type Detection uint8

const (
	NeedMore Detection = iota // a prefix of the preface: wait
	IsHTTP2                   // the client preface
	NotHTTP2                  // anything else
)

// Detect tells from the first bytes the client sent whether the
// connection speaks HTTP/2 with prior knowledge (h2c, or h2 after TLS):
// the preface decides, not a guess from a later chunk.
func Detect(first []byte) Detection {
	n := min(len(first), len(Preface))
	if string(first[:n]) != Preface[:n] {
		return NotHTTP2
	}
	if n < len(Preface) {
		return NeedMore
	}
	return IsHTTP2
}

// Frame types and flags (RFC 9113 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	frameHeaderLen   = 9
	defaultFrameSize = 16384
	maxFrameSize     = 1<<24 - 1

	settingHeaderTableSize = 0x1
	settingMaxFrameSize    = 0x5
)

// frameHeader is the 9-byte header of a frame.
type frameHeader struct {
	Length   uint32
	Type     uint8
	Flags    uint8
	StreamID uint32
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		Length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		Type:     b[3],
		Flags:    b[4],
		StreamID: binary.BigEndian.Uint32(b[5:]) & 0x7fffffff,
	}
}

// Conn decodes one HTTP/2 connection. It is not safe for concurrent use.
type Conn struct {
	cfg      Config
	halves   [2]half // Ingress, Egress
	streams  map[uint32]*stream
	notHTTP2 bool
	preface  int // preface bytes of the client seen so far
	lost     bool
	done     []*Exchange
	opened   []*Exchange
	stats    Stats
}

// half is one direction of the connection.
type half struct {
	dir Direction
	buf []byte // bytes not yet consumed: a partial frame
	// hunting: the direction's frame boundary is not known (mid-stream
	// start or a gap); bytes are scanned for a plausible frame header.
	hunting bool
	// skip counts payload bytes of the current frame still to drop, and
	// data streams them into a body.
	skip     uint32
	data     *dataFrame
	hp       *hpack.Decoder // nil while partial
	partial  partialDecoder
	block    *headerBlock // a header block waiting for CONTINUATION
	maxFrame uint32       // what the peer allows this direction to send
}

// dataFrame is a DATA frame being streamed.
type dataFrame struct {
	st        *stream
	padLeft   int  // padding at the end, not body
	padByte   bool // the pad length byte is still to come
	endStream bool
	left      uint32
}

// headerBlock collects one HEADERS or PUSH_PROMISE and its CONTINUATIONs.
type headerBlock struct {
	st        *stream // nil: decoded for HPACK only
	push      bool
	endStream bool
	frags     []byte // partial mode only: the whole block
	fields    []HeaderField
	bytes     int
	unknown   int
	failed    bool // the block could not be decoded (HPACK state lost)
}

// stream is one stream in flight.
type stream struct {
	ex                  *Exchange
	reqHeaders          bool // the request's header block was seen
	respHeaders         bool // a final response header block was seen
	reqEnded, respEnded bool
	reqBytes, respBytes int // decoded header bytes kept
}

// NewConn returns a decoder for one connection from its first byte (the
// client preface expected on Ingress), or joined mid-stream when
// cfg.MidStream is set.
func NewConn(cfg Config) *Conn {
	cfg = cfg.withDefaults()
	c := &Conn{cfg: cfg, streams: map[uint32]*stream{}}
	for i, d := range []Direction{Ingress, Egress} {
		h := &c.halves[i]
		h.dir = d
		h.maxFrame = defaultFrameSize
		if cfg.MidStream {
			h.hunting = true
		} else {
			h.hp = hpack.NewDecoder(4096, nil)
			h.hp.SetMaxStringLength(maxStringLen)
		}
	}
	if cfg.MidStream {
		c.preface = len(Preface)
	}
	return c
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats { return c.stats }

func (c *Conn) half(d Direction) *half {
	if d == Egress {
		return &c.halves[1]
	}
	return &c.halves[0]
}

func (c *Conn) other(h *half) *half {
	if h.dir == Ingress {
		return &c.halves[1]
	}
	return &c.halves[0]
}

// Feed decodes the next bytes of one direction, in stream order, seen at
// time ts, and returns the exchanges that completed.
func (c *Conn) Feed(dir Direction, data []byte, ts uint64) []*Exchange {
	if c.notHTTP2 || (dir != Ingress && dir != Egress) {
		return nil
	}
	if dir == Ingress && c.preface < len(Preface) {
		n := min(len(data), len(Preface)-c.preface)
		if string(data[:n]) != Preface[c.preface:c.preface+n] {
			c.notHTTP2 = true
			c.stats.NotHTTP2++
			return nil
		}
		c.preface += n
		data = data[n:]
	}
	h := c.half(dir)
	h.buf = append(h.buf, data...)
	c.run(h, ts)
	// Keep what is left; compact so a long connection does not grow.
	if len(h.buf) == 0 {
		h.buf = h.buf[:0]
	}
	out := c.done
	c.done = nil
	return out
}

// Opened returns the streams whose request head was decoded since the
// last call, in the order the heads ended: the requests now in flight
// (a stream may also be among the exchanges Feed returned in the same
// call). Trailers alone, on a stream joined late, open nothing.
func (c *Conn) Opened() []*Exchange {
	out := c.opened
	c.opened = nil
	return out
}

// Gap says bytes of one direction were lost before the next Feed: the
// direction hunts for a frame boundary, its HPACK state is lost, and the
// streams in flight are marked lost.
func (c *Conn) Gap(dir Direction) {
	h := c.half(dir)
	c.stats.Gaps++
	if h.data != nil || h.skip > 0 {
		c.stats.FramesSkipped++
	}
	h.buf, h.data, h.skip = nil, nil, 0
	h.hunting = true
	c.loseHPACK(h)
	if dir == Ingress && c.preface < len(Preface) {
		c.preface = len(Preface) // the preface was in what was lost
	}
	c.lost = true
	for _, st := range c.streams {
		st.ex.Lost = true
	}
}

// Close ends the connection: every stream still in flight is returned.
func (c *Conn) Close() []*Exchange {
	for id, st := range c.streams {
		delete(c.streams, id)
		c.finish(st, EndClosed, 0)
	}
	out := c.done
	c.done = nil
	return out
}

// loseHPACK switches a direction to partial decoding with nothing known.
func (c *Conn) loseHPACK(h *half) {
	h.hp = nil
	h.partial.reset()
	if h.block != nil {
		h.block.failed = true
		c.endBlock(h, 0)
	}
}

// run consumes as many whole frames (and streamed DATA) as buffered.
func (c *Conn) run(h *half, ts uint64) {
	for {
		if h.data != nil || h.skip > 0 {
			if !c.streamPayload(h, ts) {
				return
			}
			continue
		}
		if h.hunting && !c.hunt(h) {
			return
		}
		if len(h.buf) < frameHeaderLen {
			return
		}
		fh := parseFrameHeader(h.buf)
		c.stats.Frames++
		if fh.Type == frameData {
			h.buf = h.buf[frameHeaderLen:]
			c.startData(h, fh, ts)
			continue
		}
		if int(fh.Length) > c.cfg.MaxFrameBuffer {
			// Too large to buffer: skip it, and with a header block the
			// HPACK state it changed.
			c.stats.FramesSkipped++
			h.buf = h.buf[frameHeaderLen:]
			h.skip = fh.Length
			if fh.Type == frameHeaders || fh.Type == frameContinuation || fh.Type == framePushPromise {
				c.loseHPACK(h)
			}
			continue
		}
		if len(h.buf) < frameHeaderLen+int(fh.Length) {
			return
		}
		payload := h.buf[frameHeaderLen : frameHeaderLen+int(fh.Length)]
		h.buf = h.buf[frameHeaderLen+int(fh.Length):]
		c.frame(h, fh, payload, ts)
	}
}

// streamPayload moves buffered bytes into the DATA frame or skip in
// progress; false when the buffer ran out.
func (c *Conn) streamPayload(h *half, ts uint64) bool {
	if h.skip > 0 {
		n := min(uint32(len(h.buf)), h.skip)
		h.buf, h.skip = h.buf[n:], h.skip-n
		return h.skip == 0
	}
	d := h.data
	for d.left > 0 && len(h.buf) > 0 {
		if d.padByte {
			d.padLeft = int(h.buf[0])
			d.padByte = false
			h.buf, d.left = h.buf[1:], d.left-1
			if uint32(d.padLeft) > d.left {
				c.stats.ProtocolErrors++
				h.data, h.skip = nil, d.left
				return true
			}
			continue
		}
		n := min(uint32(len(h.buf)), d.left-uint32(d.padLeft))
		if n == 0 { // only padding is left
			n = min(uint32(len(h.buf)), d.left)
			h.buf, d.left = h.buf[n:], d.left-n
			continue
		}
		c.body(h.dir, d.st, h.buf[:n])
		h.buf, d.left = h.buf[n:], d.left-n
	}
	if d.left > 0 {
		return false
	}
	h.data = nil
	if d.endStream && d.st != nil {
		c.endStream(h.dir, d.st, ts)
	}
	return true
}

func (c *Conn) startData(h *half, fh frameHeader, ts uint64) {
	if fh.StreamID == 0 {
		c.stats.ProtocolErrors++
		h.skip = fh.Length
		return
	}
	st := c.streams[fh.StreamID]
	if st == nil {
		c.stats.Orphans++
	} else {
		c.touch(h.dir, st, ts)
	}
	h.data = &dataFrame{st: st, padByte: fh.Flags&flagPadded != 0, endStream: fh.Flags&flagEndStream != 0, left: fh.Length}
	if fh.Length == 0 {
		c.streamPayload(h, ts)
	}
}

// body appends DATA bytes to the side's captured body, bounded.
func (c *Conn) body(dir Direction, st *stream, b []byte) {
	if st == nil {
		return
	}
	var body *[]byte
	var trunc *bool
	switch {
	case dir == Ingress && st.ex.Request != nil:
		body, trunc = &st.ex.Request.Body, &st.ex.Request.BodyTruncated
	case dir == Egress && st.ex.Response != nil:
		body, trunc = &st.ex.Response.Body, &st.ex.Response.BodyTruncated
	default:
		return
	}
	room := c.cfg.MaxBodyBytes - len(*body)
	if len(b) > room {
		if !*trunc {
			*trunc = true
			c.stats.TruncatedBodies++
		}
		b = b[:max(room, 0)]
	}
	*body = append(*body, b...)
}

// frame handles one whole buffered frame other than DATA.
func (c *Conn) frame(h *half, fh frameHeader, p []byte, ts uint64) {
	if h.block != nil && fh.Type != frameContinuation {
		// A header block must be continued before any other frame.
		c.stats.ProtocolErrors++
		h.block.failed = true
		c.loseHPACK(h)
	}
	switch fh.Type {
	case frameHeaders, framePushPromise:
		c.headers(h, fh, p, ts)
	case frameContinuation:
		if h.block == nil {
			if !h.hunting {
				c.stats.ProtocolErrors++
			}
			return
		}
		c.fragment(h, p)
		if fh.Flags&flagEndHeaders != 0 {
			c.endBlock(h, ts)
		}
	case frameRSTStream:
		if len(p) != 4 || fh.StreamID == 0 {
			c.stats.ProtocolErrors++
			return
		}
		if st := c.streams[fh.StreamID]; st != nil {
			delete(c.streams, fh.StreamID)
			c.touch(h.dir, st, ts)
			c.finish(st, EndReset, binary.BigEndian.Uint32(p))
		}
	case frameSettings:
		if fh.Flags&flagAck != 0 {
			return
		}
		if len(p)%6 != 0 || fh.StreamID != 0 {
			c.stats.ProtocolErrors++
			return
		}
		peer := c.other(h) // settings bound what the peer sends
		for ; len(p) >= 6; p = p[6:] {
			v := binary.BigEndian.Uint32(p[2:])
			switch binary.BigEndian.Uint16(p) {
			case settingHeaderTableSize:
				if peer.hp != nil {
					// Lenient: a passive decoder follows whatever the
					// encoder does within the largest size allowed.
					peer.hp.SetAllowedMaxDynamicTableSize(max(v, 4096))
				}
			case settingMaxFrameSize:
				if v >= defaultFrameSize && v <= maxFrameSize {
					peer.maxFrame = v
				}
			}
		}
	case frameGoAway:
		if len(p) < 8 || fh.StreamID != 0 {
			c.stats.ProtocolErrors++
			return
		}
		last := binary.BigEndian.Uint32(p) & 0x7fffffff
		code := binary.BigEndian.Uint32(p[4:])
		if h.dir != Egress {
			return // the client's GOAWAY concerns server pushes
		}
		for id, st := range c.streams {
			if id > last {
				delete(c.streams, id)
				c.finish(st, EndRefused, code)
			}
		}
	}
	// PRIORITY, PING, WINDOW_UPDATE and unknown types carry nothing an
	// exchange needs.
}

// headers starts a header block from HEADERS or PUSH_PROMISE.
func (c *Conn) headers(h *half, fh frameHeader, p []byte, ts uint64) {
	push := fh.Type == framePushPromise
	if fh.StreamID == 0 {
		c.stats.ProtocolErrors++
		c.loseHPACK(h)
		return
	}
	if fh.Flags&flagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			c.stats.ProtocolErrors++
			c.loseHPACK(h)
			return
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if push {
		if len(p) < 4 {
			c.stats.ProtocolErrors++
			c.loseHPACK(h)
			return
		}
		p = p[4:]
		c.stats.PushPromises++
	} else if fh.Flags&flagPriority != 0 {
		if len(p) < 5 {
			c.stats.ProtocolErrors++
			c.loseHPACK(h)
			return
		}
		p = p[5:]
	}
	c.stats.HeaderBlocks++
	b := &headerBlock{push: push, endStream: fh.Flags&flagEndStream != 0}
	if !push {
		b.st = c.openStream(h.dir, fh.StreamID, ts)
	}
	h.block = b
	if h.hp != nil {
		h.hp.SetEmitFunc(func(f hpack.HeaderField) { c.addField(h, HeaderField{Name: f.Name, Value: f.Value}) })
	}
	c.fragment(h, p)
	if fh.Flags&flagEndHeaders != 0 {
		c.endBlock(h, ts)
	}
}

// openStream finds or creates the stream a header block belongs to; nil
// when it is not tracked.
func (c *Conn) openStream(dir Direction, id uint32, ts uint64) *stream {
	if st := c.streams[id]; st != nil {
		c.touch(dir, st, ts)
		return st
	}
	if dir != Ingress {
		// A response to a stream never opened (joined mid-stream, or
		// dropped at MaxStreams).
		c.stats.Orphans++
		return nil
	}
	if len(c.streams) >= c.cfg.MaxStreams {
		c.stats.StreamsDropped++
		return nil
	}
	st := &stream{ex: &Exchange{StreamID: id, Lost: false}}
	c.streams[id] = st
	c.touch(dir, st, ts)
	return st
}

func (c *Conn) touch(dir Direction, st *stream, ts uint64) {
	ex := st.ex
	if dir == Ingress {
		if ex.RequestStart == 0 {
			ex.RequestStart = ts
		}
		ex.RequestEnd = ts
		return
	}
	if ex.ResponseStart == 0 {
		ex.ResponseStart = ts
	}
	ex.ResponseEnd = ts
}

// fragment passes a header block fragment to the direction's decoder.
func (c *Conn) fragment(h *half, p []byte) {
	b := h.block
	if b.failed {
		return
	}
	if h.hp != nil {
		if _, err := h.hp.Write(p); err != nil {
			c.stats.BlocksUndecodable++
			b.failed = true
			h.hp = nil
			h.partial.reset()
		}
		return
	}
	if len(b.frags)+len(p) > c.cfg.MaxFrameBuffer {
		c.stats.BlocksUndecodable++
		b.failed = true
		h.partial.reset()
		return
	}
	b.frags = append(b.frags, p...)
}

// addField keeps a decoded field within the block's header budget.
func (c *Conn) addField(h *half, f HeaderField) {
	b := h.block
	if b.st == nil {
		return
	}
	n := len(f.Name) + len(f.Value)
	if b.bytes+n > c.cfg.MaxHeaderBytes {
		c.stats.FieldsDropped++
		b.unknown++ // the stream's view is incomplete, as for undecodable
		return
	}
	b.bytes += n
	b.fields = append(b.fields, f)
}

// endBlock finishes a header block and applies it to its stream.
func (c *Conn) endBlock(h *half, ts uint64) {
	b := h.block
	defer func() { h.block = nil }()
	if !b.failed {
		if h.hp != nil {
			if err := h.hp.Close(); err != nil {
				c.stats.BlocksUndecodable++
				b.failed = true
				h.hp = nil
				h.partial.reset()
			}
		} else {
			unknown, err := h.partial.decode(b.frags, func(f HeaderField) { c.addField(h, f) })
			c.stats.FieldsUndecodable += uint64(unknown)
			b.unknown += unknown
			if err != nil {
				c.stats.BlocksUndecodable++
				b.failed = true
				h.partial.reset()
			}
		}
	}
	if b.st == nil {
		return
	}
	c.apply(h.dir, b.st, b)
	if b.endStream {
		c.endStream(h.dir, b.st, ts)
	}
}

// apply sorts a block's fields into the request or response: the first
// block is the head (1xx responses are skipped), a later one trailers.
func (c *Conn) apply(dir Direction, st *stream, b *headerBlock) {
	partial := b.failed || b.unknown > 0
	pseudo, regular := splitPseudo(b.fields)
	// A head always has pseudo-headers; an ending block without any,
	// first seen on a stream joined late, is its trailers.
	trailers := len(pseudo) == 0 && b.endStream
	if dir == Ingress {
		if !st.reqHeaders && trailers {
			st.reqHeaders = true
			st.ex.Request = &Request{ContentLength: -1, Partial: true}
		}
		if st.reqHeaders {
			st.ex.Request.Trailer = append(st.ex.Request.Trailer, regular...)
			st.ex.Request.Partial = st.ex.Request.Partial || partial
			return
		}
		st.reqHeaders = true
		r := &Request{Header: regular, ContentLength: contentLength(regular), Partial: partial}
		for _, f := range pseudo {
			switch f.Name {
			case ":method":
				r.Method = f.Value
			case ":path":
				r.Path = f.Value
			case ":authority":
				r.Authority = f.Value
			case ":scheme":
				r.Scheme = f.Value
			}
		}
		st.ex.Request = r
		c.opened = append(c.opened, st.ex)
		return
	}
	if !st.respHeaders && trailers {
		st.respHeaders = true
		st.ex.Response = &Response{ContentLength: -1, Partial: true}
	}
	if st.respHeaders {
		st.ex.Response.Trailer = append(st.ex.Response.Trailer, regular...)
		st.ex.Response.Partial = st.ex.Response.Partial || partial
		return
	}
	status := 0
	for _, f := range pseudo {
		if f.Name == ":status" {
			status, _ = strconv.Atoi(f.Value)
		}
	}
	if status >= 100 && status < 200 && !b.endStream {
		return // informational; the final response follows
	}
	st.respHeaders = true
	st.ex.Response = &Response{StatusCode: status, Header: regular, ContentLength: contentLength(regular), Partial: partial}
}

func splitPseudo(fields []HeaderField) (pseudo, regular []HeaderField) {
	for _, f := range fields {
		if len(f.Name) > 0 && f.Name[0] == ':' {
			pseudo = append(pseudo, f)
		} else {
			regular = append(regular, f)
		}
	}
	return pseudo, regular
}

func contentLength(h []HeaderField) int64 {
	for _, f := range h {
		if f.Name == "content-length" {
			if n, err := strconv.ParseInt(f.Value, 10, 64); err == nil && n >= 0 {
				return n
			}
		}
	}
	return -1
}

// endStream ends one side of a stream; the exchange is complete when the
// response has ended.
func (c *Conn) endStream(dir Direction, st *stream, ts uint64) {
	c.touch(dir, st, ts)
	if dir == Ingress {
		st.reqEnded = true
		return
	}
	st.respEnded = true
	delete(c.streams, st.ex.StreamID)
	c.finish(st, EndResponse, 0)
}

func (c *Conn) finish(st *stream, end EndReason, code uint32) {
	if end == EndClosed && c.lost {
		end = EndLost
	}
	st.ex.End, st.ex.ErrorCode = end, code
	c.stats.Exchanges++
	c.done = append(c.done, st.ex)
}

// hunt drops bytes until the buffer starts with a plausible frame header
// followed by another (or by the end of what was received); false when
// more bytes are needed to decide.
func (c *Conn) hunt(h *half) bool {
	for i := 0; i+frameHeaderLen <= len(h.buf); i++ {
		fh := parseFrameHeader(h.buf[i:])
		if !plausible(fh, h.maxFrame) {
			continue
		}
		next := i + frameHeaderLen + int(fh.Length)
		switch {
		case next == len(h.buf):
		case next+frameHeaderLen <= len(h.buf):
			if !plausible(parseFrameHeader(h.buf[next:]), h.maxFrame) {
				continue
			}
		default:
			// Cannot confirm yet: keep from here and wait, unless waiting
			// could exceed the buffer bound.
			if next+frameHeaderLen > c.cfg.MaxFrameBuffer+frameHeaderLen {
				continue
			}
			c.drop(h, i)
			return false
		}
		c.drop(h, i)
		h.hunting = false
		return true
	}
	// No candidate: keep the last bytes, which may start a header.
	if len(h.buf) >= frameHeaderLen {
		c.drop(h, len(h.buf)-frameHeaderLen+1)
	}
	return false
}

func (c *Conn) drop(h *half, n int) {
	if n <= 0 {
		return
	}
	c.stats.ResyncBytes += uint64(n)
	h.buf = h.buf[n:]
}

// plausible reports whether a frame header obeys every rule its type
// has; a continuation is never taken as a starting point (its block's
// start is gone).
func plausible(fh frameHeader, maxLen uint32) bool {
	if fh.Length > maxLen {
		return false
	}
	onStream := fh.StreamID != 0
	switch fh.Type {
	case frameData:
		return onStream && fh.Flags&^(flagEndStream|flagPadded) == 0
	case frameHeaders:
		return onStream && fh.Flags&^(flagEndStream|flagEndHeaders|flagPadded|flagPriority) == 0
	case framePriority:
		return onStream && fh.Length == 5 && fh.Flags == 0
	case frameRSTStream:
		return onStream && fh.Length == 4 && fh.Flags == 0
	case frameSettings:
		return !onStream && fh.Length%6 == 0 && fh.Flags&^flagAck == 0 && (fh.Flags == 0 || fh.Length == 0)
	case framePushPromise:
		return onStream && fh.Flags&^(flagEndHeaders|flagPadded) == 0
	case framePing:
		return !onStream && fh.Length == 8 && fh.Flags&^flagAck == 0
	case frameGoAway:
		return !onStream && fh.Length >= 8 && fh.Flags == 0
	case frameWindowUpdate:
		return fh.Length == 4 && fh.Flags == 0
	}
	return false
}
