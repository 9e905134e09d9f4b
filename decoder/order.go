package decoder

import (
	"slices"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// order puts the chunks of one direction of a connection back in the
// kernel's sequence and finds what is missing between them.
type order struct {
	known   bool   // a chunk arrived: next is valid
	started bool   // a chunk was taken: off is valid
	next    uint32 // Seq expected next
	off     uint64 // stream offset expected next: the end of the last chunk
	// held are chunks that arrived ahead of a missing one, with copies of
	// their data, in Seq order.
	held      []Chunk
	heldBytes int
	// stale: the chunks held were already waiting at the last Expire.
	stale bool
	// lost events were given up on just before the next chunk to take.
	lost uint32
}

// sequence takes a chunk of direction o in Seq order: the expected one
// now (with any held chunks it unblocks), a later one held back, an
// earlier one (already given up, or a repeat) dropped.
func (d *Decoder) sequence(c *conn, o *order, ch *Chunk) {
	if !o.known {
		// The kernel numbers a connection's events from 0: a first chunk
		// a little beyond that probably overtook the first ones. Further
		// beyond, the connection was seen before (evicted) or lost its
		// first events: start there.
		o.known, o.next = true, ch.Seq
		if ch.Seq < uint32(d.cfg.ReorderWindow) {
			o.next = 0
		}
	}
	switch diff := ch.Seq - o.next; {
	case diff == 0:
		d.take1(c, o, ch)
		d.drain(c, o)
	case diff < 1<<31: // serial arithmetic copes with Seq wrapping around
		d.hold(c, o, ch)
	default:
		d.sink.Stats.LateChunks++
	}
}

// hold keeps a copy of a chunk that arrived ahead of its turn. When the
// window is full the earliest missing chunks are given up as lost.
func (d *Decoder) hold(c *conn, o *order, ch *Chunk) {
	i, found := slices.BinarySearchFunc(o.held, ch.Seq, func(h Chunk, seq uint32) int {
		return int(int32(h.Seq - seq))
	})
	if found {
		d.sink.Stats.LateChunks++ // a repeat
		return
	}
	h := *ch
	h.Data = append([]byte(nil), ch.Data...)
	o.held = slices.Insert(o.held, i, h)
	o.heldBytes += len(h.Data)
	d.sink.Stats.Reordered++
	for len(o.held) > d.cfg.ReorderWindow || o.heldBytes > d.cfg.ReorderBytes {
		d.giveUp(c, o)
	}
}

// giveUp counts the chunks missing before the first held one as lost and
// takes the held chunks that follow in sequence.
func (d *Decoder) giveUp(c *conn, o *order) {
	n := o.held[0].Seq - o.next
	d.sink.Stats.SeqGaps += uint64(n)
	o.lost += n
	o.next = o.held[0].Seq
	d.drain(c, o)
}

// flush gives up on every chunk still missing and takes all held ones.
func (d *Decoder) flush(c *conn, o *order) {
	for len(o.held) > 0 {
		d.giveUp(c, o)
	}
}

// drain takes the held chunks that are now next in sequence.
func (d *Decoder) drain(c *conn, o *order) {
	for len(o.held) > 0 && o.held[0].Seq == o.next {
		h := o.held[0]
		o.held = slices.Delete(o.held, 0, 1)
		o.heldBytes -= len(h.Data)
		d.take1(c, o, &h)
		clear(h.Data)
	}
	if len(o.held) == 0 {
		o.stale = false
	}
}

// release wipes the held copies: they may hold credentials.
func (o *order) release() {
	for i := range o.held {
		clear(o.held[i].Data)
	}
	o.held, o.heldBytes = nil, 0
}

func meta(ch *Chunk) exchange.Meta {
	return exchange.Meta{T: ch.Time, PID: ch.PID, TID: ch.TID, Task: ch.Task, Busy: ch.Busy, Other: ch.Other}
}

// take1 hands the next chunk in sequence to the parser: first the stream
// bytes between the last chunk and this one (lost with the missing
// events, or skipped on purpose by the kernel), then the chunk's flags,
// its data and the uncaptured rest of its range.
func (d *Decoder) take1(c *conn, o *order, ch *Chunk) {
	st := &d.sink.Stats
	o.next = ch.Seq + 1
	lost := o.lost
	o.lost = 0
	if c.off {
		st.OffChunks++
		return
	}
	m := meta(ch)
	if c.info.Role == RoleClient && !c.classified {
		d.classify(c, ch)
		if c.parser.Off() {
			d.decide(c)
			return
		}
	}
	dir, p := ch.Dir, c.parser
	data, n := ch.Data, uint64(ch.Len)
	off := ch.Offset
	if !o.started {
		o.started, o.off = true, off
		switch {
		case off == 0:
			if dir == Ingress {
				c.inFromStart = true
			}
			p.Boundary(dir, m)
		case lost > 0:
			o.off = 0 // the lost first events: from where a fresh connection starts
		}
	}
	if off < o.off {
		// Bytes already seen: the kernel never sends them twice, but the
		// decoder must not parse them twice either.
		over := o.off - off
		if over >= n {
			st.LateChunks++
			return
		}
		data = data[min(over, uint64(len(data))):]
		n -= over
		off = o.off
	}
	if dir == Ingress {
		st.KernelSkipped += uint64(ch.Skipped)
	}
	if hole := off - o.off; hole > 0 {
		switch {
		case lost > 0:
			p.Hole(dir, hole, exchange.HoleLost, m)
		case dir == Ingress && ch.Skipped > 0:
			p.Hole(dir, hole, exchange.HoleSkipped, m)
		case c.info.Role == RoleClient:
			p.Hole(dir, hole, exchange.HoleOutside, m)
		default:
			p.Hole(dir, hole, exchange.HoleFiltered, m)
		}
	}
	if dir == Ingress && ch.Flags&Boundary != 0 {
		p.Boundary(dir, m)
	}
	o.off = off + n
	client := c.info.Role == RoleClient
	switch {
	case ch.Flags&Budget != 0 && !(client && len(data) > 0):
		// (A client connection's first write, sent outside a served
		// request, keeps its first bytes.)
		p.Hole(dir, n, exchange.HoleBudget, m)
	case ch.Flags&Unreadable != 0:
		p.Hole(dir, n, exchange.HoleUnreadable, m)
	default:
		if skipTo := p.Data(dir, off, data, m); skipTo > 0 {
			st.VerdictsSkip++
			d.verdicts = append(d.verdicts, Verdict{Key: c.info.Key, Kind: VerdictSkip, SkipTo: skipTo})
		}
		if rest := n - uint64(len(data)); rest > 0 {
			cause := exchange.HoleTruncated
			switch {
			case client:
				cause = exchange.HoleOutside
			case dir == Egress:
				cause = exchange.HoleFiltered // beyond the response's capture bound
			}
			p.Hole(dir, rest, cause, m)
		}
	}
	if p.Off() {
		d.decide(c)
	}
}
