package chain

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines joins tree lines.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// backendTree is the backend's part of a tree (under the gateway's call),
// at depth 2, by language: psycopg2 wraps every statement in BEGIN and
// ROLLBACK/COMMIT of its own Query; JDBC runs the login's SELECT in
// autocommit and names the documents transaction's statements itself.
func backendTree(lang, server string, queries ...string) []string {
	out := []string{"    SERVER " + lang + " " + server}
	for _, q := range queries {
		out = append(out, "      CLIENT "+lang+" "+q)
	}
	return out
}

func loginQueries(lang string, first bool) []string {
	var q []string
	if first {
		q = append(q, "connect authdb")
	}
	if lang == Python {
		return append(q, "BEGIN", "SELECT users", "ROLLBACK")
	}
	if lang == Go {
		return append(q, "SELECT users") // autocommit, and no settings of its own
	}
	if first {
		q = append(q, "SET", "SET") // the driver's own settings after the startup
	}
	return append(q, "SELECT users")
}

// documentQueries are the queries of a request that runs op (its last
// statement) as the caller, in a transaction of its own that ends with end.
func documentQueries(end, op string) []string {
	return []string{"BEGIN", "SET", "SELECT", op, end}
}

// TestTraceTrees: with the agent watching the gateways (nginx) and the
// backends (Python, Java) from before they start, each flow's trace is
// exactly the tree it should be: the gateway's auth span under the
// caller's span, its call to the backend, the backend's auth span under
// that call (a linked hop: found by the connection's addresses, whatever
// traceparent says), the backend's queries under it, and on denials the
// layer that said no. Concurrent requests put no span under another's;
// the backends' poller, outside any request, makes no span; and nothing
// the agent prints holds a password, a token, a query parameter or a row.
func TestTraceTrees(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL, two backends, nginx and the agent")
	}
	env := startWatched(t, Options{Langs: testLangs(), ForwardTraceparent: true, Backend: BackendOptions{PollInterval: 200 * time.Millisecond}})
	client := &http.Client{Timeout: 60 * time.Second}
	var tokens []string
	for lang, gw := range env.Gateways {
		t.Run(lang, func(t *testing.T) {
			base := gw.URL("")
			// Opens the pool's connection: its startup is part of this trace.
			warm := doTraced(t, client, base, call{name: "first login", method: "POST", path: "/login", body: form("carol", "s3cr3t-carol"), want: 200})
			alice := mustLogin(t, client, base, "alice", "correct-horse")
			bob := mustLogin(t, client, base, "bob", "hunter2")
			tokens = append(tokens, alice, bob)
			gwLogin := func(status, layer string) []string {
				return []string{"caller: SERVER gateway auth.login " + status + layer, "  CLIENT gateway POST " + status + " /login"}
			}
			gwDoc := func(layer string) []string {
				return []string{"caller: SERVER gateway auth.authorize 403" + layer, "  CLIENT gateway GET 403 /api/documents/2"}
			}
			gwOwner := func(status, layer string) []string {
				return []string{"caller: SERVER gateway auth.authorize " + status + layer, "  CLIENT gateway POST " + status + " /api/documents/1/owner"}
			}
			docEnd := "COMMIT"
			cases := []struct {
				c    call
				want string
			}{
				{call{name: "failed login", method: "POST", path: "/login", body: form("alice", "wrong"), want: 401},
					lines(append(gwLogin("401", " layer=upstream/401"), backendTree(lang, "auth.login 401 layer=service", loginQueries(lang, false)...)...)...)},
				{call{name: "login", method: "POST", path: "/login", body: form("alice", "correct-horse"), want: 200},
					lines(append(gwLogin("200", ""), backendTree(lang, "auth.login 200", loginQueries(lang, false)...)...)...)},
				// Row-level security hides the row: the query succeeds with
				// no row, and the service says no.
				{call{name: "RLS hides another's document", method: "GET", path: "/api/documents/2", token: alice, want: 403},
					lines(append(gwDoc(" layer=upstream/403"), backendTree(lang, "auth.authorize 403 layer=service", documentQueries(docEnd, "SELECT documents")...)...)...)},
				{call{name: "guest role lacks the privilege (42501)", method: "GET", path: "/api/documents/2", token: bob, want: 403},
					lines(append(gwDoc(" layer=upstream/403"), backendTree(lang, "auth.authorize 403 layer=database/42501", documentQueries("ROLLBACK", "SELECT documents sqlstate=42501")...)...)...)},
				// Row-level security's WITH CHECK: alice may update her own
				// document, but the row must stay hers.
				{call{name: "owner keeps her document", method: "POST", path: "/api/documents/1/owner", body: "owner=alice", token: alice, want: 200},
					lines(append(gwOwner("200", ""), backendTree(lang, "auth.authorize 200", documentQueries(docEnd, "UPDATE documents")...)...)...)},
				{call{name: "RLS WITH CHECK refuses giving it away (42501)", method: "POST", path: "/api/documents/1/owner", body: "owner=bob", token: alice, want: 403},
					lines(append(gwOwner("403", " layer=upstream/403"), backendTree(lang, "auth.authorize 403 layer=database/42501", documentQueries("ROLLBACK", "UPDATE documents sqlstate=42501")...)...)...)},
				{call{name: "gateway denies", method: "GET", path: Denied + "users", token: alice, want: 403},
					lines("caller: SERVER gateway auth.authorize 403 layer=gateway")},
			}
			calls := []tracedCall{warm}
			for _, tc := range cases {
				calls = append(calls, doTraced(t, client, base, tc.c))
			}
			spans := env.waitSpans(t, calls, 20*time.Second)
			wantWarm := lines(append(gwLogin("200", ""), backendTree(lang, "auth.login 200", loginQueries(lang, true)...)...)...)
			if got := tree(spans, warm.trace, warm.parent); got != wantWarm {
				t.Errorf("%s first login: trace tree\n%s\nwant\n%s", lang, got, wantWarm)
			}
			for i, tc := range cases {
				c := calls[i+1]
				if got := tree(spans, c.trace, c.parent); got != tc.want {
					t.Errorf("%s %s: trace tree\n%s\nwant\n%s", lang, tc.c.name, got, tc.want)
				}
			}
			if lang == Go {
				checkGoSpawns(t, env)
			}
		})
	}

	// Several requests at once through each gateway, on several backend
	// threads: every span is in its own request's trace, in that
	// request's tree, or (a call that could not be attributed) nowhere.
	t.Run("concurrent", func(t *testing.T) {
		var (
			mu    sync.Mutex
			calls []tracedCall
			wg    sync.WaitGroup
		)
		for _, gw := range env.Gateways {
			base := gw.URL("")
			alice := mustLogin(t, client, base, "alice", "correct-horse")
			for i := 0; i < 16; i++ {
				c := []call{
					{method: "POST", path: "/login", body: form("carol", "s3cr3t-carol"), want: 200},
					{method: "POST", path: "/login", body: form("carol", "nope"), want: 401},
					{method: "GET", path: "/api/documents/1", token: alice, want: 200},
					{method: "GET", path: "/api/documents/3", token: alice, want: 403},
				}[i%4]
				c.name = fmt.Sprintf("#%d %s %s", i, c.method, c.path)
				wg.Add(1)
				go func() {
					defer wg.Done()
					tc := doTraced(t, client, base, c)
					mu.Lock()
					calls = append(calls, tc)
					mu.Unlock()
				}()
			}
			// Non-auth requests interleaved: never a parent.
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					doTraced(t, client, base, call{name: "health", method: "GET", path: "/health", want: 200})
				}()
			}
		}
		wg.Wait()
		spans := env.waitSpans(t, calls, 30*time.Second)
		byTrace := map[string][]Span{}
		for _, s := range spans {
			byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
		}
		for _, c := range calls {
			in := byTrace[c.trace]
			ids := map[string]Span{}
			for _, s := range in {
				ids[s.SpanID] = s
			}
			var servers, queries int
			for _, s := range in {
				p, ok := ids[s.Parent]
				switch {
				case !ok && s.Parent != c.parent:
					t.Errorf("%s: span %s has a parent %s outside its trace", c.name, describe(s), s.Parent)
				case ok && s.Kind == "CLIENT" && (p.Kind != "SERVER" || layerOf(p) != layerOf(s)):
					t.Errorf("%s: call %s under %s", c.name, describe(s), describe(p))
				case s.Kind == "SERVER" && layerOf(s) != "gateway" && s.Parent != c.parent && (!ok || p.Kind != "CLIENT" || layerOf(p) != "gateway"):
					// Under the gateway's call, or (the gateway's call could not
					// be attributed: several requests in flight on its event
					// loop) under the caller, by the forwarded traceparent.
					t.Errorf("%s: backend span %s under neither the gateway's call nor the caller", c.name, describe(s))
				}
				if s.Kind == "SERVER" {
					servers++
					if s.Attr("url.path") != c.path {
						t.Errorf("%s: server span of %s in its trace", c.name, s.Attr("url.path"))
					}
				}
				if s.Attr("db.system.name") != "" {
					queries++
				}
			}
			if servers == 0 || servers > 2 || queries > 8 { // a new pooled connection adds its startup and the driver's SETs
				t.Errorf("%s: %d server spans and %d queries in its trace:\n%s", c.name, servers, queries, tree(spans, c.trace, c.parent))
			}
		}
	})

	// The pollers query every 200 ms outside any request: no span.
	t.Run("outside any request", func(t *testing.T) {
		time.Sleep(time.Second)
		for _, s := range env.agent.Spans(t) {
			if strings.Contains(s.Attr("db.query.text"), "active_users") || s.Parent == "" && s.Kind == "CLIENT" {
				t.Errorf("a span outside any request: %s %s", describe(s), s.Attr("db.query.text"))
			}
		}
		m := env.agent.Metrics(t)
		if !strings.Contains(m, `authprobe_kernel_total{name="client_outside"}`) || strings.Contains(m, `authprobe_kernel_total{name="client_outside"} 0`+"\n") {
			t.Errorf("no client I/O counted outside a request:\n%s", m)
		}
	})

	t.Run("nothing secret in any output", func(t *testing.T) {
		out := env.agent.Output() + env.agent.Metrics(t)
		secrets := []string{"correct-horse", "hunter2", "s3cr3t-carol", "nope", AppPassword, "alice-plan", "bob-notes", "carol-draft", "confidential body"}
		secrets = append(secrets, tokens...)
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("agent output holds %q", s)
			}
		}
		for _, s := range env.agent.Spans(t) {
			if q := s.Attr("db.query.text"); strings.Contains(q, "'") || strings.Contains(q, "carol") || strings.Contains(q, "alice") || strings.Contains(q, "bob") {
				t.Errorf("a query text with a literal: %q", q)
			}
		}
	})
	if os.Getenv("CHAIN_DUMP") != "" {
		t.Logf("spans:\n%s", env.agent.stdout.String())
	}
}

