package exchange

import "unsafe"

// Limits bound what the queues of one decoder hold and decide which
// requests are worth holding at all.
type Limits struct {
	// MaxRequestBody and MaxResponseBody bytes are kept per body.
	MaxRequestBody  int
	MaxResponseBody int
	// MaxPending requests may wait for their responses on one connection,
	// holding at most MaxPendingBytes; MaxTotalPendingBytes bounds the
	// sum over all connections. A request beyond a bound is counted lost
	// (LossQueueFull) and held as a placeholder so that pairing stays in
	// step.
	MaxPending           int
	MaxPendingBytes      int
	MaxTotalPendingBytes int
	// Interesting says whether a request is worth an exchange; nil means
	// every request is. It must not keep method or target: they are only
	// valid during the call.
	Interesting func(method, target string) bool
}

// Sink is what the queues of one decoder share: the limits, the counters
// and the exchanges finished for the caller.
type Sink struct {
	Limits Limits
	Stats  Stats
	// Out collects finished exchanges, oldest first; the decoder hands it
	// to its caller and resets it.
	Out []Exchange
	// Opened collects every request head queued, tracked or not, and
	// Closed the ends of the untracked ones (a tracked one ends in Out):
	// who has which requests in flight, for telling which request a
	// process's own calls belong to.
	Opened []Opened
	Closed []Closed
	bytes  int // held by every pending request of every queue
	lastID uint64
	// done are the Pendings of the exchanges in Out that no parser holds
	// any more (TakeDone hands them to the caller), free the ones handed
	// back (Recycle) for Request to reuse.
	done, free []*Pending
}

// Opened is a request head as it was queued.
type Opened struct {
	Conn ConnInfo
	// ID is the exchange's (0: an untracked request, a placeholder).
	ID       uint64
	PID, TID uint32
	Task     uint64
	Busy     uint32
	Start    uint64 // time of the head's first chunk
	// Request is the tracked request, filled once the call that queued it
	// returns (its head); nil for a placeholder.
	Request *Request
}

// Closed is the end of an untracked request of a task: its response
// began at T, or it was given up.
type Closed struct {
	PID  uint32
	Task uint64
	T    uint64
}

// NextID is a new exchange ID, for a parser that tracks requests outside
// a Queue (HTTP/2 streams).
func (s *Sink) NextID() uint64 {
	s.lastID++
	return s.lastID
}

// Bytes is what the pending requests of all queues hold.
func (s *Sink) Bytes() int { return s.bytes }

const (
	// Header fields a request or response of a typical client keeps
	// inside its Pending, without an allocation of their own.
	inlineRequestFields  = 16
	inlineResponseFields = 12
	// pendingSize counts a Pending against the byte bounds.
	pendingSize = int(unsafe.Sizeof(Pending{}))
	// maxFree Pendings wait for reuse, each keeping head buffers of at
	// most maxKeptBuf bytes: what a burst grew beyond that is collected.
	maxFree    = 64
	maxKeptBuf = 8 << 10
)

type pendingState uint8

const (
	waiting   pendingState = iota // in the queue, no response yet
	answering                     // its response head was seen, the body is under way
	emitted                       // handed to the caller; parsers must let go of it
)

// Pending is an exchange under construction. The request, the response,
// the header fields of typical messages and the copies of both heads
// (with room for their bodies) live in it, so that an exchange costs this
// one allocation, and none once Pendings are recycled (Sink.Recycle).
type Pending struct {
	Ex   Exchange
	Req  Request
	Resp Response

	reqFields  [inlineRequestFields]HeaderField
	respFields [inlineResponseFields]HeaderField
	// reqBuf and respBuf hold the heads the strings of Req and Resp are
	// cut from, and their bodies while they fit; kept across reuse.
	reqBuf, respBuf []byte
	sink            *Sink
	cost            int
	kind            Kind
	state           pendingState
	reqDone         bool // the request's body ended
}

