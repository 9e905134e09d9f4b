package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// The evasion matrix: login requests spelled and framed the ways an
// attacker would to slip past a byte-exact filter, each sent with exact
// bytes to servers with different routing rules. A variant counts for a
// server only when that server answered it from its login handler (the
// X-Login-Handler marker); every counted request must then give exactly
// one auth.login span with the server's final status and the right
// result, client and trace. What a server refused (400, 404, 307, 405)
// must not become a span that claims a login result.

// evasionServers are the routing rules the matrix compares: ServeMux
// patterns (segment-unescaped, unclean paths redirected, case-sensitive),
// Express 5 defaults (case-insensitive, trailing slash allowed, undecoded),
// http.server and the JDK HttpServer (exact raw path).
var evasionServers = []string{"go", "express", "python", "java"}

const (
	// evQuiet: once this long passes without a new span after the last
	// request, the spans still missing are taken as missed.
	evQuiet = 3 * time.Second
	// evSpanCap bounds the wait for spans of one server's matrix.
	evSpanCap = 20 * time.Second
	// evAmbiguousAttr is the attribute a span of a request servers may
	// read differently carries (issue 7).
	evAmbiguousAttr = "auth.request.ambiguous"
)

// evBuilder makes the requests of one variant for one server.
type evBuilder struct {
	tb   testing.TB
	host string
	// good: the next login sends the right password (alternates per
	// variant and within one).
	good bool
}

func (b *evBuilder) creds() (user, pass string) {
	if b.good {
		return "alice", "correct-horse"
	}
	return "alice", "not-her-password"
}

// login is a login request shaped by o.
func (b *evBuilder) login(o wireOpts) evReq {
	tp := newTraceParent(b.tb)
	user, pass := b.creds()
	wire, line := buildWire(b.host, tp, user, pass, o)
	return evReq{wire: wire, line: line, login: true, user: user, tp: tp}
}

// ambiguous is a login request whose span must say it is ambiguous;
// noUser also forbids auth.username.
func (b *evBuilder) ambiguous(o wireOpts, noUser bool) evReq {
	r := b.login(o)
	// Which username the server read is its own call: none is checked.
	r.ambiguous, r.noUser, r.user = true, noUser, ""
	return r
}

func (b *evBuilder) get(path string) evReq {
	tp := newTraceParent(b.tb)
	wire, line := getWire(b.host, path, tp)
	return evReq{wire: wire, line: line, tp: tp}
}

// evVariant is one row of the matrix: the connections it opens.
type evVariant struct {
	name  string
	conns func(b *evBuilder) []evConn
}

func evOne(name string, o wireOpts) evVariant {
	return evVariant{name: name, conns: func(b *evBuilder) []evConn {
		return []evConn{{reqs: []evReq{b.login(o)}}}
	}}
}

func evOneReq(name string, f func(b *evBuilder) evReq) evVariant {
	return evVariant{name: name, conns: func(b *evBuilder) []evConn {
		return []evConn{{reqs: []evReq{f(b)}}}
	}}
}

