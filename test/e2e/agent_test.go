package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// agentLangs are the servers the agent tests run against.
var agentLangs = []string{"python", "node"}

// More client source addresses (see servers_test.go for the first ones).
const (
	srcSplit    = "127.0.0.5"
	srcBefore   = "127.0.0.6" // connected and used before the agent started
	srcIdle     = "127.0.0.7" // connected, idle, before the agent started
	srcLatePipe = "127.0.0.12"
	spanWait    = 15 * time.Second
	clockSlack  = time.Minute
)

// forEachLang runs f as a subtest per agent language, as root only.
func forEachLang(t *testing.T, f func(t *testing.T, lang string)) {
	t.Helper()
	for _, lang := range agentLangs {
		t.Run(lang, func(t *testing.T) {
			testutil.MustRoot(t)
			f(t, lang)
		})
	}
}

// spanWant is what one span must say.
type spanWant struct {
	name   string
	method string // http.request.method
	path   string // url.path
	status int    // http.response.status_code
	result string // auth.result
	reason string // auth.failure_reason; "" means none
	client string // client.address and network.peer.address
	// parent is the traceparent sent; nil: the span must start a trace.
	parent *TraceParent
	// peerPort, when set, is network.peer.port (the client's port).
	peerPort int
	// username, when set, is auth.username (tests configure privacy plain).
	username string
	// authMethod, when set, is auth.method.
	authMethod string
}

func isHex(s string, n int) bool {
	if len(s) != n || strings.Trim(s, "0") == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func checkSpan(t *testing.T, srv *Server, sp Span, w spanWant) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("span %s: %s\n  raw: %s", sp, fmt.Sprintf(format, args...), sp.Raw)
	}
	if sp.Name != w.name {
		fail("name %q, want %q", sp.Name, w.name)
	}
	if !strings.Contains(strings.ToLower(string(sp.Kind)), "server") {
		fail("kind %q, want server", sp.Kind)
	}
	if got, ok := sp.IntAttr("http.response.status_code"); !ok || got != int64(w.status) {
		fail("http.response.status_code %q, want %d", sp.Attr("http.response.status_code"), w.status)
	}
	if w.method != "" && sp.Attr("http.request.method") != w.method {
		fail("http.request.method %q, want %q", sp.Attr("http.request.method"), w.method)
	}
	if w.path != "" && sp.Attr("url.path") != w.path {
		fail("url.path %q, want %q", sp.Attr("url.path"), w.path)
	}
	if got := sp.Attr("auth.result"); got != w.result {
		fail("auth.result %q, want %q", got, w.result)
	}
	if got := sp.Attr("auth.failure_reason"); got != w.reason {
		fail("auth.failure_reason %q, want %q", got, w.reason)
	}
	failed := w.result == "failure" || w.result == "error"
	if (sp.StatusCode == "ERROR") != failed {
		fail("status_code %q for auth.result %q", sp.StatusCode, w.result)
	}
	for _, attr := range []string{"client.address", "network.peer.address"} {
		if got := sp.Attr(attr); got != w.client {
			fail("%s %q, want %q", attr, got, w.client)
		}
	}
	if w.peerPort != 0 {
		if got, _ := sp.IntAttr("network.peer.port"); got != int64(w.peerPort) {
			fail("network.peer.port %q, want %d", sp.Attr("network.peer.port"), w.peerPort)
		}
	}
	if w.username != "" && sp.Attr("auth.username") != w.username {
		fail("auth.username %q, want %q", sp.Attr("auth.username"), w.username)
	}
	if w.authMethod != "" && sp.Attr("auth.method") != w.authMethod {
		fail("auth.method %q, want %q", sp.Attr("auth.method"), w.authMethod)
	}

	if !isHex(sp.SpanID, 16) {
		fail("span_id %q is not 16 hex digits", sp.SpanID)
	}
	if w.parent != nil {
		if sp.TraceID != w.parent.TraceID || sp.ParentSpanID != w.parent.SpanID {
			fail("trace %s parent %q, want the caller's %s parent %s", sp.TraceID, sp.ParentSpanID, w.parent.TraceID, w.parent.SpanID)
		}
		if sp.SpanID == w.parent.SpanID {
			fail("span_id repeats the caller's span id")
		}
	} else {
		if !isHex(sp.TraceID, 32) {
			fail("trace_id %q is not 32 hex digits", sp.TraceID)
		}
		if sp.ParentSpanID != "" {
			fail("parent_span_id %q without a traceparent", sp.ParentSpanID)
		}
	}

	now := time.Now()
	if sp.Start().Before(now.Add(-clockSlack)) || sp.Start().After(now.Add(clockSlack)) {
		fail("start %v is not near now (%v): kernel time not converted?", sp.Start(), now)
	}
	if sp.End().Before(sp.Start()) {
		fail("ends %v before it starts %v", sp.End(), sp.Start())
	}
	if got := sp.ResourceAttr("process.pid"); got != strconv.Itoa(srv.PID) {
		fail("resource process.pid %q, want %d", got, srv.PID)
	}
}

