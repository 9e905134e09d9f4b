package decoder

import (
	"encoding/binary"

	"github.com/authprobe/authprobe/decoder/exchange"
	"github.com/authprobe/authprobe/decoder/http1"
	"github.com/authprobe/authprobe/decoder/postgres"
)

// Client connections (the traced process connected them: its own calls)
// carry requests in egress and responses in ingress. Their protocol is
// told once, from the first bytes of the connection's first write, which
// the kernel always sends: an HTTP/1 request line or a PostgreSQL startup
// packet; anything else, or a connection whose first write was not seen,
// is turned off. Never per chunk: a chunk in the middle of a stream says
// nothing reliable about its protocol.

// classify picks the parser of client connection c from its first chunk.
func (d *Decoder) classify(c *conn, ch *Chunk) {
	st := &d.sink.Stats
	c.classified = true
	switch {
	case ch.Dir != Egress || ch.Offset != 0 || ch.Flags&Unreadable != 0:
	case isStartup(ch.Data):
		st.ClientPostgres++
		c.pg = newPGConn(&d.sink, &c.info, d.cfg)
		c.parser = c.pg
		return
	case isRequestLine(ch.Data):
		st.ClientHTTP++
		c.parser = &swapped{&c.h1}
		return
	}
	st.ClientUnknown++
	c.parser = offParser{}
}

// isStartup: a PostgreSQL startup packet (protocol 3), SSLRequest or
// GSSENCRequest, the only ways a PostgreSQL client begins.
func isStartup(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	n := binary.BigEndian.Uint32(b)
	code := binary.BigEndian.Uint32(b[4:])
	switch {
	case code == 80877103 || code == 80877104: // SSLRequest, GSSENCRequest
		return n == 8
	case code>>16 == 3:
		return n >= 8 && n <= 10000
	}
	return false
}

// isRequestLine: an HTTP method token (upper-case letters) and a space,
// then an origin- or absolute-form target.
func isRequestLine(b []byte) bool {
	for i := 0; i < len(b) && i <= 16; i++ {
		switch c := b[i]; {
		case c >= 'A' && c <= 'Z':
		case c == ' ' && i > 0:
			return i+1 < len(b) && (b[i+1] == '/' || b[i+1] == 'h' || b[i+1] == '*')
		default:
			return false
		}
	}
	return false
}

// swapped runs the HTTP/1 parser, which reads requests in Ingress, on a
// client connection, whose requests are its Egress.
type swapped struct{ c *http1.Conn }

func swap(dir Direction) Direction {
	if dir == Ingress {
		return Egress
	}
	return Ingress
}

func (s *swapped) Data(dir Direction, off uint64, data []byte, m exchange.Meta) uint64 {
	s.c.Data(swap(dir), off, data, m)
	return 0 // the kernel skips ingress only: a request body is egress here
}

func (s *swapped) Hole(dir Direction, n uint64, cause exchange.HoleCause, m exchange.Meta) {
	s.c.Hole(swap(dir), n, cause, m)
}

func (s *swapped) Boundary(dir Direction, m exchange.Meta) { s.c.Boundary(swap(dir), m) }
func (s *swapped) Close(m exchange.Meta)                   { s.c.Close(m) }
func (s *swapped) Evict()                                  { s.c.Evict() }
func (s *swapped) Quiescent() bool                         { return s.c.Quiescent() }
func (s *swapped) Off() bool                               { return s.c.Off() }

// offParser is a client connection of no protocol authprobe reads.
type offParser struct{}

func (offParser) Data(Direction, uint64, []byte, exchange.Meta) uint64      { return 0 }
func (offParser) Hole(Direction, uint64, exchange.HoleCause, exchange.Meta) {}
func (offParser) Boundary(Direction, exchange.Meta)                         {}
func (offParser) Close(exchange.Meta)                                       {}
func (offParser) Evict()                                                    {}
func (offParser) Quiescent() bool                                           { return false }
func (offParser) Off() bool                                                 { return true }