func evasionVariants() []evVariant {
	lengths := func(format string, more ...string) func(int) []string {
		return func(n int) []string { return append([]string{fmt.Sprintf(format, n)}, more...) }
	}
	var pad []string
	for i := range 6 {
		pad = append(pad, fmt.Sprintf("X-Pad-%d: %s", i, strings.Repeat("p", 1000)))
	}
	vs := []evVariant{
		// The first two are the controls: every server must count them.
		evOne("baseline form", wireOpts{}),
		evOne("baseline json", wireOpts{JSON: true}),
		evOne("query string", wireOpts{Target: "/login?next=%2Fhome"}),
		evOne("pct letter /%6Cogin", wireOpts{Target: "/%6Cogin"}),
		evOne("pct lower hex /logi%6e", wireOpts{Target: "/logi%6e"}),
		evOne("pct whole /%6C%6F%67%69%6E", wireOpts{Target: "/%6C%6F%67%69%6E"}),
		evOne("absolute-form http://h/login", wireOpts{Target: "http://{host}/login"}),
		evOne("absolute-form HTTP://h/login", wireOpts{Target: "HTTP://{host}/login"}),
		{name: "behind GET /health, one write", conns: func(b *evBuilder) []evConn {
			return []evConn{{reqs: []evReq{b.get("/health"), b.login(wireOpts{})}}}
		}},
		{name: "behind GET /nowhere, one write", conns: func(b *evBuilder) []evConn {
			return []evConn{{reqs: []evReq{b.get("/nowhere"), b.login(wireOpts{})}}}
		}},
		evOne("upper-case /LOGIN", wireOpts{Target: "/LOGIN"}),
		evOne("mixed-case /Login", wireOpts{Target: "/Login"}),
		evOne("mixed-case /lOgIn", wireOpts{Target: "/lOgIn"}),
		evOne("leading CRLF", wireOpts{Prefix: "\r\n"}),
		evOne("leading bare LF", wireOpts{Prefix: "\n"}),
		evOne("two leading CRLFs", wireOpts{Prefix: "\r\n\r\n"}),
		evOne("dot segment /./login", wireOpts{Target: "/./login"}),
		evOne("dot-dot /x/../login", wireOpts{Target: "/x/../login"}),
		evOne("repeated slash //login", wireOpts{Target: "//login"}),
		evOne("repeated slash ///login", wireOpts{Target: "///login"}),
		evOne("param /login;jsessionid=1", wireOpts{Target: "/login;jsessionid=1"}),
		evOne("param /login;", wireOpts{Target: "/login;"}),
		evOne("trailing slash /login/", wireOpts{Target: "/login/"}),
		{name: "request line split at each byte", conns: func(b *evBuilder) []evConn {
			n := len("POST /login HTTP/1.1\r\n")
			var cs []evConn
			for cut := 1; cut <= n; cut++ {
				r := b.login(wireOpts{})
				cs = append(cs, evConn{reqs: []evReq{r}, steps: []evStep{{end: cut}, {end: len(r.wire), pause: true}}})
				b.good = !b.good
			}
			return cs
		}},
		evOne("chunked form", wireOpts{Chunked: true}),
		evOne("chunked json", wireOpts{Chunked: true, JSON: true}),
		evOne("6 KB of headers", wireOpts{Headers: pad}),
		evOne("HTTP/1.0 without Host", wireOpts{Version: "HTTP/1.0", NoHost: true}),
		{name: "100-continue, then a login", conns: func(b *evBuilder) []evConn {
			first := b.login(wireOpts{Headers: []string{"Expect: 100-continue"}})
			b.good = !b.good
			second := b.login(wireOpts{JSON: true})
			h, end := wireHeadEnd(first.wire), len(first.wire)
			return []evConn{{reqs: []evReq{first, second}, steps: []evStep{
				{end: h, interim: true},
				{end: end, answered: 1},
				{end: end + len(second.wire), answered: 2},
			}}}
		}},
	}
	for minor := 2; minor <= 9; minor++ {
		v := "HTTP/1." + strconv.Itoa(minor)
		vs = append(vs, evOne(v, wireOpts{Version: v}))
	}
	vs = append(vs,
		evOne("Content-Length: +N", wireOpts{Framing: lengths("Content-Length: +%d")}),
		evOne("Content-Length:<tab>N", wireOpts{Framing: lengths("Content-Length:\t%d")}),
		evOne("Content-Length :N (space)", wireOpts{Framing: lengths("Content-Length : %d")}),
		// The right password after the decoy: a server that reads the
		// first username answers 401, one that reads the last 200.
		evOneReq("username twice, form", func(b *evBuilder) evReq {
			b.good = true
			_, pass := b.creds()
			return b.ambiguous(wireOpts{Body: "username=mallory&username=alice&password=" + pass}, true)
		}),
		evOneReq("username twice, json", func(b *evBuilder) evReq {
			b.good = true
			_, pass := b.creds()
			return b.ambiguous(wireOpts{JSON: true, Body: `{"username":"mallory","username":"alice","password":"` + pass + `"}`}, true)
		}),
		evOneReq("Content-Length + chunked", func(b *evBuilder) evReq {
			return b.ambiguous(wireOpts{Chunked: true, Framing: lengths("Content-Length: %d", "Transfer-Encoding: chunked")}, false)
		}),
		evOneReq("two equal Content-Lengths", func(b *evBuilder) evReq {
			return b.ambiguous(wireOpts{Framing: func(n int) []string {
				return []string{fmt.Sprintf("Content-Length: %d", n), fmt.Sprintf("Content-Length: %d", n)}
			}}, false)
		}),
		evOneReq("two different Content-Lengths", func(b *evBuilder) evReq {
			return b.ambiguous(wireOpts{Framing: func(n int) []string {
				return []string{fmt.Sprintf("Content-Length: %d", n), "Content-Length: 5"}
			}}, false)
		}),
		evOne("lower-case method post", wireOpts{Method: "post"}),
		evOne("tab after method", wireOpts{Line: "POST\t/login HTTP/1.1"}),
		evOne("two spaces after method", wireOpts{Line: "POST  /login HTTP/1.1"}),
		evOne("tab before version", wireOpts{Line: "POST /login\tHTTP/1.1"}),
		evOne("space after version", wireOpts{Line: "POST /login HTTP/1.1 "}),
		evOne("bare LF line ends", wireOpts{EOL: "\n"}),
	)
	return vs
}