// indexSpans maps spans by key, failing on two spans with one key.
func indexSpans(t *testing.T, spans []Span, key func(Span) string) map[string]Span {
	t.Helper()
	m := make(map[string]Span, len(spans))
	for _, sp := range spans {
		k := key(sp)
		if prev, dup := m[k]; dup {
			t.Fatalf("two spans for %q:\n  %s\n  %s", k, prev, sp)
		}
		m[k] = sp
	}
	return m
}

func byNameStatus(sp Span) string {
	return sp.Name + " " + sp.Attr("http.response.status_code")
}

func sortByStart(spans []Span) {
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartTimeUnixNano < spans[j].StartTimeUnixNano })
}

func mustStatus(t *testing.T, what string, got Response, want int) {
	t.Helper()
	if got.Status != want {
		t.Fatalf("%s: status %d, want %d (body %q)", what, got.Status, want, got.Body)
	}
}

// mustDoOnConn is mustDo that also tells which connection carried the
// request.
func mustDoOnConn(tb testing.TB, c *http.Client, srv *Server, req Request) (Response, httptrace.GotConnInfo) {
	tb.Helper()
	var info httptrace.GotConnInfo
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { info = i },
	})
	hr, err := http.NewRequestWithContext(ctx, req.Method, srv.URL(req.Path), strings.NewReader(req.Body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range req.Header {
		hr.Header.Set(k, v)
	}
	resp, err := c.Do(hr)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, info
}

// TestLoginSpans: form and JSON logins, succeeding and failing, from two
// clients at two addresses, with and without a caller trace, each become
// one auth.login span that says what happened.
func TestLoginSpans(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

		type loginCase struct {
			name       string
			curl       bool // else the Go client
			req        Request
			user       string
			traced     bool
			wantStatus int
			wantResult string
			wantReason string
		}
		cases := []loginCase{
			{name: "form ok traced", req: formLogin("alice", "correct-horse"), user: "alice", traced: true, wantStatus: 200, wantResult: "success"},
			{name: "json bad password", req: jsonLogin("alice", "not-her-password"), user: "alice", wantStatus: 401, wantResult: "failure", wantReason: "invalid_credentials"},
			{name: "form locked traced", req: formLogin("locked-user", "whatever"), user: "locked-user", traced: true, wantStatus: 423, wantResult: "failure", wantReason: "locked"},
			{name: "curl json ok", curl: true, req: jsonLogin("bob", "hunter2"), user: "bob", wantStatus: 200, wantResult: "success"},
			{name: "curl form bad password traced", curl: true, req: formLogin("bob", "not-his-password"), user: "bob", traced: true, wantStatus: 401, wantResult: "failure", wantReason: "invalid_credentials"},
			{name: "curl json rate limited", curl: true, req: jsonLogin("ratelimited", "whatever"), user: "ratelimited", wantStatus: 429, wantResult: "failure", wantReason: "rate_limited"},
		}

		client := mustClient(t, srcGo)
		wants := map[string]spanWant{}
		sent := map[string]bool{}
		for _, c := range cases {
			w := spanWant{
				name: "auth.login", method: "POST", path: "/login", status: c.wantStatus,
				result: c.wantResult, reason: c.wantReason, username: c.user, authMethod: "password",
				client: srcGo,
			}
			req := c.req
			if c.traced {
				tp := newTraceParent(t)
				w.parent = &tp
				sent[tp.TraceID] = true
				req = req.With("traceparent", tp.String())
			}
			var got Response
			if c.curl {
				w.client = srcCurl
				got = curlDo(t, srcCurl, srv, req)
			} else {
				got = mustDo(t, client, srv, req)
			}
			mustStatus(t, c.name, got, c.wantStatus)
			wants[fmt.Sprintf("%s %d", w.client, w.status)] = w
		}

		spans := ag.ExpectSpans(t, len(cases), spanWait)
		byKey := indexSpans(t, spans, func(sp Span) string {
			return sp.Attr("client.address") + " " + sp.Attr("http.response.status_code")
		})
		newTraces := map[string]bool{}
		for key, w := range wants {
			sp, ok := byKey[key]
			if !ok {
				t.Errorf("no span for %s (%d from %s):\n%s", key, w.status, w.client, describeSpans(spans))
				continue
			}
			checkSpan(t, srv, sp, w)
			if w.parent == nil {
				if sent[sp.TraceID] || newTraces[sp.TraceID] {
					t.Errorf("span %s reuses trace %s; want a new trace", sp, sp.TraceID)
				}
				newTraces[sp.TraceID] = true
			}
		}
	})
}