// checkGoSpawns: the Go backend's document reads ran on goroutines its
// handlers spawned, and their queries are in the trees above (as the
// handler's own); the goroutine a failed login left behind ran its query
// after that login was answered, and it is in no tree (the trees above
// are exact); the kernel counted both kinds.
func checkGoSpawns(t *testing.T, env *chainEnv) {
	t.Helper()
	const detached = "SELECT count(*) AS failed_logins FROM users WHERE username = $1"
	if n := env.Postgres.StatementCalls(t, AppUser)[detached]; n == 0 {
		t.Errorf("the detached goroutine's query never ran: %v", env.Postgres.StatementCalls(t, AppUser))
	}
	m := env.agent.Metrics(t)
	for _, name := range []string{"go_spawned", "client_spawned", "client_outside"} {
		if v := kernelCounter(m, name); v == 0 {
			t.Errorf("kernel counter %s = 0", name)
		}
	}
}

// kernelCounter reads authprobe_kernel_total{name=NAME} off a scrape.
func kernelCounter(metrics, name string) float64 {
	prefix := `authprobe_kernel_total{name="` + name + `"} `
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// testLangs are the backends of CHAIN_LANGS (comma-separated), else all.
func testLangs() []string {
	if v := os.Getenv("CHAIN_LANGS"); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}
