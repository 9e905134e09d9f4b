package spanbuilder

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/decoder/postgres"
)

// chainRun drives a Chain through random programs of requests, calls
// (linked to a watched backend or not), database operations, placeholder
// ends and expiries, on few tasks and small bounds so that requests are
// evicted, expire and outlive their calls.
type chainRun struct {
	rnd     *rand.Rand
	now     uint64
	lastID  uint64
	servers []chainReq // in flight
	calls   []chainReq
	port    uint16
}

type chainReq struct {
	o   decoder.Opened
	req *decoder.Request
}

const chainTasks = 3

func (r *chainRun) task() (uint32, uint64) { return 1, uint64(r.rnd.IntN(chainTasks)) + 10 }

func (r *chainRun) take(list *[]chainReq) (chainReq, bool) {
	if len(*list) == 0 {
		return chainReq{}, false
	}
	i := r.rnd.IntN(len(*list))
	q := (*list)[i]
	*list = append((*list)[:i], (*list)[i+1:]...)
	return q, true
}

// step makes the next event and applies it to every chain; it returns
// what each chain gave, spans and stats as text, for comparing.
func (r *chainRun) step(chains []*Chain) []string {
	r.now += 10
	pid, task := r.task()
	out := make([]string, len(chains))
	each := func(f func(c *Chain) []Span) {
		for i, c := range chains {
			for _, s := range f(c) {
				out[i] += fmt.Sprintf("ids=%s/%s %s\n", s.TraceID, s.SpanID, spanDump(s))
			}
		}
	}
	opened := func(o decoder.Opened) {
		for _, c := range chains {
			c.Opened(&o)
		}
	}
	serverConn := func(peer, local netip.AddrPort) decoder.ConnInfo {
		return decoder.ConnInfo{Key: decoder.ConnKey{Sock: uint64(r.port), Gen: 1}, Peer: peer, Local: local}
	}
	r.port++
	switch op := r.rnd.IntN(10); op {
	case 0, 1: // a login begins
		r.lastID++
		req := &decoder.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.1",
			Header: hdr("Content-Type", "application/x-www-form-urlencoded"), Body: []byte(fmt.Sprintf("username=u%d", r.lastID%5))}
		o := decoder.Opened{Conn: serverConn(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), r.port),
			netip.MustParseAddrPort("127.0.0.1:8080")), ID: r.lastID, PID: pid, Task: task, Start: r.now, Request: req}
		opened(o)
		r.servers = append(r.servers, chainReq{o, req})
	case 2: // a request on no auth route (a placeholder) begins, or ends
		if r.rnd.IntN(2) == 0 {
			opened(decoder.Opened{Conn: serverConn(netip.MustParseAddrPort("192.0.2.8:1"), netip.MustParseAddrPort("127.0.0.1:8080")),
				PID: pid, Task: task, Start: r.now})
		} else {
			for _, c := range chains {
				c.Closed(&decoder.Closed{PID: pid, Task: task, T: r.now})
			}
		}
	case 3: // a login ends
		q, ok := r.take(&r.servers)
		if !ok {
			break
		}
		ex := decoder.Exchange{Conn: q.o.Conn, ID: q.o.ID, PID: q.o.PID, Task: q.o.Task, Request: q.req,
			RequestStart: q.o.Start, RequestEnd: q.o.Start + 1, ResponseStart: r.now, ResponseEnd: r.now}
		if r.rnd.IntN(5) > 0 {
			ex.Response = &decoder.Response{Proto: "HTTP/1.1", StatusCode: []int{200, 401, 403, 500}[r.rnd.IntN(4)]}
		} else {
			ex.End = decoder.EndTimeout
		}
		each(func(c *Chain) []Span { return c.Exchange(&ex, Process{PID: pid}, nil) })
	case 4: // a call begins
		r.lastID++
		req := &decoder.Request{Method: "GET", Target: "/api/check", Proto: "HTTP/1.1", Header: hdr("Host", "backend:9090")}
		o := decoder.Opened{Conn: decoder.ConnInfo{Key: decoder.ConnKey{Sock: uint64(r.port), Gen: 1}, Role: decoder.RoleClient,
			Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.port), Peer: netip.MustParseAddrPort("127.0.0.1:9090")},
			ID: r.lastID, PID: pid, Task: task, Start: r.now, Request: req}
		if r.rnd.IntN(8) == 0 {
			o.Busy = 1
		}
		opened(o)
		r.calls = append(r.calls, chainReq{o, req})
	case 5: // a call ends
		q, ok := r.take(&r.calls)
		if !ok {
			break
		}
		ex := decoder.Exchange{Conn: q.o.Conn, ID: q.o.ID, PID: q.o.PID, Task: q.o.Task, Request: q.req,
			RequestStart: q.o.Start, RequestEnd: q.o.Start + 1, ResponseStart: r.now, ResponseEnd: r.now}
		if r.rnd.IntN(5) > 0 {
			ex.Response = &decoder.Response{Proto: "HTTP/1.1", StatusCode: []int{200, 401, 403}[r.rnd.IntN(3)]}
		} else {
			ex.End = decoder.EndClosed
		}
		each(func(c *Chain) []Span { return c.Exchange(&ex, Process{PID: pid}, nil) })
	case 6: // the watched backend reads a call's request: a linked hop
		if len(r.calls) == 0 {
			break
		}
		call := r.calls[r.rnd.IntN(len(r.calls))]
		r.lastID++
		req := &decoder.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.1", Header: hdr("Content-Type", "text/plain")}
		o := decoder.Opened{Conn: serverConn(call.o.Conn.Local, call.o.Conn.Peer), ID: r.lastID, PID: 2, Task: 20, Start: r.now, Request: req}
		opened(o)
		r.servers = append(r.servers, chainReq{o, req})
	case 7: // a database operation ends
		op := &postgres.Operation{Kind: postgres.KindQuery, Status: postgres.StatusOK}
		if r.rnd.IntN(3) == 0 {
			op.Status, op.Error = postgres.StatusError, &postgres.Error{Code: "42501", Severity: "ERROR"}
		}
		ex := decoder.Exchange{Conn: decoder.ConnInfo{Key: decoder.ConnKey{Sock: 1, Gen: 1}, Role: decoder.RoleClient,
			Peer: netip.MustParseAddrPort("127.0.0.1:5432")}, PID: pid, Task: task, Database: op,
			RequestStart: r.now - uint64(r.rnd.IntN(200)), RequestEnd: r.now, ResponseEnd: r.now}
		each(func(c *Chain) []Span { return c.Exchange(&ex, Process{PID: pid}, nil) })
	default:
		r.now += uint64(r.rnd.IntN(1500))
		for _, c := range chains {
			c.Expire(r.now)
		}
	}
	for i, c := range chains {
		out[i] += fmt.Sprintf("stats %+v", c.Stats())
	}
	return out
}