// TestKeepAliveAndPipelining: requests that share a connection, one after
// another or all written at once, each get their own span paired with
// their own response; non-auth requests between them get none.
func TestKeepAliveAndPipelining(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
		token := testutil.MakeJWT("alice", "user")

		// Keep-alive: one connection, requests in turn.
		client := mustClient(t, srcGo)
		seq := []struct {
			req    Request
			status int
		}{
			{formLogin("alice", "correct-horse"), 200},
			{get("/health"), 200},
			{jsonLogin("alice", "wrong"), 401},
			{bearer("/api/orders", token), 200},
			{formLogin("locked-user", "x"), 423},
		}
		var port int
		for i, s := range seq {
			got, info := mustDoOnConn(t, client, srv, s.req)
			mustStatus(t, s.req.Method+" "+s.req.Path, got, s.status)
			p := info.Conn.LocalAddr().(*net.TCPAddr).Port
			if i == 0 {
				port = p
			} else if !info.Reused || p != port {
				t.Fatalf("request %d did not reuse the connection", i+1)
			}
		}

		// Pipelining: one write carries six requests.
		raw := rawConn(t, srcRaw, srv.Addr)
		raw.Send(t,
			formLogin("alice", "correct-horse"),
			get("/health"),
			jsonLogin("bob", "wrong"),
			bearer("/api/admin/users", token),
			Request{Method: http.MethodPost, Path: "/logout"},
			get("/basic").With("Authorization", basicAuth("alice", "correct-horse")),
		)
		var statuses []int
		for _, r := range raw.ReadResponses(t, 6) {
			statuses = append(statuses, r.Status)
		}
		if fmt.Sprint(statuses) != "[200 200 401 403 204 200]" {
			t.Fatalf("pipelined statuses %v", statuses)
		}

		// A batch that starts with a login and has non-auth requests
		// between logins: the non-auth ones give no span, the last login
		// does. (A batch that *starts* with a non-auth request is not seen:
		// the kernel filter judges each read by its first request — see
		// README, Limits.)
		late := rawConn(t, srcLatePipe, srv.Addr)
		late.Send(t, formLogin("bob", "wrong"), get("/health"), get("/public/a"), formLogin("bob", "hunter2"))
		if got := late.ReadResponses(t, 4); got[0].Status != 401 || got[3].Status != 200 {
			t.Fatalf("late pipelined logins: statuses %d, %d", got[0].Status, got[3].Status)
		}

		spans := ag.ExpectSpans(t, 4+5+2, spanWait)
		var keepAlive, pipelined, latePipelined []Span
		for _, sp := range spans {
			switch sp.Attr("client.address") {
			case srcGo:
				keepAlive = append(keepAlive, sp)
			case srcRaw:
				pipelined = append(pipelined, sp)
			case srcLatePipe:
				latePipelined = append(latePipelined, sp)
			default:
				t.Errorf("span from unexpected client: %s", sp)
			}
		}

		ka := indexSpans(t, keepAlive, byNameStatus)
		login := spanWant{name: "auth.login", method: "POST", path: "/login", client: srcGo, peerPort: port}
		for key, w := range map[string]spanWant{
			"auth.login 200":     with(login, 200, "success", ""),
			"auth.login 401":     with(login, 401, "failure", "invalid_credentials"),
			"auth.login 423":     with(login, 423, "failure", "locked"),
			"auth.authorize 200": {name: "auth.authorize", method: "GET", path: "/api/orders", status: 200, result: "success", client: srcGo, peerPort: port, authMethod: "bearer"},
		} {
			if sp, ok := ka[key]; !ok {
				t.Errorf("keep-alive: no %s span:\n%s", key, describeSpans(keepAlive))
			} else {
				checkSpan(t, srv, sp, w)
			}
		}
		// In request order, too.
		sortByStart(keepAlive)
		var order []string
		for _, sp := range keepAlive {
			order = append(order, byNameStatus(sp))
		}
		if got := strings.Join(order, ", "); got != "auth.login 200, auth.login 401, auth.authorize 200, auth.login 423" {
			t.Errorf("keep-alive spans by start time: %s", got)
		}

		pp := raw.LocalAddr().Port()
		pl := indexSpans(t, pipelined, byNameStatus)
		plogin := spanWant{name: "auth.login", method: "POST", path: "/login", client: srcRaw, peerPort: int(pp)}
		for key, w := range map[string]spanWant{
			"auth.login 200":     with(plogin, 200, "success", ""),
			"auth.login 401":     with(plogin, 401, "failure", "invalid_credentials"),
			"auth.authorize 403": {name: "auth.authorize", method: "GET", path: "/api/admin/users", status: 403, result: "failure", reason: "forbidden", client: srcRaw, peerPort: int(pp)},
			"auth.logout 204":    {name: "auth.logout", method: "POST", path: "/logout", status: 204, result: "success", client: srcRaw, peerPort: int(pp)},
			"auth.basic 200":     {name: "auth.basic", method: "GET", path: "/basic", status: 200, result: "success", client: srcRaw, peerPort: int(pp), authMethod: "basic"},
		} {
			if sp, ok := pl[key]; !ok {
				t.Errorf("pipelined: no %s span:\n%s", key, describeSpans(pipelined))
			} else {
				checkSpan(t, srv, sp, w)
			}
		}
		if len(latePipelined) != 2 {
			t.Errorf("logins pipelined around non-auth requests: want 2 spans, got %d:\n%s", len(latePipelined), describeSpans(latePipelined))
		} else {
			sortByStart(latePipelined)
			latePort := int(late.LocalAddr().Port())
			checkSpan(t, srv, latePipelined[0], spanWant{
				name: "auth.login", method: "POST", path: "/login", status: 401, result: "failure",
				reason: "invalid_credentials", client: srcLatePipe, peerPort: latePort, username: "bob",
			})
			checkSpan(t, srv, latePipelined[1], spanWant{
				name: "auth.login", method: "POST", path: "/login", status: 200, result: "success",
				client: srcLatePipe, peerPort: latePort, username: "bob",
			})
		}
	})
}

