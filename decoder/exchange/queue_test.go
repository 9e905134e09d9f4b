package exchange

import (
	"fmt"
	"strings"
	"testing"
)

func mustQueue(tb testing.TB, maxPending int) (*Queue, *Sink) {
	tb.Helper()
	s := &Sink{Limits: Limits{MaxRequestBody: 16, MaxResponseBody: 16, MaxPending: maxPending,
		MaxPendingBytes: 1 << 20, MaxTotalPendingBytes: 1 << 20,
		Interesting: func(_, target string) bool { return !strings.HasPrefix(target, "/skip") }}}
	q := NewQueue(s, &ConnInfo{})
	tb.Cleanup(func() {
		q.End(EndClosed, 0)
		if s.Bytes() != 0 {
			tb.Errorf("%d bytes held after End", s.Bytes())
		}
	})
	return &q, s
}

// request queues a request read at t; a non-nil Pending is tracked.
func request(q *Queue, target string, t uint64) *Pending {
	p := q.Request(RequestInfo{Method: "GET", Target: target, Start: t, End: t})
	if p != nil {
		p.Req.Target = target
		p.RequestDone(t)
	}
	return p
}

// answer pairs a response written at t and ends it; it returns the target
// it answered ("-" for a placeholder, "orphan" for none).
func answer(q *Queue, t uint64) string {
	p, _, ok := q.Response(t)
	switch {
	case !ok:
		return "orphan"
	case p == nil:
		return "-"
	}
	q.Done(p)
	return p.Req.Target
}

func outcomes(s *Sink) string {
	var b []string
	for _, ex := range s.Out {
		l := fmt.Sprintf("%s:%s", ex.Request.Target, ex.End)
		if ex.Lost {
			l += ":lost"
		}
		b = append(b, l)
	}
	s.Out = s.Out[:0]
	return strings.Join(b, " ")
}

func TestPairInOrderWithPlaceholders(t *testing.T) {
	q, s := mustQueue(t, 8)
	request(q, "/a", 1)
	request(q, "/skip1", 1) // not interesting: a placeholder
	request(q, "/skip2", 1) // merges with it: same kind, same read
	request(q, "/b", 2)
	var got []string
	for range 5 {
		got = append(got, answer(q, 3))
	}
	if g := strings.Join(got, ","); g != "/a,-,-,/b,orphan" {
		t.Fatalf("answers %s", g)
	}
	if o := outcomes(s); o != "/a:response /b:response" || s.Stats.Uninteresting != 2 || s.Stats.Orphans != 1 {
		t.Fatalf("outcomes %q, stats %+v", o, s.Stats)
	}
}

// TestGapResolvedByTime: requests were lost (a gap); a response written
// before the next known request was read answers a lost one.
func TestGapResolvedByTime(t *testing.T) {
	q, s := mustQueue(t, 8)
	q.IngressHole(10)
	request(q, "/c", 20)
	request(q, "/d", 20) // read with /c: its pairing is a guess too
	if a := answer(q, 15); a != "orphan" {
		t.Fatalf("response before /c was read paired with %s", a)
	}
	if a, b := answer(q, 25), answer(q, 26); a != "/c" || b != "/d" {
		t.Fatalf("answers %s, %s", a, b)
	}
	if o := outcomes(s); o != "/c:response:lost /d:response:lost" {
		t.Fatalf("outcomes %q", o)
	}
}

// TestLostResponsesPairedByTime: after responses were lost, a response
// answers the last request read before it; when that read carried several
// requests nobody can tell which.
func TestLostResponsesPairedByTime(t *testing.T) {
	q, s := mustQueue(t, 8)
	request(q, "/a", 1)
	request(q, "/b", 3)
	q.EgressHole()
	if a := answer(q, 4); a != "/b" {
		t.Fatalf("answered %s, want /b", a)
	}
	if o := outcomes(s); o != "/a:lost:lost /b:response:lost" {
		t.Fatalf("outcomes %q", o)
	}
	request(q, "/p1", 10)
	request(q, "/p2", 10)
	request(q, "/later", 20)
	q.EgressHole()
	if a := answer(q, 15); a != "orphan" {
		t.Fatalf("answered %s, want an orphan", a)
	}
	if a := answer(q, 25); a != "/later" {
		t.Fatalf("answered %s, want /later", a)
	}
	if o := outcomes(s); o != "/p1:lost:lost /p2:lost:lost /later:response:lost" {
		t.Fatalf("outcomes %q", o)
	}
}

// TestTimeoutKeepsPlace: a timed-out request ends, and its late response
// is not paired with the next request.
func TestTimeoutKeepsPlace(t *testing.T) {
	q, s := mustQueue(t, 8)
	request(q, "/slow", 1)
	q.Expire(100, 50)
	request(q, "/next", 110)
	if a, b := answer(q, 120), answer(q, 130); a != "-" || b != "/next" {
		t.Fatalf("answers %s, %s", a, b)
	}
	if o := outcomes(s); o != "/slow:timeout /next:response" {
		t.Fatalf("outcomes %q", o)
	}
}

// TestBoundsKeepPlace: a request beyond MaxPending is lost, counted, and
// its response swallowed by its placeholder.
func TestBoundsKeepPlace(t *testing.T) {
	q, s := mustQueue(t, 2)
	for i := range 4 {
		request(q, fmt.Sprintf("/%d", i), 1)
	}
	var got []string
	for range 4 {
		got = append(got, answer(q, 2))
	}
	if g := strings.Join(got, ","); g != "/0,/1,-,-" || s.Stats.LostAttempts[LossQueueFull] != 2 {
		t.Fatalf("answers %s, lost %d", g, s.Stats.LostAttempts[LossQueueFull])
	}
}
