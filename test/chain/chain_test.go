package chain

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

type call struct {
	name   string
	method string
	path   string
	body   string // form body for POST
	token  string
	want   int
}

func do(tb testing.TB, client *http.Client, base string, c call) (int, string) {
	tb.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("traceparent", traceparent)
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func form(user, pass string) string {
	return url.Values{"username": {user}, "password": {pass}}.Encode()
}

// mustLogin logs user in through base and returns the issued token.
func mustLogin(tb testing.TB, client *http.Client, base, user, pass string) string {
	tb.Helper()
	st, body := do(tb, client, base, call{name: "login " + user, method: "POST", path: "/login", body: form(user, pass)})
	var tok struct{ Token string }
	if st != 200 || json.Unmarshal([]byte(body), &tok) != nil || tok.Token == "" {
		tb.Fatalf("login %s: %d %s", user, st, body)
	}
	return tok.Token
}

// TestFlows: through the gateway of each backend, every flow answers the
// status it should, the database saw the SQLSTATE it should, the gateway's
// own denial never reached the backend, traceparent is forwarded or not
// as configured, /health touches no database and the poller queries
// outside any request.
func TestFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL, two backends and nginx")
	}
	env := Start(t, Options{ForwardTraceparent: true})
	client := &http.Client{Timeout: 60 * time.Second} // a cold JVM on a loaded machine
	for lang, gw := range env.Gateways {
		t.Run(lang, func(t *testing.T) {
			be := env.Backends[lang]
			base := gw.URL("")
			// Counted before the two logins: a backend may log a request
			// line just after its answer reached the client.
			before := len(be.Requests()) + 2
			alice := mustLogin(t, client, base, "alice", "correct-horse")
			bob := mustLogin(t, client, base, "bob", "hunter2")
			calls := []call{
				{name: "login wrong password", method: "POST", path: "/login", body: form("alice", "wrong"), want: 401},
				{name: "login unknown user", method: "POST", path: "/login", body: form("mallory", "x'; DROP TABLE users; --"), want: 401},
				{name: "login malformed", method: "POST", path: "/login", body: "username=alice", want: 400},
				{name: "own document", method: "GET", path: "/api/documents/1", token: alice, want: 200},
				{name: "other's document (RLS hides it)", method: "GET", path: "/api/documents/2", token: alice, want: 403},
				{name: "guest role lacks the privilege (42501)", method: "GET", path: "/api/documents/2", token: bob, want: 403},
				{name: "owner keeps her document", method: "POST", path: "/api/documents/1/owner", body: "owner=alice", token: alice, want: 200},
				{name: "giving it away (RLS WITH CHECK: 42501)", method: "POST", path: "/api/documents/1/owner", body: "owner=bob", token: alice, want: 403},
				{name: "other's document (RLS hides it from the update)", method: "POST", path: "/api/documents/2/owner", body: "owner=alice", token: alice, want: 403},
				{name: "no token", method: "GET", path: "/api/documents/1", want: 401},
				{name: "gateway denies", method: "GET", path: Denied + "users", token: alice, want: 403},
				{name: "health", method: "GET", path: "/health", want: 200},
			}
			for _, c := range calls {
				if st, body := do(t, client, base, c); st != c.want {
					t.Errorf("%s: %s %s = %d %s, want %d", c.name, c.method, c.path, st, body, c.want)
				}
			}
			// The backend saw all but the gateway's own denial, with the
			// caller's traceparent.
			reqs := be.WaitRequests(t, before+len(calls)-1, 5*time.Second)[before:]
			if len(reqs) != len(calls)-1 {
				t.Fatalf("backend logged %d requests, want %d: %+v", len(reqs), len(calls)-1, reqs)
			}
			for i, r := range reqs {
				if strings.HasPrefix(r.Path, Denied) {
					t.Errorf("the gateway's denial reached the backend: %+v", r)
				}
				if r.Traceparent != traceparent {
					t.Errorf("request %d (%s) reached the backend with traceparent %q", i, r.Path, r.Traceparent)
				}
			}
			var denied int
			for _, l := range gw.AccessLog(t) {
				if strings.HasPrefix(l, "GET "+Denied+"users 403 upstream=-") {
					denied++
				}
			}
			if denied != 1 {
				t.Errorf("gateway access log: %d self-answered denials, want 1:\n%s", denied, strings.Join(gw.AccessLog(t), "\n"))
			}
		})
	}

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for lang, gw := range env.Gateways {
			base := gw.URL("")
			alice := mustLogin(t, client, base, "alice", "correct-horse")
			bob := mustLogin(t, client, base, "bob", "hunter2")
			for i := 0; i < 24; i++ {
				c := []call{
					{method: "POST", path: "/login", body: form("carol", "s3cr3t-carol"), want: 200},
					{method: "POST", path: "/login", body: form("carol", "nope"), want: 401},
					{method: "GET", path: "/api/documents/1", token: alice, want: 200},
					{method: "GET", path: "/api/documents/3", token: alice, want: 403},
					{method: "GET", path: "/api/documents/1", token: bob, want: 403},
					{method: "GET", path: "/health", want: 200},
				}[i%6]
				c.name = fmt.Sprintf("%s #%d %s %s", lang, i, c.method, c.path)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if st, body := do(t, client, base, c); st != c.want {
						errs <- fmt.Errorf("%s = %d %s, want %d", c.name, st, body, c.want)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	// Each backend's guest document requests (one in the flows, four in
	// the concurrent run) and its attempt to give a document away (one)
	// failed in the database with 42501, and nothing else failed there.
	t.Run("sqlstates", func(t *testing.T) {
		for lang := range env.Backends {
			want := map[string]int{"42501": 6}
			got := env.Postgres.WaitFailures(t, Application(lang), want, settle)
			if len(got) != 1 || got["42501"] != 6 {
				t.Errorf("%s: database failures by SQLSTATE = %v, want %v", lang, got, want)
			}
		}
	})

	t.Run("health and poller", func(t *testing.T) {
		const poll = "SELECT count(*) AS active_users FROM users"
		// The Go backend's goroutines that failed logins left behind query
		// when the next request arrives, /health too: not /health's query.
		const detached = "SELECT count(*) AS failed_logins FROM users WHERE username = $1"
		others := func() int {
			n := 0
			for q, c := range env.Postgres.StatementCalls(t, AppUser) {
				if q != poll && q != detached {
					n += c
				}
			}
			return n
		}
		polls := env.Postgres.StatementCalls(t, AppUser)[poll]
		before := others()
		for lang, gw := range env.Gateways {
			for i := 0; i < 5; i++ {
				if st, _ := do(t, client, gw.URL(""), call{name: lang + " health", method: "GET", path: "/health"}); st != 200 {
					t.Errorf("%s /health = %d", lang, st)
				}
			}
		}
		time.Sleep(2500 * time.Millisecond)
		if after := others(); after != before {
			t.Errorf("/health ran %d queries", after-before)
		}
		// Two backends poll every second.
		if got := env.Postgres.StatementCalls(t, AppUser)[poll]; got < polls+2 {
			t.Errorf("poller: %d queries in 2.5s, want at least 2 (statements: %v)", got-polls, env.Postgres.StatementCalls(t, AppUser))
		}
	})

	t.Run("traceparent stripped", func(t *testing.T) {
		for lang, be := range env.Backends {
			gw := MustStartGateway(t, GatewayOptions{Upstream: be.Addr})
			before := len(be.Requests())
			if st, _ := do(t, client, gw.URL(""), call{name: "health", method: "GET", path: "/health"}); st != 200 {
				t.Fatalf("%s /health = %d", lang, st)
			}
			reqs := be.WaitRequests(t, before+1, 5*time.Second)
			if len(reqs) != before+1 || reqs[before].Traceparent != "" {
				t.Errorf("%s: backend requests after a stripping gateway: %+v", lang, reqs[before:])
			}
		}
	})
}

// TestWrongDatabasePassword: a backend whose database password is wrong
// answers 503, and the database refused each login with 28P01.
func TestWrongDatabasePassword(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL, two backends and nginx")
	}
	env := Start(t, Options{Backend: BackendOptions{DBPassword: "not-the-password", PerRequest: true, PollInterval: -1}})
	client := &http.Client{Timeout: 60 * time.Second} // a cold JVM on a loaded machine
	for lang, gw := range env.Gateways {
		for i := 0; i < 2; i++ {
			if st, body := do(t, client, gw.URL(""), call{name: "login", method: "POST", path: "/login", body: form("alice", "correct-horse")}); st != 503 {
				t.Errorf("%s: login with the database refusing the backend = %d %s, want 503", lang, st, body)
			}
		}
		if st, _ := do(t, client, gw.URL(""), call{name: "health", method: "GET", path: "/health"}); st != 200 {
			t.Errorf("%s: /health = %d, want 200 (no database)", lang, st)
		}
	}
	// A failed log-in has no application_name in the log yet: count all.
	want := map[string]int{"28P01": 2 * len(env.Backends)}
	got := env.Postgres.WaitFailures(t, "", want, settle)
	if got["28P01"] != want["28P01"] {
		t.Errorf("database failures by SQLSTATE = %v, want %v", got, want)
	}
}