// pgConn follows a PostgreSQL client connection and hands each operation
// to the sink as an Exchange, with the task that wrote its request.
type pgConn struct {
	sink *exchange.Sink
	info *ConnInfo
	c    *postgres.Conn
	// writes remembers who wrote the last frontend chunks, to tell which
	// task asked for an operation (its Request.Start).
	writes [pgWrites]pgWrite
	next   int
	// seen: the stream ends, per side, of the bytes fed so far.
	seen [2]uint64
}

// pgWrites bounds the frontend chunks remembered: an operation's request
// starts at most a few writes before it completes.
const pgWrites = 32

type pgWrite struct {
	start, end uint64
	m          exchange.Meta
}

func newPGConn(s *exchange.Sink, info *ConnInfo, cfg Config) *pgConn {
	return &pgConn{sink: s, info: info, c: postgres.NewConn(postgres.Config{})}
}

func side(dir Direction) postgres.Side {
	if dir == Egress {
		return postgres.Frontend
	}
	return postgres.Backend
}

func (p *pgConn) Data(dir Direction, off uint64, data []byte, m exchange.Meta) uint64 {
	if dir == Egress {
		p.writes[p.next%pgWrites] = pgWrite{start: off, end: off + uint64(len(data)), m: m}
		p.next++
	}
	// The other side's bytes before m.Other moved before this I/O: what
	// of them was not seen held no answer to (or request for) anything
	// pending when nothing is.
	o := swap(dir)
	if m.Other > p.seen[o-1] && p.c.Pending() == 0 {
		p.c.Skip(side(o), m.Other)
		p.seen[o-1] = m.Other
	}
	p.seen[dir-1] = off + uint64(len(data))
	p.emit(p.c.Feed(side(dir), off, m.T, data))
	return 0
}

// Hole: the next Data's offset tells the parser of the gap.
func (p *pgConn) Hole(Direction, uint64, exchange.HoleCause, exchange.Meta) {}
func (p *pgConn) Boundary(Direction, exchange.Meta)                         {}
func (p *pgConn) Close(exchange.Meta)                                       { p.emit(p.c.Close()) }
func (p *pgConn) Evict()                                                    { p.c.Close() }
func (p *pgConn) Quiescent() bool                                           { return p.c.Pending() == 0 }

// Off once the session is encrypted: the rest is ciphertext.
func (p *pgConn) Off() bool { return p.c.Encrypted() }

// Stats are the PostgreSQL parser's counters of this connection.
func (p *pgConn) Stats() postgres.Stats { return p.c.Stats() }

func (p *pgConn) emit(ops []postgres.Operation) {
	st := &p.sink.Stats
	for i := range ops {
		op := ops[i]
		ex := Exchange{
			Conn:          *p.info,
			Database:      &op,
			RequestStart:  op.Request.StartTime,
			RequestEnd:    op.Request.EndTime,
			ResponseStart: op.Response.StartTime,
			ResponseEnd:   op.Response.EndTime,
			End:           EndResponse,
		}
		switch op.Status {
		case postgres.StatusLost:
			ex.End, ex.Lost = EndLost, true
		case postgres.StatusClosed:
			ex.End = EndClosed
		}
		if w, ok := p.writer(op.Request.Start); ok {
			ex.PID, ex.TID, ex.Task, ex.Busy = w.PID, w.TID, w.Task, w.Busy
		} else {
			st.DatabaseUnplaced++
		}
		st.DatabaseOps++
		p.sink.Out = append(p.sink.Out, ex)
	}
}

// writer is who wrote the frontend byte at off, if still remembered.
func (p *pgConn) writer(off uint64) (exchange.Meta, bool) {
	for i := 1; i <= min(p.next, pgWrites); i++ {
		w := &p.writes[(p.next-i)%pgWrites]
		if off >= w.start && off < w.end {
			return w.m, true
		}
	}
	return exchange.Meta{}, false
}