// evSent is one request as sent and answered, with its place.
type evSent struct {
	variant int
	conn    int
	index   int // in its connection
	req     evReq
	ans     evAnswer
	run     *evRun
	spans   []Span
}

func (s *evSent) counted() bool { return s.req.login && s.ans.marked }

func (s *evSent) where(lang string, variants []evVariant) string {
	return fmt.Sprintf("%s server, variant %q, connection %d from %s:%d, request %d %q",
		lang, variants[s.variant].name, s.conn+1, s.run.src, s.run.port, s.index+1, s.req.line)
}

func (a evAnswer) String() string {
	var b strings.Builder
	for _, c := range a.interims {
		fmt.Fprintf(&b, "%d then ", c)
	}
	if a.status == 0 {
		b.WriteString("no answer (" + a.err + ")")
		return b.String()
	}
	b.WriteString(strconv.Itoa(a.status))
	if a.marked {
		b.WriteString(" from the login handler")
	}
	return b.String()
}

// loginOutcome is the auth.result and auth.failure_reason a login span
// must carry for a final status (the design's default mapping).
func loginOutcome(status int) (result, reason string) {
	switch {
	case status >= 200 && status < 300:
		return "success", ""
	case status == 401:
		return "failure", "invalid_credentials"
	case status == 403:
		return "failure", "forbidden"
	case status == 423:
		return "failure", "locked"
	case status == 429:
		return "failure", "rate_limited"
	case status >= 400 && status < 500:
		return "failure", "bad_request"
	case status >= 500 && status < 600:
		return "error", "server_error"
	}
	return "unknown", ""
}

// loginSpanProblems lists how sp differs from the span of a login the
// server answered from its login handler.
func loginSpanProblems(srv *Server, s *evSent, sp Span) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if sp.Name != "auth.login" {
		bad("name %q, want auth.login", sp.Name)
	}
	if got := sp.Attr("http.route"); got != "/login" {
		bad("http.route %q, want /login", got)
	}
	if got, ok := sp.IntAttr("http.response.status_code"); !ok || got != int64(s.ans.status) {
		bad("http.response.status_code %q, want the server's %d", sp.Attr("http.response.status_code"), s.ans.status)
	}
	result, reason := loginOutcome(s.ans.status)
	if got := sp.Attr("auth.result"); got != result {
		bad("auth.result %q, want %q", got, result)
	}
	if got := sp.Attr("auth.failure_reason"); got != reason {
		bad("auth.failure_reason %q, want %q", got, reason)
	}
	if failed := result == "failure" || result == "error"; (sp.StatusCode == "ERROR") != failed {
		bad("span status %q for auth.result %q", sp.StatusCode, result)
	}
	for _, attr := range []string{"client.address", "network.peer.address"} {
		if got := sp.Attr(attr); got != s.run.src {
			bad("%s %q, want %q", attr, got, s.run.src)
		}
	}
	if got, _ := sp.IntAttr("network.peer.port"); got != int64(s.run.port) {
		bad("network.peer.port %q, want %d", sp.Attr("network.peer.port"), s.run.port)
	}
	if sp.TraceID != s.req.tp.TraceID || sp.ParentSpanID != s.req.tp.SpanID {
		bad("trace %s parent %q, want the caller's %s parent %s", sp.TraceID, sp.ParentSpanID, s.req.tp.TraceID, s.req.tp.SpanID)
	}
	if got := sp.ResourceAttr("process.pid"); got != strconv.Itoa(srv.PID) {
		bad("resource process.pid %q, want %d", got, srv.PID)
	}
	switch {
	case s.req.ambiguous && sp.Attr(evAmbiguousAttr) == "":
		bad("no %s", evAmbiguousAttr)
	case !s.req.ambiguous && !s.req.mayBeAmbiguous && sp.HasAttr(evAmbiguousAttr):
		bad("%s %q on an unambiguous request", evAmbiguousAttr, sp.Attr(evAmbiguousAttr))
	}
	if s.req.noUser && sp.HasAttr("auth.username") {
		bad("auth.username %q on a request whose username servers read differently", sp.Attr("auth.username"))
	}
	if s.ans.noUser && sp.HasAttr("auth.username") {
		bad("auth.username %q, but the login handler read no username", sp.Attr("auth.username"))
	}
	if s.req.user != "" && !s.ans.noUser && sp.Attr("auth.username") != s.req.user {
		bad("auth.username %q, want %q", sp.Attr("auth.username"), s.req.user)
	}
	return p
}

