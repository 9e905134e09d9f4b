package spanbuilder

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/decoder/postgres"
)

// Chain puts the spans of one node into their trees: an auth span and the
// calls its process made while serving it (CLIENT spans, its children),
// and across a connection whose two ends are both watched, the backend's
// auth span under the gateway's call (a linked hop).
//
// Ids are chosen while a request is served, not when it ends: at its
// beginning (Opened) when it is a linked hop, else at their first use (a
// call of its own, or its end), since the kernel may report a backend's
// read of a request before the gateway's write of it returns. A call's
// span can then name its parent while the parent is still being served,
// and a backend's span the gateway's call while that call waits for it.
// So no span waits for its children: a call is exported when it
// completes, an auth span when its exchange does, carrying the decision
// layer its children completed so far showed (calls complete before the
// response that depends on them). What is held is one small record per
// request in flight (at most MaxOpen, each ended by its exchange or the
// decoder's timeout) and, per task, the requests that ended in the last
// Retain nanoseconds, for operations that complete after their request
// (a database operation is only seen whole at its end).
//
// Which request a call belongs to is never guessed: it is the one
// request its task (thread, or goroutine) had in flight when the call
// began, and only when the kernel skipped no request on that task that
// was still unanswered (an event loop interleaving requests). Anything
// else is counted in ChainStats and not exported. Chain is for one
// goroutine.
type Chain struct {
	cfg   ChainConfig
	b     *Builder
	rnd   *rand.Rand
	tasks map[taskKey]*taskRequests
	open  map[uint64]*request // by exchange ID
	// calls in flight whose span is exported, by their connection's
	// addresses as the caller sees them, for the callee's side to find.
	calls map[connTuple]*request
	// free are requests nothing points to any more, for Opened to reuse;
	// at most maxFree of them.
	free    []*request
	maxFree int
	stats   ChainStats
}

// ChainConfig bounds a Chain.
type ChainConfig struct {
	// MaxOpen requests followed at once (default 65536); beyond it a
	// request's calls are not attributed (counted).
	MaxOpen int
	// Retain is how long (kernel ns) a request that ended stays known to
	// the operations that complete after it began (default 30 s).
	Retain uint64
	// MaxPerTask requests (in flight or recently ended) kept per task
	// (default 64).
	MaxPerTask int
}

// ChainStats counts what Chain did with every call, by reason.
type ChainStats struct {
	// Attributed calls became CLIENT spans under their request; Linked
	// auth spans became children of the watched caller's call.
	Attributed, Linked uint64
	// Calls not attributed, and not exported: made by a task serving no
	// request (Outside: a background job, a poller), serving only a
	// non-auth request (NonAuth), with more than one request in flight
	// (Ambiguous), with requests the kernel skipped still unanswered on
	// the task (Busy), or while MaxOpen requests were followed (Full).
	Outside, NonAuth, Ambiguous, Busy, Full uint64
	// Denials by layer, as set on auth spans.
	Denials map[string]uint64
}

type taskKey struct {
	pid  uint32
	task uint64
}

type connTuple struct{ from, to netip.AddrPort }

// request is one request of a server connection (auth or not), or one
// HTTP call of a client connection.
type request struct {
	id         uint64
	key        taskKey
	start, end uint64 // end: 0 while in flight
	auth       bool
	sc         trace.SpanContext // its own ids (auth requests, attributed calls)
	parent     trace.SpanContext
	linked     bool
	// auth requests whose ids are not chosen yet (sc zero, see ids): the
	// caller's traceparent for then.
	caller trace.SpanContext
	// calls: their connection; auth requests: theirs as the caller sees it.
	tuple connTuple
	owner *request // calls: the request they belong to
	// what its calls showed (auth requests)
	called   bool   // it made an HTTP call
	sqlstate string // the first authorization SQLSTATE of its queries
	denied   int    // the first 401/403 a call of it got
	// calls in open whose owner it is: they will write to it.
	calls int
}