// Kind is what framing the response to this request needs.
func (p *Pending) Kind() Kind { return p.kind }

// MaxRequestBody and MaxResponseBody are the body bytes kept.
func (p *Pending) MaxRequestBody() int  { return p.sink.Limits.MaxRequestBody }
func (p *Pending) MaxResponseBody() int { return p.sink.Limits.MaxResponseBody }

// Emitted reports whether the exchange was handed to the caller (its
// response ended, it timed out or the connection ended): a parser still
// holding it must stop writing to it.
func (p *Pending) Emitted() bool { return p.state == emitted }

// RequestFields returns an empty header with room for n fields, inside
// the Pending when they fit.
func (p *Pending) RequestFields(n int) Header {
	if n <= len(p.reqFields) {
		return p.reqFields[:0]
	}
	return make(Header, 0, n)
}

// ResponseFields is RequestFields for the response.
func (p *Pending) ResponseFields(n int) Header {
	if n <= len(p.respFields) {
		return p.respFields[:0]
	}
	return make(Header, 0, n)
}

// RequestHead copies a request head into the Pending, with room for room
// body bytes after it where the request's Body then points, and returns
// the copy: the request's strings are cut from it.
func (p *Pending) RequestHead(head []byte, room int) []byte {
	p.reqBuf = arena(p.reqBuf, head, room)
	p.Req.Body = p.reqBuf[len(head):len(head):len(p.reqBuf)]
	return p.reqBuf[:len(head)]
}

// ResponseHead is RequestHead for the response.
func (p *Pending) ResponseHead(head []byte, room int) []byte {
	p.respBuf = arena(p.respBuf, head, room)
	p.Resp.Body = p.respBuf[len(head):len(head):len(p.respBuf)]
	return p.respBuf[:len(head)]
}

// arena returns buf (or a larger one) holding head and room bytes after it.
func arena(buf, head []byte, room int) []byte {
	n := len(head) + room
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	copy(buf, head)
	return buf
}

// KeepRequestBody appends captured body bytes up to MaxRequestBody and
// reports whether the body is now full (more bytes would be dropped).
func (p *Pending) KeepRequestBody(b []byte) (full bool) {
	if p.state == emitted {
		return true
	}
	return keep(&p.Req.Body, &p.Req.BodyTruncated, b, p.sink.Limits.MaxRequestBody)
}

// KeepResponseBody is KeepRequestBody for the response.
func (p *Pending) KeepResponseBody(b []byte) (full bool) {
	if p.state == emitted {
		return true
	}
	return keep(&p.Resp.Body, &p.Resp.BodyTruncated, b, p.sink.Limits.MaxResponseBody)
}

func keep(body *[]byte, trunc *bool, b []byte, limit int) bool {
	room := limit - len(*body)
	if len(b) > room {
		b = b[:max(room, 0)]
		*trunc = true
	}
	if len(b) > 0 {
		*body = AppendSecret(*body, b, limit)
	}
	return len(*body) >= limit
}

// RequestDone records that the request's body ended.
func (p *Pending) RequestDone(t uint64) {
	if p.state == emitted {
		return
	}
	p.reqDone = true
	p.Ex.RequestEnd = max(p.Ex.RequestEnd, t)
}

// RequestBytes records that request bytes arrived at t.
func (p *Pending) RequestBytes(t uint64) {
	if p.state != emitted {
		p.Ex.RequestEnd = max(p.Ex.RequestEnd, t)
	}
}

// ResponseBytes records that response bytes arrived at t.
func (p *Pending) ResponseBytes(t uint64) {
	if p.state != emitted {
		p.Ex.ResponseEnd = max(p.Ex.ResponseEnd, t)
	}
}

