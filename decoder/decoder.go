package decoder

import (
	"github.com/authprobe/authprobe/decoder/exchange"
	"github.com/authprobe/authprobe/decoder/http1"
	"github.com/authprobe/authprobe/decoder/http2"
)

// streamParser is what a protocol's parser does for the connection layer:
// it gets each direction's bytes in stream order, and is told where bytes
// are missing and why. http1.Conn is the one implementation today; an
// HTTP/2 parser is the second.
type streamParser interface {
	// Data parses captured bytes at stream offset off; it may return an
	// ingress offset up to which the kernel need not copy (0: none).
	Data(dir Direction, off uint64, data []byte, m exchange.Meta) (skipTo uint64)
	// Hole accounts for n stream bytes that arrived without data.
	Hole(dir Direction, n uint64, cause exchange.HoleCause, m exchange.Meta)
	// Boundary: the kernel knows the next byte starts a message.
	Boundary(dir Direction, m exchange.Meta)
	// Close ends the connection; Evict drops it without a close.
	Close(m exchange.Meta)
	Evict()
	// Quiescent: both directions between messages, nothing waiting.
	Quiescent() bool
	// Off: not this protocol (or it left it); nothing more to parse.
	Off() bool
}

var _ streamParser = (*http1.Conn)(nil)

// Decoder reassembles chunks into exchanges. It is not safe for concurrent
// use: one goroutine reads the ring buffer and feeds it.
type Decoder struct {
	cfg     Config
	conns   map[uint64]*conn // by socket; the generation is checked
	lru     conn             // sentinel of the recency list; lru.next is the newest
	sink    exchange.Sink
	scratch http1.Scratch
	spare   []Exchange // the slice returned last time, reused next time
	// lent are the Pendings of the exchanges returned last time that
	// Release may recycle.
	lent []*exchange.Pending
	// verdicts for the kernel, drained by Verdicts.
	verdicts, spareVerdicts []Verdict
	spareOpened             []Opened
	spareClosed             []Closed
	// now: the latest time the decoder was told of (chunks, Expire).
	now uint64
}

// conn is the state of one connection.
type conn struct {
	info ConnInfo
	last uint64 // time of the last chunk
	dirs [2]order
	// inFromStart: ingress was seen from the connection's first byte, so
	// egress is at 0 until a chunk says otherwise.
	inFromStart bool
	queue       exchange.Queue
	h1          http1.Conn
	parser      streamParser
	// client connections: classified once their first chunk arrived; pg
	// is the PostgreSQL parser when that is what they speak.
	classified bool
	pg         *pgConn
	off        bool // turned off: chunks are dropped until the kernel stops
	// resumed: a VerdictResume was sent for these offsets.
	resumed               bool
	resumedIn, resumedOut uint64
	// episodeIn: the ingress offset the current capture episode began
	// at; episodeSkipped: the requests the kernel skipped right before it.
	episodeIn      uint64
	episodeSkipped uint32
	prev, next     *conn
}

// New returns a Decoder; zero Config fields take the Default values.
func New(cfg Config) *Decoder {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxRequestBody, DefaultMaxRequestBody)
	def(&cfg.MaxResponseBody, DefaultMaxResponseBody)
	cfg.MaxRequestBody = max(cfg.MaxRequestBody, 0)
	cfg.MaxResponseBody = max(cfg.MaxResponseBody, 0)
	for _, f := range []struct {
		v *int
		d int
	}{
		{&cfg.MaxConnections, DefaultMaxConnections},
		{&cfg.MaxHeadBytes, DefaultMaxHeadBytes},
		{&cfg.MaxPending, DefaultMaxPending},
		{&cfg.MaxPendingBytes, DefaultMaxPendingBytes},
		{&cfg.MaxTotalPendingBytes, DefaultMaxTotalPendingBytes},
		{&cfg.ReorderWindow, DefaultReorderWindow},
		{&cfg.ReorderBytes, DefaultReorderBytes},
	} {
		if *f.v <= 0 {
			*f.v = f.d
		}
	}
	if cfg.ResponseTimeout == 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.HoldIdle == 0 {
		cfg.HoldIdle = DefaultHoldIdle
	}
	if cfg.HoldSkipped == 0 {
		cfg.HoldSkipped = DefaultHoldSkipped
	}
	d := &Decoder{cfg: cfg, conns: make(map[uint64]*conn)}
	d.sink.Limits = exchange.Limits{
		MaxRequestBody:       cfg.MaxRequestBody,
		MaxResponseBody:      cfg.MaxResponseBody,
		MaxPending:           cfg.MaxPending,
		MaxPendingBytes:      cfg.MaxPendingBytes,
		MaxTotalPendingBytes: cfg.MaxTotalPendingBytes,
		Interesting:          cfg.Interesting,
	}
	d.lru.next, d.lru.prev = &d.lru, &d.lru
	return d
}