// TestChainRecycle plays random programs on a Chain that reuses its
// request records and on one that never does: both must give the same
// spans (ids, parents, decision layers) and counters. A record reused
// while a task list, the open or calls map, or a call's owner pointer
// still reached it shows as a difference.
func TestChainRecycle(t *testing.T) {
	b := mustBuilder(t, nil)
	reused := 0
	for seed := range uint64(40) {
		cfg := ChainConfig{MaxOpen: 12, Retain: 1000, MaxPerTask: 4}
		reusing, fresh := NewChain(b, cfg), NewChain(b, cfg)
		fresh.maxFree = 0
		reusing.rnd = rand.New(rand.NewPCG(seed, 1))
		fresh.rnd = rand.New(rand.NewPCG(seed, 1))
		r := &chainRun{rnd: rand.New(rand.NewPCG(seed, 2)), now: 1000}
		for i := range 600 {
			free := len(reusing.free)
			got := r.step([]*Chain{reusing, fresh})
			if got[0] != got[1] {
				t.Fatalf("seed %d step %d differs when requests are reused:\n reused: %s\n fresh:  %s", seed, i, got[0], got[1])
			}
			if len(reusing.free) < free {
				reused++
			}
		}
		if !reflect.DeepEqual(reusing.Stats(), fresh.Stats()) {
			t.Fatalf("seed %d: stats differ", seed)
		}
	}
	if reused == 0 {
		t.Fatal("no request record was reused")
	}
	t.Logf("%d request records reused", reused)
}