// entry is one place in a queue: a pending request, placeholders for
// requests that are not tracked (uninteresting, beyond the bounds, timed
// out) or a gap where requests may have been lost.
type entry struct {
	p    *Pending
	n    uint32 // placeholders: how many requests this entry stands for
	kind Kind   // placeholders: the kind of every one of them
	gap  bool   // an unknown number of requests was lost here
	t    uint64 // head time of the (first) request; a gap's: when it was found
	// placeholders: the task that read them; quiet for those whose
	// Opened was a tracked request (it timed out and keeps its place).
	pid   uint32
	task  uint64
	quiet bool
}

// Queue pairs the requests of one connection with its responses: HTTP/1
// answers requests in the order they arrived.
type Queue struct {
	sink    *Sink
	info    *ConnInfo
	entries []entry // entries[head:] are waiting, oldest first
	head    int
	pending int // entries with a Pending
	bytes   int
	// uncertain: responses were lost, so the next response may answer any
	// waiting request; it is paired by time.
	uncertain bool
	// boring: the last request queued was not interesting.
	boring bool
}

// NewQueue returns the queue of one connection, whose exchanges carry
// *info.
func NewQueue(s *Sink, info *ConnInfo) Queue { return Queue{sink: s, info: info} }

// LastUninteresting reports whether the last request queued was one
// Limits.Interesting turned down (false before any request: a request lost
// to the bounds counts as interesting).
func (q *Queue) LastUninteresting() bool { return q.boring }

// Empty reports whether no request, placeholder or gap is waiting.
func (q *Queue) Empty() bool { return q.head == len(q.entries) }

// Next returns the kind of the request the next response answers, when
// the queue knows it.
func (q *Queue) Next() (Kind, bool) {
	if q.Empty() || q.uncertain {
		return KindOther, false
	}
	e := &q.entries[q.head]
	switch {
	case e.gap:
		return KindOther, false
	case e.p != nil:
		return e.p.kind, true
	}
	return e.kind, true
}

// Bytes is what the queue's pending requests hold.
func (q *Queue) Bytes() int { return q.bytes }

// Waiting is how many tracked requests wait for (the end of) a response.
func (q *Queue) Waiting() int { return q.pending }

// maxEntries bounds the entries of a queue: placeholders of different
// kinds or times cannot merge, and must not grow without end.
func (q *Queue) maxEntries() int { return 2*q.sink.Limits.MaxPending + 64 }

// RequestInfo describes a request head to the queue.
type RequestInfo struct {
	// Method and Target are only valid during the call to Request.
	Method, Target string
	Kind           Kind
	// Start and End are the times of the first and last chunk of the head.
	Start, End uint64
	PID, TID   uint32
	Task       uint64
	Busy       uint32
	// HeadBytes the request keeps; BodyBytes it declares (-1: unknown,
	// chunked), kept up to MaxRequestBody.
	HeadBytes int
	BodyBytes int64
}

// Request queues a parsed request head. It returns nil when the request
// is only held as a placeholder (not interesting, or beyond the bounds):
// the caller then keeps none of it.
func (q *Queue) Request(r RequestInfo) *Pending {
	s := q.sink
	lim := &s.Limits
	q.boring = lim.Interesting != nil && q.info.Role != RoleClient && !lim.Interesting(r.Method, r.Target)
	if q.boring {
		s.Stats.Uninteresting++
		q.opened(r, 0, nil)
		q.placeholder(r.Kind, r.End, r.PID, r.Task)
		return nil
	}
	body := lim.MaxRequestBody
	if r.BodyBytes >= 0 {
		body = int(min(r.BodyBytes, int64(body)))
	}
	cost := pendingSize + r.HeadBytes + body
	if q.pending >= lim.MaxPending || q.bytes+cost > lim.MaxPendingBytes ||
		s.bytes+cost > lim.MaxTotalPendingBytes {
		s.Stats.Lost(LossQueueFull, 1)
		q.opened(r, 0, nil)
		q.placeholder(r.Kind, r.End, r.PID, r.Task)
		return nil
	}
	p := s.newPending()
	p.sink, p.cost, p.kind = s, cost, r.Kind
	s.lastID++
	p.Ex = Exchange{Conn: *q.info, ID: s.lastID, PID: r.PID, TID: r.TID, Task: r.Task, Busy: r.Busy,
		Request: &p.Req, RequestStart: r.Start, RequestEnd: r.End}
	q.opened(r, p.Ex.ID, &p.Req)
	q.pending++
	q.bytes += cost
	s.bytes += cost
	q.push(entry{p: p, t: r.End})
	return p
}