// maxFreeRequests bounds the requests kept for reuse.
const maxFreeRequests = 1024

func (c *Chain) newRequest() *request {
	if n := len(c.free); n > 0 {
		r := c.free[n-1]
		c.free[n-1] = nil
		c.free = c.free[:n-1]
		return r
	}
	return &request{}
}

// recycle takes back a request that left the maps and task lists that
// point to requests (open, calls, tasks): reused when nothing else can
// still reach it. A request still in flight (end 0: open may hold it) or
// owning calls in flight (their owner pointer) is left to the collector.
func (c *Chain) recycle(r *request) {
	if len(c.free) >= c.maxFree || r.end == 0 && r.auth || r.calls > 0 {
		return
	}
	*r = request{}
	c.free = append(c.free, r)
}

// taskRequests are a task's requests in start order, in a ring: the
// oldest goes without moving the others (a keep-alive connection's task
// holds MaxPerTask requests for as long as they are retained).
type taskRequests struct {
	ring    []*request
	head, n int
}

func (t *taskRequests) slot(i int) int {
	if i += t.head; i >= len(t.ring) {
		i -= len(t.ring)
	}
	return i
}

func (t *taskRequests) at(i int) *request { return t.ring[t.slot(i)] }

// filter keeps, in order, the requests keep says yes to, and gives the
// others to drop.
func (t *taskRequests) filter(keep func(*request) bool, drop func(*request)) {
	kept := 0
	for i := range t.n {
		if r := t.at(i); keep(r) {
			t.ring[t.slot(kept)] = r
			kept++
		} else {
			drop(r)
		}
	}
	for i := kept; i < t.n; i++ {
		t.ring[t.slot(i)] = nil
	}
	t.n = kept
}

// push appends r, first taking out and returning the oldest when limit
// requests are held.
func (t *taskRequests) push(r *request, limit int) (old *request) {
	if t.n >= limit {
		old = t.ring[t.head]
		t.ring[t.head] = nil
		t.head = t.slot(1)
		t.n--
	}
	if t.n == len(t.ring) {
		grown := make([]*request, min(max(2*len(t.ring), 4), max(limit, 1)))
		for i := range t.n {
			grown[i] = t.at(i)
		}
		t.ring, t.head = grown, 0
	}
	t.ring[t.slot(t.n)] = r
	t.n++
	return old
}

// NewChain returns a Chain that builds spans with b.
func NewChain(b *Builder, cfg ChainConfig) *Chain {
	if cfg.MaxOpen <= 0 {
		cfg.MaxOpen = 65536
	}
	if cfg.Retain == 0 {
		cfg.Retain = 30_000_000_000
	}
	if cfg.MaxPerTask <= 0 {
		cfg.MaxPerTask = 64
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &Chain{
		cfg: cfg, b: b, rnd: rand.New(rand.NewChaCha8(seed)),
		tasks: map[taskKey]*taskRequests{}, open: map[uint64]*request{}, calls: map[connTuple]*request{},
		maxFree: maxFreeRequests, stats: ChainStats{Denials: map[string]uint64{}},
	}
}

// Stats returns the counters so far (Denials is a copy).
func (c *Chain) Stats() ChainStats {
	s := c.stats
	s.Denials = make(map[string]uint64, len(c.stats.Denials))
	for k, v := range c.stats.Denials {
		s.Denials[k] = v
	}
	return s
}

func (c *Chain) newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], c.rnd.Uint64())
	}
	return id
}

func (c *Chain) newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], c.rnd.Uint64())
		binary.BigEndian.PutUint64(id[8:], c.rnd.Uint64())
	}
	return id
}

func child(parent trace.SpanContext, id trace.SpanID) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: parent.TraceID(), SpanID: id, TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState(),
	})
}

