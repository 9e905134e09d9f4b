package spanbuilder

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
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