// Config returns the configuration in effect, defaults applied.
func (d *Decoder) Config() Config { return d.cfg }

// Stats returns the counters so far.
func (d *Decoder) Stats() Stats { return d.sink.Stats }

// Feed takes the next chunk of a connection and returns the exchanges it
// completed, oldest first. Data is not kept after Feed returns; the
// returned slice is valid until the next call of Feed, Close or Expire. A
// chunk of a new connection may evict the least recently used one when
// MaxConnections are tracked: its waiting requests end with EndLost.
func (d *Decoder) Feed(ch Chunk) []Exchange {
	st := &d.sink.Stats
	st.Chunks++
	if ch.Dir != Ingress && ch.Dir != Egress {
		st.LateChunks++ // not a direction: nothing can place it
		return d.take()
	}
	c := d.lookup(ch.Conn)
	if c == nil {
		st.LateChunks++ // a chunk of a connection already replaced on its socket
		return d.take()
	}
	c.last = max(c.last, ch.Time)
	d.now = max(d.now, ch.Time)
	if c.off {
		st.OffChunks++
		return d.take()
	}
	if int(ch.Len) < len(ch.Data) {
		ch.Data = ch.Data[:ch.Len]
	}
	// The client's first bytes decide the protocol once: the HTTP/2
	// connection preface, or HTTP/1.
	if ch.Dir == Ingress && ch.Offset == 0 && !c.dirs[0].started && c.parser == streamParser(&c.h1) &&
		c.info.Role != RoleClient && http2.Detect(ch.Data) == http2.IsHTTP2 {
		c.parser = newH2Parser(&d.sink, &c.info, d.cfg)
	}
	if ch.Dir == Ingress && ch.Flags&Episode != 0 {
		c.episodeIn, c.episodeSkipped = ch.Offset, ch.Skipped
	}
	d.sequence(c, &c.dirs[ch.Dir-1], &ch)
	d.decide(c)
	return d.take()
}

// Close ends the connection key at time t: a response delimited by the
// close is complete, requests still waiting end with EndClosed (or
// EndResponse when their response head was seen). Chunks still held for
// reordering are taken with their gaps counted as lost.
func (d *Decoder) Close(key ConnKey, t uint64) []Exchange {
	c := d.conns[key.Sock]
	if c == nil || c.info.Key.Gen > key.Gen {
		return d.take()
	}
	d.endConn(c, func() {
		for i := range c.dirs {
			d.flush(c, &c.dirs[i])
		}
		c.parser.Close(exchange.Meta{T: t})
	})
	return d.take()
}

// Expire ends the requests that have waited longer than ResponseTimeout
// for a response (EndTimeout) and responses whose body stalled as long
// (EndResponse), gives up on missing chunks that were already missing at
// the previous Expire, and drops connections idle for more than twice
// ResponseTimeout. now is on the chunks' clock.
func (d *Decoder) Expire(now uint64) []Exchange {
	timeout := d.cfg.ResponseTimeout
	d.now = max(d.now, now)
	for c := d.lru.prev; c != &d.lru; {
		prev := c.prev
		if now > c.last && now-c.last > 2*timeout {
			d.endConn(c, func() { c.queue.End(EndTimeout, now); c.parser.Evict() })
			c = prev
			continue
		}
		if !c.off {
			for i := range c.dirs {
				o := &c.dirs[i]
				if len(o.held) > 0 && o.stale {
					d.flush(c, o)
				}
				o.stale = len(o.held) > 0
			}
			c.queue.Expire(now, timeout)
			d.decide(c)
		}
		c = prev
	}
	return d.take()
}

// Opened returns the request heads queued since the last call (tracked
// ones and placeholders, server and client connections), oldest first;
// Closed the ends of the placeholders among them (a tracked request ends
// as an Exchange). Both slices are valid until the next call.
func (d *Decoder) Opened() []Opened {
	out := d.sink.Opened
	d.sink.Opened, d.spareOpened = d.spareOpened[:0], out
	return out
}

func (d *Decoder) Closed() []Closed {
	out := d.sink.Closed
	d.sink.Closed, d.spareClosed = d.spareClosed[:0], out
	return out
}

// Verdicts returns the verdicts for the kernel found since the last call,
// oldest first; the slice is valid until the next call.
func (d *Decoder) Verdicts() []Verdict {
	out := d.verdicts
	d.verdicts, d.spareVerdicts = d.spareVerdicts[:0], out
	return out
}

func (d *Decoder) take() []Exchange {
	out := d.sink.Out
	d.sink.Out, d.spare = d.spare[:0], out
	// Exchanges of the call before that were not released stay the
	// caller's, for the collector to take when it lets go of them.
	clear(d.lent)
	d.lent = d.sink.TakeDone(d.lent)
	return out
}

