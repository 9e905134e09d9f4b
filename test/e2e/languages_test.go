package e2e

import (
	"fmt"
	"testing"

	"github.com/authprobe/authprobe/test/testutil"
)

// TestEveryServerLanguage: the servers the other agent tests do not cover
// (Go net/http, Java com.sun.net.httpserver) give the same exact login
// spans: a failed and a successful form login, one of each joining a
// caller's trace, and a JSON login sent with curl.
func TestEveryServerLanguage(t *testing.T) {
	for _, lang := range []string{"go", "java"} {
		t.Run(lang, func(t *testing.T) {
			testutil.MustRoot(t)
			srv := mustStartServer(t, lang)
			ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}})

			cases := []struct {
				secCase
				curl bool
			}{
				{secCase: secCase{name: "form bad password traced", req: formLogin("alice", "not-her-password"), status: 401, span: "auth.login",
					result: "failure", reason: "invalid_credentials", parent: true,
					attrs: map[string]any{"auth.method": "password", "auth.username": "alice"}}},
				{secCase: secCase{name: "form ok", req: formLogin("alice", "correct-horse"), status: 200, span: "auth.login",
					result: "success", attrs: map[string]any{"auth.method": "password", "auth.username": "alice", "auth.session.issued": true}}},
				{secCase: secCase{name: "form ok traced", req: formLogin("bob", "hunter2"), status: 200, span: "auth.login",
					result: "success", parent: true,
					attrs: map[string]any{"auth.method": "password", "auth.username": "bob", "auth.session.issued": true}}},
				{secCase: secCase{name: "curl json bad password", req: jsonLogin("bob", "not-his"), status: 401, span: "auth.login",
					result: "failure", reason: "invalid_credentials",
					attrs: map[string]any{"auth.method": "password", "auth.username": "bob"}}, curl: true},
			}
			var all []sentCase
			for i, c := range cases {
				src := fmt.Sprintf("127.0.4.%d", 10+i)
				w := spanWant{
					name: c.span, method: "POST", path: "/login", status: c.status, result: c.result,
					reason: c.reason, client: src, username: c.attrs["auth.username"].(string), authMethod: "password",
				}
				req := c.req
				if c.parent {
					tp := newTraceParent(t)
					w.parent = &tp
					req = req.With("traceparent", tp.String())
				}
				var got Response
				if c.curl {
					got = curlDo(t, src, srv, req)
				} else {
					got = mustDo(t, mustClient(t, src), srv, req)
				}
				mustStatus(t, c.name, got, c.status)
				all = append(all, sentCase{c: c.secCase, src: src, want: w})
			}

			spans := ag.ExpectSpans(t, len(cases), spanWait)
			checkSentSpans(t, srv, spans, all, true, func(s sentCase, sp Span) {
				if want := serverExecutable(lang); sp.ResourceAttr("process.executable.name") != want {
					t.Errorf("%s: resource process.executable.name %q, want %q", s.c.name, sp.ResourceAttr("process.executable.name"), want)
				}
			})
			ag.Stop(t)
		})
	}
}