// claimsLogin: sp, the span of a request the server did not answer from
// its login handler, reports a login outcome it did not have. A span that
// records what the server did answer (a 404 matched by an over-eager
// normalisation) claims nothing.
func claimsLogin(s *evSent, sp Span) string {
	status, _ := sp.IntAttr("http.response.status_code")
	switch {
	case s.ans.status != 0 && status != int64(s.ans.status):
		return fmt.Sprintf("status %s, but the server answered %d", sp.Attr("http.response.status_code"), s.ans.status)
	case sp.Attr("auth.result") == "success":
		return "auth.result success"
	case sp.Attr("auth.failure_reason") == "invalid_credentials":
		return "auth.failure_reason invalid_credentials"
	}
	return ""
}

// evCell is one server's result for one variant.
type evCell struct {
	logins, counted, ok, claimed, stray int
	statuses                            []string // of login requests not counted
	countedStatuses                     []string
	// notes say why a login request got no answer.
	notes []string
}

func addOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// String: "L200 ok" (answered from the login handler, right span),
// "L401 MISS" (no or wrong span), "404" (refused: no claim), "301 CLAIM"
// (refused, but a span claims a login result); counts when a variant has
// several login requests.
func (c evCell) String() string {
	var b strings.Builder
	switch {
	case c.counted == c.logins:
		b.WriteString("L" + strings.Join(c.countedStatuses, ","))
	case c.counted == 0:
		b.WriteString(strings.Join(c.statuses, ","))
	default:
		fmt.Fprintf(&b, "L%d/%d %s", c.counted, c.logins, strings.Join(c.statuses, ","))
	}
	switch {
	case c.counted == 0:
	case c.ok == c.counted && c.logins == 1:
		b.WriteString(" ok")
	case c.ok == c.counted:
		fmt.Fprintf(&b, " ok %d", c.ok)
	case c.logins == 1:
		b.WriteString(" MISS")
	default:
		fmt.Fprintf(&b, " MISS %d", c.counted-c.ok)
	}
	if c.claimed > 0 {
		b.WriteString(" CLAIM")
	}
	if c.stray > 0 {
		b.WriteString(" +SPAN")
	}
	return b.String()
}

// TestEvasionMatrix runs every variant against every server, one agent per
// server, and prints the matrix of what each server answered from its
// login handler and whether the agent made the right span of it.
func TestEvasionMatrix(t *testing.T) {
	testutil.MustRoot(t)
	start := time.Now()
	variants := evasionVariants()
	cols := make([][]evCell, len(evasionServers))
	// The matrix is printed once every server's subtest is done.
	t.Cleanup(func() { t.Log("\n" + evMatrix(variants, cols, time.Since(start))) })
	for si, lang := range evasionServers {
		t.Run(lang, func(t *testing.T) {
			// Each server has its own agent, PID scope and client
			// addresses (127.<20+server>.x.y), so they run side by side.
			t.Parallel()
			cols[si] = runEvasion(t, si, lang, variants)
		})
	}
}

// evMatrix renders the matrix; a nil column is a server whose subtest
// stopped early.
func evMatrix(variants []evVariant, cols [][]evCell, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "evasion matrix (%v): L<status> = answered from the login handler; ok = one right span; "+
		"MISS = no span or a wrong one; CLAIM = a refused request got a span claiming a login result; +SPAN = a span for a non-auth request\n", took.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "%-34s", "variant")
	for si, lang := range evasionServers {
		if cols[si] != nil {
			fmt.Fprintf(&b, "%-18s", lang)
		}
	}
	b.WriteString("\n")
	for vi, v := range variants {
		fmt.Fprintf(&b, "%-34s", v.name)
		for si := range evasionServers {
			if cols[si] != nil {
				fmt.Fprintf(&b, "%-18s", cols[si][vi])
			}
		}
		b.WriteString("\n")
	}
	for si, lang := range evasionServers {
		if cols[si] == nil {
			continue
		}
		counted, ok := 0, 0
		var missed []string
		for vi, c := range cols[si] {
			counted += c.counted
			ok += c.ok
			if c.ok < c.counted || c.claimed > 0 || c.stray > 0 {
				missed = append(missed, variants[vi].name)
			}
		}
		fmt.Fprintf(&b, "%s: %d login requests answered from the login handler, %d with the right span; wrong on: %s\n",
			lang, counted, ok, strings.Join(missed, "; "))
		for vi, c := range cols[si] {
			for _, n := range c.notes {
				fmt.Fprintf(&b, "  %s, %q: %s\n", lang, variants[vi].name, n)
			}
		}
	}
	return b.String()
}