// Release says the caller is done with the exchanges the last call of
// Feed, Close or Expire returned, and with the Opened taken since: their
// requests and responses, headers, bodies and every string cut from them
// (an exported span's attributes among them) must not be read after it.
// The decoder then wipes their memory and reuses it for the requests to
// come. A caller that never calls Release keeps what it was given for as
// long as it likes.
func (d *Decoder) Release() {
	// An Opened not taken yet may point into one of them: keep them all.
	if len(d.sink.Opened) == 0 {
		d.sink.Recycle(d.lent)
	}
	clear(d.lent)
	d.lent = d.lent[:0]
}

// lookup returns the connection a chunk belongs to: a chunk of a newer
// generation on the same socket ends the previous connection (the socket
// was freed and reused), one of an older generation belongs to nothing
// (nil). A new connection may evict the least recently used one.
func (d *Decoder) lookup(info ConnInfo) *conn {
	if c := d.conns[info.Key.Sock]; c != nil {
		switch {
		case c.info.Key.Gen == info.Key.Gen:
			d.touch(c)
			return c
		case c.info.Key.Gen > info.Key.Gen:
			return nil
		}
		d.endConn(c, func() { c.parser.Close(exchange.Meta{T: c.last}) })
	}
	if len(d.conns) >= d.cfg.MaxConnections {
		if old := d.lru.prev; old != &d.lru {
			d.sink.Stats.Evicted++
			d.endConn(old, func() { old.parser.Evict(); old.queue.End(EndLost, old.last) })
		}
	}
	c := &conn{info: info}
	c.queue = exchange.NewQueue(&d.sink, &c.info)
	c.h1 = http1.New(http1.Config{MaxHeadBytes: d.cfg.MaxHeadBytes}, &c.queue, &d.sink.Stats, &d.scratch)
	c.parser = &c.h1
	d.conns[info.Key.Sock] = c
	c.prev, c.next = &d.lru, d.lru.next
	c.next.prev, d.lru.next = c, c
	return c
}

func (d *Decoder) touch(c *conn) {
	if d.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = &d.lru, d.lru.next
	c.next.prev, d.lru.next = c, c
}

// endConn runs end (which emits what the connection still holds), wipes
// what it held and forgets it.
func (d *Decoder) endConn(c *conn, end func()) {
	end()
	for i := range c.dirs {
		c.dirs[i].release()
	}
	delete(d.conns, c.info.Key.Sock)
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}

// decide queues the verdicts a connection's state calls for: VerdictOff
// once it is not HTTP, VerdictResume once per pair of offsets at which it
// is quiescent (both directions at a boundary, nothing waiting, nothing
// held back).
func (d *Decoder) decide(c *conn) {
	st := &d.sink.Stats
	if c.off {
		return
	}
	if c.parser.Off() && c.parser == streamParser(&c.h1) && c.h1.Switched() && c.info.Role != RoleClient {
		// After a 101 the client may speak HTTP/2 (h2c upgrade): its
		// preface decides; anything else (WebSocket) turns the HTTP/2
		// parser off in turn, and the connection with it.
		c.parser = newH2Parser(&d.sink, &c.info, d.cfg)
		return
	}
	if c.parser.Off() {
		c.off = true
		st.VerdictsOff++
		d.verdicts = append(d.verdicts, Verdict{Key: c.info.Key, Kind: VerdictOff})
		c.queue.End(EndClosed, c.last)
		c.parser.Evict()
		for i := range c.dirs {
			c.dirs[i].release()
		}
		return
	}
	if c.info.Role == RoleClient {
		return // the kernel never filters a client connection: no resume
	}
	in, out := &c.dirs[0], &c.dirs[1]
	if !in.started || len(in.held) > 0 || len(out.held) > 0 || !c.parser.Quiescent() {
		return
	}
	outOff := out.off
	if !out.started && !c.inFromStart {
		return // where egress stands is unknown
	}
	if c.resumed && c.resumedIn == in.off && c.resumedOut == outOff {
		return
	}
	// Held from the episode's start, or from the last resume sent in it:
	// a stale resume renews the kernel's budget for the episode, so a
	// held connection sends one every HoldBytes, not at every request.
	held := c.episodeIn
	if c.resumed && c.resumedIn > held {
		held = c.resumedIn
	}
	if c.parser == streamParser(&c.h1) && !c.queue.LastUninteresting() &&
		c.episodeSkipped <= d.cfg.HoldSkipped && in.off >= held && in.off-held < d.cfg.HoldBytes &&
		(d.now < c.last || d.now-c.last < d.cfg.HoldIdle) {
		st.ResumesHeld++
		return // held: more auth requests are likely to follow
	}
	c.resumed, c.resumedIn, c.resumedOut = true, in.off, outOff
	st.VerdictsResume++
	d.verdicts = append(d.verdicts, Verdict{Key: c.info.Key, Kind: VerdictResume, InOff: in.off, OutOff: outOff})
}
