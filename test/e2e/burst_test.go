package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// burstServers and burstSizes: logins pipelined in one write on one
// connection, as a brute-force tool hides them.
var (
	burstServers = []string{"go", "python", "express", "java"}
	burstSizes   = []int{50, 500}
)

// TestBurst: every login of a pipelined burst, right and wrong passwords
// alternating, gets its own span with its own result, in request order.
// Requests and spans are matched by the caller's trace (a traceparent per
// request) and checked against the username each wrong-password request
// carries alone.
func TestBurst(t *testing.T) {
	testutil.MustRoot(t)
	for si, lang := range burstServers {
		t.Run(lang, func(t *testing.T) {
			// One agent, PID scope and client range (127.<30+server>.x.y)
			// per server: safe side by side.
			t.Parallel()
			srv := mustStartServer(t, lang)
			mustWarmUp(t, srv)
			ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

			type burst struct {
				n    int
				sent []*evSent
			}
			var bursts []burst
			byTrace := map[string]*evSent{}
			total := 0
			start := time.Now()
			for bi, n := range burstSizes {
				var c evConn
				for i := range n {
					// Right passwords as alice, wrong ones each with a
					// username of its own.
					user, pass := "alice", "correct-horse"
					if i%2 == 1 {
						user, pass = fmt.Sprintf("burst%d-%03d", n, i), "not-the-password"
					}
					tp := newTraceParent(t)
					wire, line := buildWire(srv.Addr, tp, user, pass, wireOpts{})
					c.reqs = append(c.reqs, evReq{wire: wire, line: line, login: true, user: user, tp: tp})
				}
				src := fmt.Sprintf("127.%d.%d.1", 30+si, bi+1)
				run, err := runEvConn(srv.Addr, src, c)
				if err != nil {
					t.Fatalf("%s server, burst of %d: %v", lang, n, err)
				}
				bu := burst{n: n}
				for i, req := range c.reqs {
					s := &evSent{conn: bi, index: i, req: req, ans: run.answers[i], run: &run}
					want := 401
					if i%2 == 0 {
						want = 200
					}
					if s.ans.status != want || !s.ans.marked {
						t.Fatalf("%s server, burst of %d: login %d answered %s, want %d from the login handler: the server or the harness is broken",
							lang, n, i+1, s.ans, want)
					}
					bu.sent = append(bu.sent, s)
					byTrace[req.tp.TraceID] = s
				}
				bursts = append(bursts, bu)
				total += n
			}
			sentIn := time.Since(start)

			spans := waitSpansQuiet(t, ag, total)
			ag.Stop(t)
			spans = ag.Spans(t)
			var stray []Span
			for _, sp := range spans {
				if s, ok := byTrace[sp.TraceID]; ok {
					s.spans = append(s.spans, sp)
				} else {
					stray = append(stray, sp)
				}
			}
			t.Logf("%s: %d logins sent and answered in %v; %d spans", lang, total, sentIn.Round(time.Millisecond), len(spans))
			if len(stray) > 0 {
				t.Errorf("%s server: %d spans not of any burst request (no or another trace), first: %s", lang, len(stray), stray[0])
			}

			for _, bu := range bursts {
				var right, missing []int
				var wrong, doubled []string
				for i, s := range bu.sent {
					switch len(s.spans) {
					case 0:
						missing = append(missing, i+1)
					case 1:
						if p := loginSpanProblems(srv, s, s.spans[0]); len(p) > 0 {
							wrong = append(wrong, fmt.Sprintf("#%d (answered %d): %s", i+1, s.ans.status, strings.Join(p, "; ")))
						} else {
							right = append(right, i)
						}
					default:
						doubled = append(doubled, fmt.Sprintf("#%d: %d spans", i+1, len(s.spans)))
					}
				}
				where := fmt.Sprintf("%s server, burst of %d logins in one write from %s:%d", lang, bu.n, bu.sent[0].run.src, bu.sent[0].run.port)
				t.Logf("%s: %d right spans, %d wrong, %d missing, %d doubled", where, len(right), len(wrong), len(missing), len(doubled))
				if len(missing) > 0 {
					t.Errorf("%s: %d of %d logins have no span: requests %s", where, len(missing), bu.n, numberRanges(missing))
				}
				if len(wrong) > 0 {
					t.Errorf("%s: %d spans are wrong; first ones:\n  %s", where, len(wrong), strings.Join(wrong[:min(5, len(wrong))], "\n  "))
				}
				if len(doubled) > 0 {
					t.Errorf("%s: requests with more than one span: %s", where, strings.Join(doubled[:min(5, len(doubled))], ", "))
				}
				// In request order: a later request never starts before an
				// earlier one.
				for k := 1; k < len(right); k++ {
					prev, cur := bu.sent[right[k-1]].spans[0], bu.sent[right[k]].spans[0]
					if cur.StartTimeUnixNano < prev.StartTimeUnixNano {
						t.Errorf("%s: the span of request %d starts before that of request %d", where, right[k]+1, right[k-1]+1)
						break
					}
				}
			}
		})
	}
}

// numberRanges prints sorted numbers as "1-3, 7, 9-12".
func numberRanges(ns []int) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		} else {
			parts = append(parts, fmt.Sprint(ns[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
