package decoder

// Defaults applied by New for zero Config fields.
const (
	DefaultMaxRequestBody  = 4096
	DefaultMaxResponseBody = 1024
	DefaultMaxConnections  = 65536
	DefaultMaxHeadBytes    = 16384
	DefaultResponseTimeout = 30_000_000_000 // 30 s in ns
)

// maxPending bounds the requests a connection may have waiting for their
// responses (pipelining depth), so that per-connection memory stays within
// maxPending times (MaxHeadBytes + MaxRequestBody + MaxResponseBody).
const maxPending = 16

// Decoder reassembles chunks into exchanges. It is not safe for concurrent
// use: one goroutine reads the ring buffer and feeds it.
type Decoder struct {
	cfg   Config
	conns map[connID]*conn
	lru   conn           // sentinel of the recency list; lru.next is the newest
	pids  map[uint32]int // connections per process, for ForgetPID
	stats Stats
	out   []Exchange // exchanges finished by the current call
}

type connID struct {
	pid uint32
	fd  int32
}

// conn is the state of one connection.
type conn struct {
	info       ConnInfo
	seen       bool // a chunk was accepted, lastSeq is valid
	lastSeq    uint32
	lastTime   uint64
	epoch      uint32 // sequence gaps seen so far
	upgraded   bool   // 101 or CONNECT: the rest is not HTTP
	in, out    stream
	queue      []*pending // requests waiting for their responses, oldest first
	prev, next *conn
}

// pending is an exchange under construction. Request and Response live in
// it so that an exchange costs one allocation.
type pending struct {
	ex       Exchange
	req      Request
	resp     Response
	epoch    uint32 // conn.epoch when the request head arrived
	lost     bool
	respHead bool // the final response head was parsed
	// phantom holds the place of a request already emitted (timed out or
	// dropped) so that its late response is not paired with the next one.
	phantom bool
}