func (q *Queue) opened(r RequestInfo, id uint64, req *Request) {
	q.sink.Opened = append(q.sink.Opened, Opened{Conn: *q.info, ID: id, PID: r.PID, TID: r.TID,
		Task: r.Task, Busy: r.Busy, Start: r.Start, Request: req})
}

// closed records the end of n untracked requests of e at t.
func (q *Queue) closed(e *entry, n uint32, t uint64) {
	if e.quiet {
		return
	}
	for range n {
		q.sink.Closed = append(q.sink.Closed, Closed{PID: e.pid, Task: e.task, T: t})
	}
}

// placeholder holds the place of a request that is not tracked, so that
// its response is not paired with the next one. Placeholders of one kind
// read at the same time by one task (a pipelined burst) share an entry.
func (q *Queue) placeholder(k Kind, t uint64, pid uint32, task uint64) {
	if n := len(q.entries); n > q.head {
		last := &q.entries[n-1]
		same := last.kind == k && last.t == t && last.pid == pid && last.task == task && !last.quiet
		if last.p == nil && !last.gap && (same || n-q.head >= q.maxEntries()) {
			if last.kind != k || last.t != t {
				// Too many distinct placeholders to track one by one: from
				// here on the pairing is a guess.
				q.uncertain = true
			}
			last.n++
			return
		}
	}
	q.push(entry{n: 1, kind: k, t: t, pid: pid, task: task})
}

func (q *Queue) push(e entry) {
	if q.head > 0 && q.head == len(q.entries) {
		q.entries, q.head = q.entries[:0], 0
	} else if q.head > 32 && q.head*2 > len(q.entries) {
		n := copy(q.entries, q.entries[q.head:])
		clear(q.entries[n:])
		q.entries, q.head = q.entries[:n], 0
	}
	q.entries = append(q.entries, e)
}

func (q *Queue) pop() {
	q.entries[q.head] = entry{}
	q.head++
	if q.head == len(q.entries) {
		q.entries, q.head = q.entries[:0], 0
	}
}

// IngressHole records that requests may have been lost at time t: their
// responses will come, and must not be paired with the requests after.
func (q *Queue) IngressHole(t uint64) {
	if n := len(q.entries); n > q.head && q.entries[n-1].gap {
		return
	}
	q.push(entry{gap: true, t: t})
}

// EgressHole records that responses may have been lost: the next response
// can answer any waiting request.
func (q *Queue) EgressHole() {
	if q.pending > 0 || !q.Empty() {
		q.uncertain = true
	}
}

// Response finds what a final response whose head was written at start
// answers: a tracked request (now answering; the parser fills p.Resp and
// calls Done), a placeholder (p nil, ok true: frame it and drop it) or
// nothing (ok false: an orphan, counted).
func (q *Queue) Response(start uint64) (p *Pending, k Kind, ok bool) {
	for !q.Empty() {
		e := &q.entries[q.head]
		switch {
		case e.p != nil && e.p.state == answering:
			// The parser began a new response without ending this one.
			q.deliver(e.p, EndResponse)
			q.pop()
			continue
		case e.gap:
			if !q.resolveGap(start) {
				q.sink.Stats.Orphans++
				return nil, KindOther, false
			}
			continue
		case q.uncertain:
			if !q.pairByTime(start) {
				q.sink.Stats.Orphans++
				return nil, KindOther, false
			}
			e = &q.entries[q.head]
		}
		if e.p == nil {
			k := e.kind
			q.closed(e, 1, start)
			if e.n--; e.n == 0 {
				q.pop()
			}
			return nil, k, true
		}
		e.p.state = answering
		e.p.Ex.Response = &e.p.Resp
		e.p.Ex.ResponseStart, e.p.Ex.ResponseEnd = start, start
		return e.p, e.p.kind, true
	}
	q.sink.Stats.Orphans++
	return nil, KindOther, false
}