func with(w spanWant, status int, result, reason string) spanWant {
	w.status, w.result, w.reason = status, result, reason
	return w
}

// TestSplitBody: a request whose line, headers and body arrive in several
// segments (and a chunked one) is reassembled before it is judged: the
// username from the body proves the whole body was seen. Each case has its
// own connection and source address, so one lost case does not hide the
// others.
func TestSplitBody(t *testing.T) {
	headEnd := func(b []byte) int { return strings.Index(string(b), "\r\n\r\n") + 4 }
	chunked := func(user, pass string) ([]byte, []int) {
		req := formLogin(user, pass).With("Transfer-Encoding", "chunked")
		first, second := req.Body[:9], req.Body[9:]
		req.Body = hexLen(first) + "\r\n" + first + "\r\n" + hexLen(second) + "\r\n" + second + "\r\n0\r\n\r\n"
		wire := req.Wire("127.0.0.1")
		h := headEnd(wire)
		// Head, first chunk, the rest.
		return wire, []int{h, h + len(hexLen(first)) + 2 + len(first) + 2}
	}
	type splitCase struct {
		name string
		src  string
		// wire and where to cut it.
		wire   []byte
		cuts   func(wire []byte) []int
		user   string
		status int
		result string
		reason string
	}
	chunkedWire, chunkedCuts := chunked("bob", "hunter2")
	cases := []splitCase{
		{
			name: "body in three", src: srcSplit, wire: formLogin("alice", "correct-horse").Wire("127.0.0.1"),
			cuts: func(w []byte) []int { h := headEnd(w); return []int{h, h + 4, h + 15} },
			user: "alice", status: 200, result: "success",
		},
		{
			name: "headers cut, json body apart", src: "127.0.0.8", wire: jsonLogin("alice", "wrong-password").Wire("127.0.0.1"),
			cuts: func(w []byte) []int { h := headEnd(w); return []int{h - 12, h, h + len(`{"password":"wrong`)} },
			user: "alice", status: 401, result: "failure", reason: "invalid_credentials",
		},
		{
			name: "blank line cut", src: "127.0.0.9", wire: formLogin("bob", "wrong").Wire("127.0.0.1"),
			cuts: func(w []byte) []int { h := headEnd(w); return []int{h - 2, h + 3} },
			user: "bob", status: 401, result: "failure", reason: "invalid_credentials",
		},
		{
			name: "request line cut", src: "127.0.0.10", wire: formLogin("alice", "correct-horse").Wire("127.0.0.1"),
			cuts: func(w []byte) []int { h := headEnd(w); return []int{6, h, h + 9} },
			user: "alice", status: 200, result: "success",
		},
		{
			name: "chunked", src: "127.0.0.11", wire: chunkedWire,
			cuts: func([]byte) []int { return chunkedCuts },
			user: "bob", status: 200, result: "success",
		},
	}
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

		wants := map[string]spanWant{}
		for _, c := range cases {
			conn := rawConn(t, c.src, srv.Addr)
			conn.WriteSplit(t, c.wire, c.cuts(c.wire)...)
			mustStatus(t, c.name, conn.ReadResponses(t, 1)[0], c.status)
			wants[c.src] = spanWant{
				name: "auth.login", method: "POST", path: "/login", status: c.status, result: c.result,
				reason: c.reason, client: c.src, peerPort: int(conn.LocalAddr().Port()),
				username: c.user, authMethod: "password",
			}
		}

		spans := ag.ExpectSpans(t, len(cases), spanWait)
		byClient := indexSpans(t, spans, func(sp Span) string { return sp.Attr("client.address") })
		for _, c := range cases {
			sp, ok := byClient[c.src]
			if !ok {
				t.Errorf("%s: no span from %s", c.name, c.src)
				continue
			}
			checkSpan(t, srv, sp, wants[c.src])
		}
	})
}