// New returns a Decoder; zero Config fields take the Default values. A
// negative body limit keeps no body bytes.
func New(cfg Config) *Decoder {
	if cfg.MaxRequestBody == 0 {
		cfg.MaxRequestBody = DefaultMaxRequestBody
	}
	if cfg.MaxResponseBody == 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	cfg.MaxRequestBody = max(cfg.MaxRequestBody, 0)
	cfg.MaxResponseBody = max(cfg.MaxResponseBody, 0)
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxHeadBytes <= 0 {
		cfg.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if cfg.ResponseTimeout == 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	d := &Decoder{
		cfg:   cfg,
		conns: make(map[connID]*conn),
		pids:  make(map[uint32]int),
	}
	d.lru.next, d.lru.prev = &d.lru, &d.lru
	return d
}

// Config returns the configuration in effect, defaults applied.
func (d *Decoder) Config() Config { return d.cfg }

// Stats returns the counters so far.
func (d *Decoder) Stats() Stats { return d.stats }

// Feed takes the next chunk of a connection and returns the exchanges it
// completed, oldest first. Data is not retained after Feed returns. A
// chunk of a new connection may evict the least recently used one when
// MaxConnections are tracked: its waiting requests end with EndLost.
func (d *Decoder) Feed(ch Chunk) []Exchange {
	d.stats.Chunks++
	if ch.Dir != Ingress && ch.Dir != Egress {
		d.stats.ParseErrors++
		return nil
	}
	c := d.lookup(ch.Conn)
	if c.seen {
		// Serial arithmetic copes with Seq wrapping around.
		switch diff := ch.Seq - c.lastSeq; {
		case diff == 0 || diff > 1<<31:
			return d.take() // duplicate or out of order: already accounted for
		case diff > 1:
			d.gap(c, diff-1)
		}
	}
	c.seen, c.lastSeq = true, ch.Seq
	c.lastTime = max(c.lastTime, ch.Time)
	if c.upgraded {
		return d.take()
	}
	s, req := &c.in, true
	if ch.Dir == Egress {
		s, req = &c.out, false
	}
	d.feedStream(c, s, req, ch.Data, ch.Time)
	if int64(ch.Len) > int64(len(ch.Data)) && !c.upgraded {
		d.skipStream(c, s, req, int64(ch.Len)-int64(len(ch.Data)), ch.Time)
	}
	return d.take()
}

// Close finishes the connection key at time t: requests still waiting end
// with EndClosed, or EndResponse when their response head was seen
// (a close-delimited response ends here). A close of another generation
// of the same fd finishes the connection held for it too, as a chunk of
// another generation would: the fd has moved on. t is the close time; the
// exchanges keep the timestamps of their chunks.
func (d *Decoder) Close(key ConnKey, t uint64) []Exchange {
	c := d.conns[connID{key.PID, key.FD}]
	if c == nil {
		return nil
	}
	d.finish(c, EndClosed)
	return d.take()
}

// ForgetPID finishes every connection of an exited process.
func (d *Decoder) ForgetPID(pid uint32) []Exchange {
	if d.pids[pid] == 0 {
		return nil
	}
	for id, c := range d.conns {
		if id.pid == pid {
			d.finish(c, EndClosed)
		}
	}
	return d.take()
}

// Expire returns the requests that have waited longer than
// ResponseTimeout for a response (EndTimeout), and responses whose body
// stalled as long (EndResponse), and finishes connections idle for more
// than twice ResponseTimeout. now is on the chunks' clock.
func (d *Decoder) Expire(now uint64) []Exchange {
	timeout := d.cfg.ResponseTimeout
	for c := d.lru.prev; c != &d.lru; {
		prev := c.prev
		if olderThan(now, c.lastTime, 2*timeout) {
			d.finish(c, EndTimeout)
			c = prev
			continue
		}
		for i := 0; i < len(c.queue); {
			p := c.queue[i]
			switch {
			case p.phantom:
				i++
			case p.respHead:
				if olderThan(now, p.ex.ResponseEnd, timeout) {
					d.emit(c, p, EndResponse) // removes it from the queue
				} else {
					i++
				}
			case olderThan(now, p.ex.RequestEnd, timeout):
				c.queue[i] = &pending{phantom: true, epoch: p.epoch}
				d.emit(c, p, EndTimeout)
				i++
			default:
				i++
			}
		}
		c = prev
	}
	return d.take()
}

func olderThan(now, t, age uint64) bool { return now > t && now-t > age }

func (d *Decoder) take() []Exchange {
	out := d.out
	d.out = nil
	return out
}

// lookup returns the connection a chunk belongs to, finishing the previous
// connection on the same fd when the generation changed and evicting the
// least recently used connection when the table is full.
func (d *Decoder) lookup(info ConnInfo) *conn {
	id := connID{info.Key.PID, info.Key.FD}
	if c := d.conns[id]; c != nil {
		if c.info.Key.Gen == info.Key.Gen {
			d.touchLRU(c)
			return c
		}
		d.finish(c, EndClosed) // the fd was reused: the old connection closed
	}
	if len(d.conns) >= d.cfg.MaxConnections {
		if old := d.lru.prev; old != &d.lru {
			d.stats.Evicted++
			d.finish(old, EndLost)
		}
	}
	c := &conn{info: info}
	d.conns[id] = c
	d.pids[id.pid]++
	c.prev, c.next = &d.lru, d.lru.next
	c.next.prev, d.lru.next = c, c
	return c
}

func (d *Decoder) touchLRU(c *conn) {
	if d.lru.next == c {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = &d.lru, d.lru.next
	c.next.prev, d.lru.next = c, c
}

// finish emits what a connection still holds and forgets it. Requests
// without a response end with reason, except that a response head already
// seen makes EndResponse and a sequence gap makes EndLost.
func (d *Decoder) finish(c *conn, reason EndReason) {
	if s := &c.out; s.state == stBody && s.body.mode == bodyClose && reason == EndClosed {
		d.endMessage(c, s, false, false) // the close is this response's end
	}
	for len(c.queue) > 0 {
		p := c.queue[0]
		if p.phantom {
			c.queue = c.queue[1:]
			continue
		}
		end := reason
		if p.lost && reason == EndClosed {
			end = EndLost
		}
		d.emit(c, p, end)
	}
	c.in.releaseHead()
	c.out.releaseHead()
	c.in, c.out, c.queue = stream{}, stream{}, nil
	id := connID{c.info.Key.PID, c.info.Key.FD}
	delete(d.conns, id)
	if d.pids[id.pid]--; d.pids[id.pid] <= 0 {
		delete(d.pids, id.pid)
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}

// gap handles lost chunks: both directions resynchronise on the next
// message start, and every exchange in flight is marked Lost.
func (d *Decoder) gap(c *conn, lost uint32) {
	d.stats.SeqGaps += uint64(lost)
	c.epoch++
	for _, p := range c.queue {
		p.lost = true
	}
	for _, sd := range [2]struct {
		s   *stream
		req bool
	}{{&c.in, true}, {&c.out, false}} {
		s := sd.s
		if s.state == stBody {
			d.endMessage(c, s, sd.req, true)
		}
		s.releaseHead()
		s.state = stResync
	}
}

// enqueue adds a parsed request to the connection's queue, dropping the
// oldest entry when the pipeline is deeper than maxPending.
func (d *Decoder) enqueue(c *conn, p *pending) {
	if len(c.queue) >= maxPending {
		old := c.queue[0]
		if old.phantom {
			c.queue = c.queue[1:]
		} else {
			old.lost = true
			d.emit(c, old, EndLost)
		}
	}
	c.queue = append(c.queue, p)
}

// responseTarget returns the request a new final response answers, or nil
// when it answers none we hold (an orphan, or an already emitted request).
func (d *Decoder) responseTarget(c *conn) *pending {
	if len(c.queue) == 0 {
		d.stats.Orphans++
		return nil
	}
	if c.queue[0].epoch != c.epoch {
		// The oldest request predates the last gap. If a request arrived
		// after the gap, clients that wait for each response before the
		// next request (nearly all) lost the older responses in the gap.
		for i := 1; i < len(c.queue); i++ {
			if c.queue[i].epoch != c.epoch {
				continue
			}
			for _, p := range append([]*pending(nil), c.queue[:i]...) {
				if p.phantom {
					d.removeQueued(c, p)
					continue
				}
				p.lost = true
				d.emit(c, p, EndLost)
			}
			c.queue[0].lost = true
			break
		}
	}
	p := c.queue[0]
	if p.phantom {
		d.removeQueued(c, p)
		return nil
	}
	return p
}

func (d *Decoder) removeQueued(c *conn, p *pending) {
	for i, q := range c.queue {
		if q == p {
			copy(c.queue[i:], c.queue[i+1:])
			c.queue[len(c.queue)-1] = nil
			c.queue = c.queue[:len(c.queue)-1]
			return
		}
	}
}

// emit hands an exchange to the caller and drops every reference the
// decoder held to it.
func (d *Decoder) emit(c *conn, p *pending, end EndReason) {
	d.removeQueued(c, p)
	if c.in.cur == p {
		// The response came before the end of the request body.
		p.req.BodyTruncated = true
		c.in.cur = nil
	}
	if c.out.cur == p {
		p.resp.BodyTruncated = true
		c.out.cur = nil
	}
	if p.respHead {
		end = EndResponse // a parsed response head counts as the response
	}
	p.ex.End, p.ex.Lost = end, p.lost
	d.stats.Exchanges++
	if p.req.BodyTruncated {
		d.stats.TruncatedBodies++
	}
	if p.ex.Response != nil && p.resp.BodyTruncated {
		d.stats.TruncatedBodies++
	}
	d.out = append(d.out, p.ex)
}