// resolveGap decides about a response that meets a gap at the head of the
// queue: a response written before the next known request was read
// answers a lost request (false); otherwise the gap is closed and the
// requests read with the next one are marked Lost, their pairing a guess.
func (q *Queue) resolveGap(start uint64) bool {
	i := q.head + 1
	for i < len(q.entries) && q.entries[i].gap {
		i++
	}
	if i == len(q.entries) || start < q.entries[i].t {
		return false
	}
	t := q.entries[i].t
	for q.entries[q.head].gap {
		q.pop()
	}
	for j := q.head; j < len(q.entries) && q.entries[j].t == t; j++ {
		if p := q.entries[j].p; p != nil {
			p.Ex.Lost = true
		}
	}
	return true
}

// pairByTime chooses the request a response answers after responses were
// lost. Clients nearly always wait for a response before the next request,
// so the answer is the last request read before the response was written;
// the ones before it lost their responses. When that last read carried
// several requests (pipelining) the answer cannot be known: they all end
// lost and the response is an orphan.
func (q *Queue) pairByTime(start uint64) bool {
	last := -1
	for i := q.head; i < len(q.entries); i++ {
		e := &q.entries[i]
		if e.gap {
			continue
		}
		if e.t > start {
			break
		}
		last = i
	}
	if last < 0 {
		return false
	}
	t := q.entries[last].t
	alone := q.entries[last].n <= 1
	for i := last - 1; i >= q.head && alone; i-- {
		if e := &q.entries[i]; !e.gap {
			alone = e.t != t
			break
		}
	}
	drop := last - q.head // the entries before the answer lost their responses
	if !alone {
		drop++ // the answer cannot be known: all of them
	}
	for range drop {
		if p := q.entries[q.head].p; p != nil {
			p.Ex.Lost = true
			q.deliver(p, EndLost)
		}
		q.pop()
	}
	if !alone {
		return false
	}
	q.uncertain = false
	if p := q.entries[q.head].p; p != nil {
		p.Ex.Lost = true
	}
	return true
}

// Done ends the exchange whose response was under way (p, from Response).
// The caller lets go of p: no parser may touch it after Done, so that it
// can be recycled once its exchange was handed back.
func (q *Queue) Done(p *Pending) {
	if p.state != answering {
		return
	}
	q.deliverLetGo(p, EndResponse, true)
	if !q.Empty() && q.entries[q.head].p == p {
		q.pop()
		return
	}
	for i := q.head; i < len(q.entries); i++ {
		if q.entries[i].p == p {
			q.entries = append(q.entries[:i], q.entries[i+1:]...)
			return
		}
	}
}

// Expire ends requests that waited more than timeout for a response
// (EndTimeout; a placeholder keeps their place for the late response), a
// response whose body stalled as long (EndResponse), and drops
// placeholders and gaps older than twice the timeout at the head of the
// queue: their responses are not coming.
func (q *Queue) Expire(now, timeout uint64) {
	if !q.Empty() {
		if p := q.entries[q.head].p; p != nil && p.state == answering && olderThan(now, p.Ex.ResponseEnd, timeout) {
			q.deliver(p, EndResponse)
			q.pop()
		}
	}
	for i := q.head; i < len(q.entries); i++ {
		e := &q.entries[i]
		if p := e.p; p != nil && p.state == waiting && olderThan(now, p.Ex.RequestEnd, timeout) {
			q.deliver(p, EndTimeout)
			*e = entry{n: 1, kind: p.kind, t: e.t, quiet: true}
		}
	}
	for !q.Empty() {
		e := &q.entries[q.head]
		if e.p != nil || !olderThan(now, e.t, 2*timeout) {
			break
		}
		q.closed(e, e.n, now)
		q.pop()
	}
}