// TestPreexistingConnection: connections accepted before the agent started
// (one already used, one idle) are followed once it runs, from the first
// request on: a server thread may have been blocked reading them since
// before the programs were attached.
func TestPreexistingConnection(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		used := rawConn(t, srcBefore, srv.Addr)
		used.Send(t, get("/health"))
		mustStatus(t, "health before agent", used.ReadResponses(t, 1)[0], 200)
		idle := rawConn(t, srcIdle, srv.Addr)
		// Let the server accept the idle one too.
		time.Sleep(200 * time.Millisecond)

		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

		base := spanWant{name: "auth.login", method: "POST", path: "/login", authMethod: "password"}
		wants := map[string]spanWant{}
		for _, step := range []struct {
			conn   *RawConn
			src    string
			req    Request
			user   string
			status int
			result string
			reason string
		}{
			{used, srcBefore, formLogin("alice", "correct-horse"), "alice", 200, "success", ""},
			{idle, srcIdle, jsonLogin("bob", "wrong"), "bob", 401, "failure", "invalid_credentials"},
			// Second requests: the connections stay followed.
			{used, srcBefore, jsonLogin("alice", "wrong"), "alice", 401, "failure", "invalid_credentials"},
			{idle, srcIdle, formLogin("bob", "hunter2"), "bob", 200, "success", ""},
		} {
			step.conn.Send(t, step.req)
			mustStatus(t, step.src+" login", step.conn.ReadResponses(t, 1)[0], step.status)
			w := with(base, step.status, step.result, step.reason)
			w.client, w.peerPort, w.username = step.src, int(step.conn.LocalAddr().Port()), step.user
			wants[fmt.Sprintf("%s %d", step.src, step.status)] = w
		}

		spans := ag.ExpectSpans(t, len(wants), spanWait)
		byKey := indexSpans(t, spans, func(sp Span) string {
			return sp.Attr("client.address") + " " + sp.Attr("http.response.status_code")
		})
		for key, w := range wants {
			sp, ok := byKey[key]
			if !ok {
				t.Errorf("no span for %s:\n%s", key, describeSpans(spans))
				continue
			}
			checkSpan(t, srv, sp, w)
		}
	})
}