// Opened takes a request head the decoder queued (decoder.Opened).
func (c *Chain) Opened(o *decoder.Opened) {
	key := taskKey{o.PID, o.Task}
	r := c.newRequest()
	r.id, r.key, r.start = o.ID, key, o.Start
	if o.Conn.Role == decoder.RoleClient {
		if !c.openCall(r, o) {
			c.recycle(r)
		}
		return
	}
	if o.Request != nil {
		if len(c.open) >= c.cfg.MaxOpen {
			c.stats.Full++
			c.recycle(r)
			return
		}
		r.auth = true
		r.tuple = connTuple{from: o.Conn.Peer, to: o.Conn.Local}
		c.open[r.id] = r
		if !c.link(r) {
			// The caller's call may not be known yet: the kernel can
			// report the backend's read before the gateway's write
			// returns. The ids wait for their first use.
			r.caller = extractTraceContext(o.Request.Header).parent
		}
	}
	c.add(key, r)
}

// link puts an auth request under the watched caller's call on its
// connection (a linked hop), if there is one in flight.
func (c *Chain) link(r *request) bool {
	call := c.calls[r.tuple]
	if call == nil {
		return false
	}
	r.parent, r.linked = call.sc, true
	r.sc = child(call.sc, c.newSpanID())
	c.stats.Linked++
	return true
}

// ids gives an auth request its ids when they are first needed (its
// first call, or its span): under the watched caller's call (looked for
// again: it may have been reported since the request opened), else under
// the caller's traceparent, else in a new trace.
func (c *Chain) ids(r *request) trace.SpanContext {
	if r.sc.IsValid() {
		return r.sc
	}
	switch {
	case c.link(r):
	case r.caller.IsValid():
		r.parent = r.caller
		r.sc = child(r.caller, c.newSpanID())
	default:
		r.sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: c.newTraceID(), SpanID: c.newSpanID(), TraceFlags: trace.FlagsSampled})
	}
	r.caller = trace.SpanContext{}
	return r.sc
}

// openCall attributes an HTTP call when it begins: the callee's side may
// need its span before it ends. It reports whether the call is followed.
func (c *Chain) openCall(r *request, o *decoder.Opened) bool {
	if o.ID == 0 {
		return false
	}
	parent := c.attribute(r.key, o.Start, o.Busy)
	if parent == nil {
		return false
	}
	parent.called = true
	parent.calls++
	r.owner = parent
	r.parent = c.ids(parent)
	r.sc = child(r.parent, c.newSpanID())
	r.tuple = connTuple{from: o.Conn.Local, to: o.Conn.Peer}
	c.open[r.id] = r
	c.calls[r.tuple] = r
	return true
}

// Closed takes the end of an untracked request (decoder.Closed).
func (c *Chain) Closed(cl *decoder.Closed) {
	if tr := c.tasks[taskKey{cl.PID, cl.Task}]; tr != nil {
		for i := range tr.n {
			if r := tr.at(i); !r.auth && r.end == 0 {
				r.end = max(cl.T, r.start)
				return
			}
		}
	}
}

func (c *Chain) add(key taskKey, r *request) {
	tr := c.tasks[key]
	if tr == nil {
		tr = &taskRequests{}
		c.tasks[key] = tr
	}
	// Past MaxPerTask the oldest goes; in flight, its calls will not be
	// attributed.
	if old := tr.push(r, c.cfg.MaxPerTask); old != nil {
		c.recycle(old)
	}
}

// attribute finds the one request that task key had in flight at t, or
// counts why there is none.
func (c *Chain) attribute(key taskKey, t uint64, busy uint32) *request {
	var found *request
	n := 0
	if tr := c.tasks[key]; tr != nil {
		for i := range tr.n {
			if r := tr.at(i); r.start <= t && (r.end == 0 || r.end >= t) {
				found = r
				n++
			}
		}
	}
	switch {
	case busy > 0 && n > 0:
		c.stats.Busy++
	case n == 0:
		c.stats.Outside++
	case n > 1:
		c.stats.Ambiguous++
	case !found.auth:
		c.stats.NonAuth++
	default:
		c.stats.Attributed++
		return found
	}
	return nil
}