// TestChainCallerReportedLate: the kernel may report the backend's read
// of a request before the gateway's write of it returns, so the backend's
// request opens before the gateway's call does. The hop is linked all the
// same: the backend's ids wait for their first use (here its query), by
// which time the call is known; and with no watched caller at all, the
// backend's span goes under the traceparent it was sent.
func TestChainCallerReportedLate(t *testing.T) {
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	gwAddr, callAddr, backendAddr := netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:9090")
	login := func(h decoder.Header) *decoder.Request {
		return &decoder.Request{Method: "POST", Target: "/login", Proto: "HTTP/1.1", Header: h}
	}
	server := func(id uint64, pid uint32, task uint64, peer, local netip.AddrPort, req *decoder.Request, start uint64) decoder.Opened {
		return decoder.Opened{Conn: decoder.ConnInfo{Key: decoder.ConnKey{Sock: id, Gen: 1}, Peer: peer, Local: local},
			ID: id, PID: pid, Task: task, Start: start, Request: req}
	}
	end := func(o decoder.Opened, t uint64) *decoder.Exchange {
		return &decoder.Exchange{Conn: o.Conn, ID: o.ID, PID: o.PID, Task: o.Task, Request: o.Request,
			RequestStart: o.Start, RequestEnd: o.Start + 1, ResponseStart: t, ResponseEnd: t,
			Response: &decoder.Response{Proto: "HTTP/1.1", StatusCode: 401}}
	}
	query := func(pid uint32, task uint64, t uint64) *decoder.Exchange {
		return &decoder.Exchange{Conn: decoder.ConnInfo{Key: decoder.ConnKey{Sock: 99, Gen: 1}, Role: decoder.RoleClient,
			Peer: netip.MustParseAddrPort("127.0.0.1:5432")}, PID: pid, Task: task,
			Database: &postgres.Operation{Kind: postgres.KindQuery, Status: postgres.StatusOK}, RequestStart: t, RequestEnd: t + 1, ResponseEnd: t + 2}
	}
	one := func(t *testing.T, spans []Span) Span {
		t.Helper()
		if len(spans) != 1 {
			t.Fatalf("%d spans, want 1", len(spans))
		}
		return spans[0]
	}

	t.Run("linked", func(t *testing.T) {
		c := NewChain(mustBuilder(t, nil), ChainConfig{})
		gw := server(1, 1, 10, netip.MustParseAddrPort("192.0.2.7:5555"), gwAddr, login(hdr("traceparent", traceparent)), 100)
		c.Opened(&gw)
		// The backend's read, reported first; it carries the traceparent
		// the gateway forwarded.
		be := server(2, 2, 20, callAddr, backendAddr, login(hdr("traceparent", traceparent)), 110)
		c.Opened(&be)
		call := decoder.Opened{Conn: decoder.ConnInfo{Key: decoder.ConnKey{Sock: 3, Gen: 1}, Role: decoder.RoleClient, Local: callAddr, Peer: backendAddr},
			ID: 3, PID: 1, Task: 10, Start: 105, Request: login(hdr("Host", "backend"))}
		c.Opened(&call)
		q := one(t, c.Exchange(query(2, 20, 120), Process{PID: 2}, nil))
		bs := one(t, c.Exchange(end(be, 130), Process{PID: 2}, nil))
		cs := one(t, c.Exchange(end(call, 140), Process{PID: 1}, nil))
		gs := one(t, c.Exchange(end(gw, 150), Process{PID: 1}, nil))

		if cs.Parent.SpanID() != gs.SpanID {
			t.Errorf("gateway call's parent %s, want the gateway's span %s", cs.Parent.SpanID(), gs.SpanID)
		}
		if bs.Parent.SpanID() != cs.SpanID {
			t.Errorf("backend span's parent %s, want the gateway's call %s", bs.Parent.SpanID(), cs.SpanID)
		}
		if q.Parent.SpanID() != bs.SpanID {
			t.Errorf("query's parent %s, want the backend's span %s", q.Parent.SpanID(), bs.SpanID)
		}
		for _, s := range []Span{q, bs, cs} {
			if s.TraceID != gs.TraceID {
				t.Errorf("%s in trace %s, want %s", s.Name, s.TraceID, gs.TraceID)
			}
		}
		if st := c.Stats(); st.Linked != 1 || st.Attributed != 2 {
			t.Errorf("stats %+v, want 1 linked and 2 attributed", st)
		}
	})

	t.Run("traceparent", func(t *testing.T) {
		c := NewChain(mustBuilder(t, nil), ChainConfig{})
		be := server(2, 2, 20, callAddr, backendAddr, login(hdr("traceparent", traceparent)), 110)
		c.Opened(&be)
		q := one(t, c.Exchange(query(2, 20, 120), Process{PID: 2}, nil))
		bs := one(t, c.Exchange(end(be, 130), Process{PID: 2}, nil))
		if bs.Parent.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || bs.Parent.SpanID().String() != "b7ad6b7169203331" {
			t.Errorf("backend span's parent %s/%s, want the traceparent's", bs.Parent.TraceID(), bs.Parent.SpanID())
		}
		if q.Parent.SpanID() != bs.SpanID || q.TraceID != bs.TraceID {
			t.Errorf("query under %s/%s, want the backend's span %s/%s", q.TraceID, q.Parent.SpanID(), bs.TraceID, bs.SpanID)
		}
		if st := c.Stats(); st.Linked != 0 {
			t.Errorf("stats %+v, want nothing linked", st)
		}
	})
}

// TestTaskRequestsRing: a task's ring holds what a slice that drops its
// first element past the limit would, in the same order, whatever the
// pushes and the expiries between them.
func TestTaskRequestsRing(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	for _, limit := range []int{1, 2, 3, 5, 64} {
		var ring taskRequests
		var model []*request
		for step := range 5000 {
			if rnd.IntN(6) == 0 {
				// An expiry: keep the requests with an even id.
				ring.filter(func(r *request) bool { return r.id%2 == 0 }, func(*request) {})
				model = slices.DeleteFunc(model, func(r *request) bool { return r.id%2 != 0 })
			} else {
				r := &request{id: uint64(rnd.IntN(1000))}
				var wantOld *request
				if len(model) >= limit {
					wantOld, model = model[0], model[1:]
				}
				model = append(model, r)
				if old := ring.push(r, limit); old != wantOld {
					t.Fatalf("limit %d step %d: push gave back %p, want %p", limit, step, old, wantOld)
				}
			}
			if ring.n != len(model) {
				t.Fatalf("limit %d step %d: %d held, want %d", limit, step, ring.n, len(model))
			}
			for i, r := range model {
				if ring.at(i) != r {
					t.Fatalf("limit %d step %d: request %d differs", limit, step, i)
				}
			}
			if len(ring.ring) > limit {
				t.Fatalf("limit %d: ring of %d", limit, len(ring.ring))
			}
		}
	}
}