// TestNoSpansForNonAuthRoutes: traffic outside the configured routes
// (other paths, a configured path with another method, look-alike
// prefixes) makes no span; a login sent last proves spans do flow.
func TestNoSpansForNonAuthRoutes(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

		nonAuth := []struct {
			req    Request
			status int
		}{
			{get("/health"), 200},
			{get("/public/index.html"), 200},
			{formRequest(http.MethodPost, "/public/form", "username", "alice", "password", "correct-horse"), 200},
			{get("/nowhere"), 404},
			{get("/login"), 405}, // route is POST /login
			{get("/apix"), 404},  // not under /api/
			{get("/logout"), 405},
			{get("/loginx"), 404},
		}
		client := mustClient(t, srcGo)
		for _, n := range nonAuth {
			mustStatus(t, n.req.Method+" "+n.req.Path, mustDo(t, client, srv, n.req), n.status)
		}
		raw := rawConn(t, srcRaw, srv.Addr)
		var reqs []Request
		for _, n := range nonAuth {
			reqs = append(reqs, n.req)
		}
		raw.Send(t, reqs...)
		for i, got := range raw.ReadResponses(t, len(reqs)) {
			mustStatus(t, "pipelined "+reqs[i].Path, got, nonAuth[i].status)
		}

		// The sentinel.
		mustStatus(t, "login", mustDo(t, client, srv, formLogin("alice", "wrong")), 401)
		spans := ag.ExpectSpans(t, 1, spanWait)
		checkSpan(t, srv, spans[0], spanWant{
			name: "auth.login", method: "POST", path: "/login", status: 401, result: "failure",
			reason: "invalid_credentials", client: srcGo, username: "alice",
		})
	})
}