// Exchange takes a finished exchange of process p and appends the spans
// it gives to out: an auth span, a call's span, or none.
func (c *Chain) Exchange(ex *decoder.Exchange, p Process, out []Span) []Span {
	if ex.Conn.Role == decoder.RoleClient {
		return c.call(ex, p, out)
	}
	s, ok := c.b.Build(ex, p)
	r := c.open[ex.ID]
	if r != nil {
		delete(c.open, ex.ID)
		r.end = max(ex.ResponseStart, ex.RequestEnd, r.start)
		if ex.Response == nil {
			r.end = max(ex.RequestEnd, r.start)
		}
	}
	if !ok {
		return out
	}
	if r != nil {
		sc := c.ids(r)
		s.TraceID, s.SpanID, s.Parent = sc.TraceID(), sc.SpanID(), r.parent
		c.decide(&s, r, p)
	}
	return append(out, s)
}

// call builds the span of a call, under the request it belongs to.
func (c *Chain) call(ex *decoder.Exchange, p Process, out []Span) []Span {
	var parent trace.SpanContext
	var owner *request
	if ex.Database != nil {
		owner = c.attribute(taskKey{ex.PID, ex.Task}, ex.RequestStart, ex.Busy)
		if owner == nil {
			return out
		}
		parent = c.ids(owner)
		if e := ex.Database.Error; e != nil && owner.sqlstate == "" && postgres.AuthorizationFailure(e.Code) {
			owner.sqlstate = e.Code
		}
	} else {
		r := c.open[ex.ID]
		if r == nil {
			return out // not attributed when it began: counted then
		}
		delete(c.open, ex.ID)
		if c.calls[r.tuple] == r {
			delete(c.calls, r.tuple)
		}
		parent = r.parent
		owner = r.owner
		owner.calls--
		if ex.Response != nil && owner.denied == 0 &&
			(ex.Response.StatusCode == 401 || ex.Response.StatusCode == 403) {
			owner.denied = ex.Response.StatusCode
		}
		sc := r.sc
		c.recycle(r) // out of open and calls: nothing points to it
		s, ok := c.b.BuildClient(ex, p)
		if !ok {
			return out
		}
		s.TraceID, s.SpanID, s.Parent = sc.TraceID(), sc.SpanID(), parent
		return append(out, s)
	}
	s, ok := c.b.BuildClient(ex, p)
	if !ok {
		return out
	}
	s.TraceID, s.SpanID, s.Parent = parent.TraceID(), c.newSpanID(), parent
	return append(out, s)
}

// decide sets the decision layer of an auth span that denies (or fails
// because a layer below refused it).
func (c *Chain) decide(s *Span, r *request, p Process) {
	below := r.sqlstate != "" || r.denied != 0
	if s.Result != ResultFailure && !(s.Result == ResultError && below) {
		return
	}
	var layer string
	switch {
	case r.sqlstate != "":
		layer = LayerDatabase
		s.Attributes = append(s.Attributes, attribute.String(attrLayerSQLSTATE, r.sqlstate))
	case r.denied != 0:
		layer = LayerUpstream
		s.Attributes = append(s.Attributes, attribute.Int(attrLayerStatus, r.denied))
	case p.Gateway:
		layer = LayerGateway
	default:
		layer = LayerService
	}
	s.Layer = layer
	s.Attributes = append(s.Attributes, attribute.String(attrLayer, layer))
	c.stats.Denials[layer]++
}

// Expire forgets the requests that ended more than Retain before now,
// and tasks left with none.
func (c *Chain) Expire(now uint64) {
	for key, tr := range c.tasks {
		tr.filter(func(r *request) bool {
			return r.end == 0 || now < r.end || now-r.end <= c.cfg.Retain
		}, c.recycle)
		if tr.n == 0 {
			delete(c.tasks, key)
		}
	}
}