// runEvasion plays every variant against one server under one agent and
// checks the spans; it returns the server's column of the matrix.
func runEvasion(t *testing.T, si int, lang string, variants []evVariant) []evCell {
	t0 := time.Now()
	srv := mustStartServerBeforeAgent(t, lang)
	mustWarmUp(t, srv)
	t1 := time.Now()
	ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
	t2 := time.Now()

	var sent []*evSent
	byTrace := map[string]*evSent{}
	byAddr := map[string][]*evSent{} // client address → its requests
	for vi, v := range variants {
		b := &evBuilder{tb: t, host: srv.Addr, good: vi%2 == 0}
		for ci, c := range v.conns(b) {
			src := fmt.Sprintf("127.%d.%d.%d", 20+si, vi+1, ci+1)
			run, err := runEvConn(srv.Addr, src, c)
			if err != nil {
				t.Fatalf("%s server, variant %q, connection %d: %v", lang, v.name, ci+1, err)
			}
			r := &run
			for i, req := range c.reqs {
				s := &evSent{variant: vi, conn: ci, index: i, req: req, ans: r.answers[i], run: r}
				sent = append(sent, s)
				byTrace[req.tp.TraceID] = s
				byAddr[src] = append(byAddr[src], s)
				if !req.login && s.ans.marked {
					t.Errorf("%s: a non-login request was answered by the login handler", s.where(lang, variants))
				}
			}
		}
	}
	for _, s := range sent {
		if s.variant < 2 && !s.counted() {
			t.Fatalf("%s: control login answered %s, not from the login handler: the server or the harness is broken", s.where(lang, variants), s.ans)
		}
	}

	want := 0
	for _, s := range sent {
		if s.counted() {
			want++
		}
	}
	t3 := time.Now()
	spans := waitSpansQuiet(t, ag, want)
	ag.Stop(t)
	spans = ag.Spans(t) // with what was flushed on the way out
	t.Logf("%s: server up in %v, agent ready in %v, %d requests sent and answered in %v, %d spans (%d expected) collected in %v",
		lang, t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), len(sent),
		t3.Sub(t2).Round(time.Millisecond), len(spans), want, time.Since(t3).Round(time.Millisecond))

	// Each span to its request: by the caller's trace, else by the client
	// address when that connection sent one login request.
	var stray []Span
	for _, sp := range spans {
		if s, ok := byTrace[sp.TraceID]; ok {
			s.spans = append(s.spans, sp)
			continue
		}
		var logins []*evSent
		for _, s := range byAddr[sp.Attr("client.address")] {
			if s.req.login {
				logins = append(logins, s)
			}
		}
		if len(logins) == 1 {
			logins[0].spans = append(logins[0].spans, sp)
			continue
		}
		stray = append(stray, sp)
	}
	for _, sp := range stray {
		t.Errorf("%s server: span from no request of the matrix: %s", lang, sp)
	}

	cells := make([]evCell, len(variants))
	for _, s := range sent {
		c := &cells[s.variant]
		where := s.where(lang, variants)
		if !s.req.login {
			if len(s.spans) > 0 {
				c.stray++
				t.Errorf("%s: non-auth request (answered %s) got %d span(s): %s", where, s.ans, len(s.spans), s.spans[0])
			}
			continue
		}
		c.logins++
		if !s.counted() {
			c.statuses = addOnce(c.statuses, statusText(s.ans))
			if s.ans.status == 0 {
				c.notes = addOnce(c.notes, s.ans.err)
			}
			for _, sp := range s.spans {
				if why := claimsLogin(s, sp); why != "" {
					c.claimed++
					t.Errorf("%s: answered %s, not from the login handler, yet a span claims a login result (%s): %s", where, s.ans, why, sp)
				}
			}
			continue
		}
		c.counted++
		c.countedStatuses = addOnce(c.countedStatuses, strconv.Itoa(s.ans.status))
		switch len(s.spans) {
		case 0:
			t.Errorf("%s: answered %s, but no span", where, s.ans)
		case 1:
			if p := loginSpanProblems(srv, s, s.spans[0]); len(p) > 0 {
				t.Errorf("%s: answered %s, but its span is wrong: %s\n  span: %s", where, s.ans, strings.Join(p, "; "), s.spans[0].Raw)
			} else {
				c.ok++
			}
		default:
			t.Errorf("%s: answered %s, but %d spans:\n%s", where, s.ans, len(s.spans), describeSpans(s.spans))
		}
	}
	return cells
}