// TestPasswordNeverLeaks sends passwords, client secrets, codes, tokens and
// cookies every way the servers take them, and searches everything the
// agent printed or served for each of them.
func TestPasswordNeverLeaks(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})
		secret := func(prefix string) string { return prefix + "-" + randomHex(t, 8) }
		pwForm, pwJSON, pwBasic, pwOAuth, pwCurl, pwPublic := secret("pwform"), secret("pwjson"), secret("pwbasic"), secret("pwoauth"), secret("pwcurl"), secret("pwpublic")
		pwSpecial := "p@ss w0rd&x=" + randomHex(t, 6) + "+%"
		ccSecret := secret("ccsecret")

		client := mustClient(t, srcGo)
		type step struct {
			req    Request
			status int
		}
		field := func(r Response, key string) string { v, _ := r.JSON()[key].(string); return v }
		do := func(s step) Response {
			t.Helper()
			got := mustDo(t, client, srv, s.req)
			mustStatus(t, s.req.Method+" "+s.req.Path, got, s.status)
			return got
		}

		do(step{req: formLogin("alice", pwForm), status: 401})
		do(step{req: jsonLogin("alice", pwJSON), status: 401})
		ok := do(step{req: jsonLogin("alice", "correct-horse"), status: 200})
		loginToken, session := field(ok, "token"), ok.Cookie("session")
		if loginToken == "" || session == "" {
			t.Fatalf("login gave token %t, session %t", loginToken != "", session != "")
		}
		do(step{req: formLogin("alice", pwSpecial), status: 401})
		do(step{req: get("/basic").With("Authorization", basicAuth("alice", pwBasic)), status: 401})
		do(step{req: get("/basic").With("Authorization", basicAuth("alice", "correct-horse")), status: 200})
		do(step{req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "password", "username", "alice", "password", pwOAuth), status: 400})
		do(step{req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials", "client_id", "svc", "client_secret", ccSecret), status: 401})
		cc := do(step{req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials").With("Authorization", basicAuth("svc", "s3cret")), status: 200})
		ccToken := field(cc, "access_token")
		do(step{req: bearer("/api/orders", loginToken).With("Cookie", "session="+session), status: 200})
		do(step{req: bearer("/api/orders", ccToken), status: 200})
		rt := do(step{req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "refresh_token", "refresh_token", "good-refresh"), status: 200})
		refreshed := field(rt, "access_token")
		mustStatus(t, "curl login", curlDo(t, srcCurl, srv, formLogin("bob", pwCurl)), 401)
		mustStatus(t, "curl logout", curlDo(t, srcCurl, srv, Request{Method: http.MethodPost, Path: "/logout", Header: map[string]string{"Cookie": "session=" + session}}), 204)
		// Not an auth route: its body must not surface either.
		do(step{req: formRequest(http.MethodPost, "/public/form", "password", pwPublic), status: 200})
		const authRequests = 14

		spans := ag.WaitForSpans(t, authRequests, spanWait)
		metrics := ag.Metrics(t)
		ag.Stop(t)
		spans = ag.Spans(t) // and whatever was flushed on the way out
		if len(spans) != authRequests {
			t.Errorf("want %d spans, got %d:\n%s", authRequests, len(spans), describeSpans(spans))
		}
		if metrics == "" {
			t.Error("empty /metrics")
		}

		b64 := base64.StdEncoding.EncodeToString
		sig := func(jwt string) string { return jwt[strings.LastIndexByte(jwt, '.')+1:] }
		secrets := map[string]string{
			"form password":          pwForm,
			"json password":          pwJSON,
			"correct password":       "correct-horse",
			"special password":       pwSpecial,
			"special password, form": url.QueryEscape(pwSpecial),
			"basic password":         pwBasic,
			"basic credentials":      b64([]byte("alice:" + pwBasic)),
			"good basic credentials": b64([]byte("alice:correct-horse")),
			"oauth password":         pwOAuth,
			"client secret":          ccSecret,
			"good client secret":     "s3cret",
			"client basic":           b64([]byte("svc:s3cret")),
			"refresh token":          "good-refresh",
			"login token":            loginToken,
			"login token signature":  sig(loginToken),
			"client token":           ccToken,
			"client token signature": sig(ccToken),
			"refreshed token":        refreshed,
			"session cookie":         session,
			"curl password":          pwCurl,
			"public-route password":  pwPublic,
		}
		outputs := map[string]string{"stdout": ag.Stdout(), "stderr": ag.Stderr(), "/metrics": metrics}
		for what, s := range secrets {
			if s == "" {
				t.Fatalf("secret %q is empty", what)
			}
			for where, out := range outputs {
				if strings.Contains(out, s) {
					t.Errorf("%s appears in the agent's %s", what, where)
				}
			}
		}
	})
}