// End delivers every request still held with reason (a response under
// way ends with EndResponse, its body truncated) and empties the queue.
func (q *Queue) End(reason EndReason, t uint64) {
	for !q.Empty() {
		e := &q.entries[q.head]
		if p := e.p; p != nil {
			q.deliver(p, reason)
		} else if !e.gap {
			q.closed(e, e.n, t)
		}
		q.pop()
	}
	q.uncertain = false
}

// deliver hands p's exchange to the sink; the caller removes its entry.
func (q *Queue) deliver(p *Pending, end EndReason) { q.deliverLetGo(p, end, false) }

// deliverLetGo is deliver; letGo says the response's parser let go of p
// (Done). Once the request's parser let go too (it does before
// RequestDone), and the response's never had it (still waiting) or let go,
// nothing but the exchange points at p: it goes on the done list, to be
// recycled when the caller hands the exchange back.
func (q *Queue) deliverLetGo(p *Pending, end EndReason, letGo bool) {
	s := q.sink
	if p.state == emitted {
		return
	}
	if p.reqDone && (p.state == waiting || letGo) {
		s.done = append(s.done, p)
	}
	if p.state == answering {
		if end != EndResponse {
			p.Resp.BodyTruncated = true
		}
		end = EndResponse // a final response head counts as the response
	}
	if !p.reqDone {
		p.Req.BodyTruncated = true
	}
	if end != EndResponse {
		p.Ex.Response = nil
	}
	if end == EndLost {
		p.Ex.Lost = true
	}
	p.state = emitted
	p.Ex.End = end
	q.pending--
	q.bytes -= p.cost
	s.bytes -= p.cost
	s.Stats.Exchanges++
	if p.Req.BodyTruncated {
		s.Stats.TruncatedBodies++
	}
	if p.Ex.Response != nil && p.Resp.BodyTruncated {
		s.Stats.TruncatedBodies++
	}
	s.Out = append(s.Out, p.Ex)
}

// newPending is a recycled Pending, or a new one.
func (s *Sink) newPending() *Pending {
	if n := len(s.free); n > 0 {
		p := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return p
	}
	return &Pending{}
}

// TakeDone returns the Pendings of the exchanges handed out since the last
// call that no parser holds any more, in spare's place; the caller owns
// them from now on, and gives them back with Recycle once nothing reads
// their exchanges. Pendings it never gives back are simply collected.
func (s *Sink) TakeDone(spare []*Pending) []*Pending {
	out := s.done
	s.done = spare[:0]
	return out
}

// Recycle takes back Pendings from TakeDone for Request to reuse. The
// caller must be done with their exchanges: the Request and Response, their
// headers and bodies, and every string cut from them, which Recycle wipes
// (they may hold credentials) and the next request overwrites.
func (s *Sink) Recycle(ps []*Pending) {
	for _, p := range ps {
		clear(p.reqBuf)
		clear(p.respBuf)
		clear(p.Req.Body) // grown out of reqBuf, or a part of it
		clear(p.Resp.Body)
		if len(s.free) >= maxFree {
			continue
		}
		reqBuf, respBuf := p.reqBuf[:0], p.respBuf[:0]
		if cap(reqBuf) > maxKeptBuf {
			reqBuf = nil
		}
		if cap(respBuf) > maxKeptBuf {
			respBuf = nil
		}
		*p = Pending{reqBuf: reqBuf, respBuf: respBuf}
		s.free = append(s.free, p)
	}
}

func olderThan(now, t, age uint64) bool { return now > t && now-t > age }

// AppendSecret appends b to dst, never growing it beyond limit bytes
// (unless dst and b need more), and wipes dst's old backing array when it
// has to grow, so that no stray copy of captured bytes outlives its use.
func AppendSecret(dst, b []byte, limit int) []byte {
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