// mustWarmUp sends a login and a health check before the agent runs: a
// cold JVM takes seconds over its first request, and the marker must be on
// the login handler's answers only.
func mustWarmUp(tb testing.TB, srv *Server) {
	tb.Helper()
	c := mustClient(tb, "127.0.0.1")
	if r := mustDo(tb, c, srv, formLogin("alice", "not-her-password")); r.Status != 401 || r.Header.Get(loginMarker) != "1" {
		tb.Fatalf("%s server: warm-up login answered %d, %s %q; want 401 from the login handler", srv.Lang, r.Status, loginMarker, r.Header.Get(loginMarker))
	}
	if r := mustDo(tb, c, srv, get("/health")); r.Status != 200 || r.Header.Get(loginMarker) != "" {
		tb.Fatalf("%s server: warm-up GET /health answered %d, %s %q; want 200 without the marker", srv.Lang, r.Status, loginMarker, r.Header.Get(loginMarker))
	}
	c.CloseIdleConnections()
}

func statusText(a evAnswer) string {
	if a.status == 0 {
		if strings.Contains(a.err, "EOF") || strings.Contains(a.err, "reset") {
			return "closed"
		}
		return "none"
	}
	return strconv.Itoa(a.status)
}

// waitSpansQuiet waits until the agent printed want spans (then lets
// stragglers in for spanSettle), or until evQuiet passed with no new one,
// at most evSpanCap: spans the agent missed never come, and the matrix
// reports them rather than failing on a timeout.
func waitSpansQuiet(tb testing.TB, ag *Agent, want int) []Span {
	tb.Helper()
	// Under emulation (a kernel-matrix guest) the agent may fall seconds
	// behind a burst; stretch both waits there.
	quiet, deadline := testutil.Patience(evQuiet), time.Now().Add(testutil.Patience(evSpanCap))
	last, lastChange := -1, time.Now()
	for {
		spans := ag.Spans(tb)
		if len(spans) >= want {
			time.Sleep(spanSettle)
			return ag.Spans(tb)
		}
		if len(spans) != last {
			last, lastChange = len(spans), time.Now()
		}
		if time.Since(lastChange) > quiet || time.Now().After(deadline) {
			return spans
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServersMarkLogin (no agent): every server of the matrix and the
// bursts marks the answers of its login handler, whatever they are, and
// no other answer; the matrix rests on it.
func TestServersMarkLogin(t *testing.T) {
	for _, lang := range append(slices.Clone(evasionServers), "node") {
		t.Run(lang, func(t *testing.T) {
			srv := mustStartServer(t, lang)
			c := mustClient(t, srcGo)
			malformed := Request{Method: "POST", Path: "/login", Body: `{"username":`, Header: map[string]string{"Content-Type": "application/json"}}
			for _, tc := range []struct {
				name   string
				req    Request
				status int
				marked bool
			}{
				{"form ok", formLogin("alice", "correct-horse"), 200, true},
				{"json wrong password", jsonLogin("bob", "wrong"), 401, true},
				{"locked", formLogin("locked-user", "x"), 423, true},
				{"rate limited", jsonLogin("ratelimited", "x"), 429, true},
				{"malformed json", malformed, 400, true},
				{"wrong method", get("/login"), 405, false},
				{"health", get("/health"), 200, false},
				{"not found", get("/nowhere"), 404, false},
			} {
				got := mustDo(t, c, srv, tc.req)
				if got.Status != tc.status || (got.Header.Get(loginMarker) != "") != tc.marked {
					t.Errorf("%s: %d with %s %q, want %d marked %v (body %q)", tc.name, got.Status, loginMarker, got.Header.Get(loginMarker), tc.status, tc.marked, got.Body)
				}
				if tc.status == 200 && tc.marked && got.Cookie("session") == "" {
					t.Errorf("%s: no session cookie", tc.name)
				}
			}
		})
	}
}
