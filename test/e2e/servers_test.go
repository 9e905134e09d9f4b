package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/test/testutil"
)

// Client source addresses: distinct peers without any network setup.
const (
	srcGo   = "127.0.0.2"
	srcCurl = "127.0.0.3"
	srcRaw  = "127.0.0.4"
)

// routeCase is one request to a test server and what it must answer.
type routeCase struct {
	name       string
	req        Request
	wantStatus int
	// wantBody is a substring the body must contain.
	wantBody string
	// wantCookie: the response sets a non-empty session cookie.
	wantCookie bool
	// wantClient: the body's "client" is the request's source address.
	wantClient bool
}

func serverRouteCases() []routeCase {
	alice, guest := testutil.MakeJWT("alice", "user"), testutil.MakeJWT("bob", "guest")
	return []routeCase{
		{name: "login form ok", req: formLogin("alice", "correct-horse"), wantStatus: 200, wantBody: `"token"`, wantCookie: true},
		{name: "login json ok", req: jsonLogin("bob", "hunter2"), wantStatus: 200, wantBody: `"token"`, wantCookie: true},
		{name: "login json ok with charset", req: jsonLogin("alice", "correct-horse").With("Content-Type", "application/json; charset=utf-8"), wantStatus: 200, wantBody: `"token"`, wantCookie: true},
		{name: "login form bad password", req: formLogin("alice", "wrong"), wantStatus: 401, wantBody: "invalid_credentials"},
		{name: "login json bad password", req: jsonLogin("bob", "wrong"), wantStatus: 401, wantBody: "invalid_credentials"},
		{name: "login unknown user", req: formLogin("mallory", "correct-horse"), wantStatus: 401, wantBody: "invalid_credentials"},
		{name: "login no fields", req: formRequest(http.MethodPost, "/login"), wantStatus: 401, wantBody: "invalid_credentials"},
		{name: "login locked", req: jsonLogin("locked-user", "whatever"), wantStatus: 423, wantBody: "account_locked"},
		{name: "login rate limited", req: formLogin("ratelimited", "whatever"), wantStatus: 429, wantBody: "rate_limited"},
		{name: "login malformed json", req: Request{Method: "POST", Path: "/login", Body: `{"username":`, Header: map[string]string{"Content-Type": "application/json"}}, wantStatus: 400, wantBody: "bad_request"},
		{name: "login wrong method", req: get("/login"), wantStatus: 405},
		{name: "api no authorization", req: get("/api/orders"), wantStatus: 401, wantBody: "unauthorized"},
		{name: "api user token", req: bearer("/api/orders/7", alice), wantStatus: 200, wantBody: `"ok"`},
		{name: "api post user token", req: formRequest(http.MethodPost, "/api/orders", "item", "book").With("Authorization", "Bearer "+alice), wantStatus: 200},
		{name: "api admin path", req: bearer("/api/admin/users", alice), wantStatus: 403, wantBody: "forbidden"},
		{name: "api guest token", req: bearer("/api/orders", guest), wantStatus: 403, wantBody: "forbidden"},
		{name: "api garbage token", req: bearer("/api/orders", "not-a-jwt"), wantStatus: 401, wantBody: "invalid_token"},
		{name: "api basic is not bearer", req: get("/api/orders").With("Authorization", basicAuth("alice", "correct-horse")), wantStatus: 401},
		{name: "basic ok", req: get("/basic").With("Authorization", basicAuth("alice", "correct-horse")), wantStatus: 200},
		{name: "basic bad password", req: get("/basic").With("Authorization", basicAuth("alice", "nope")), wantStatus: 401},
		{name: "basic none", req: get("/basic"), wantStatus: 401},
		{name: "oauth password ok", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "password", "username", "alice", "password", "correct-horse"), wantStatus: 200, wantBody: `"token_type":`},
		{name: "oauth password bad", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "password", "username", "alice", "password", "x"), wantStatus: 400, wantBody: "invalid_grant"},
		{name: "oauth client credentials ok", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials", "client_id", "svc", "client_secret", "s3cret"), wantStatus: 200, wantBody: "access_token"},
		{name: "oauth client credentials basic", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials").With("Authorization", basicAuth("svc", "s3cret")), wantStatus: 200, wantBody: "access_token"},
		{name: "oauth client credentials bad", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials", "client_id", "svc", "client_secret", "x"), wantStatus: 401, wantBody: "invalid_client"},
		{name: "oauth code ok", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "authorization_code", "code", "good-code"), wantStatus: 200, wantBody: "access_token"},
		{name: "oauth code bad", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "authorization_code", "code", "bad-code"), wantStatus: 400, wantBody: "invalid_grant"},
		{name: "oauth refresh ok", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "refresh_token", "refresh_token", "good-refresh"), wantStatus: 200, wantBody: "access_token"},
		{name: "oauth refresh bad", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "refresh_token", "refresh_token", "stale"), wantStatus: 400, wantBody: "invalid_grant"},
		{name: "oauth unknown grant", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "magic"), wantStatus: 400, wantBody: "unsupported_grant_type"},
		{name: "logout", req: Request{Method: http.MethodPost, Path: "/logout"}, wantStatus: 204},
		{name: "health", req: get("/health"), wantStatus: 200, wantBody: `"ok"`},
		{name: "public", req: get("/public/css/site.css"), wantStatus: 200, wantClient: true},
		{name: "not found", req: get("/nowhere"), wantStatus: 404},
	}
}

func checkRouteResponse(t *testing.T, c routeCase, src string, got Response) {
	t.Helper()
	if got.Status != c.wantStatus {
		t.Errorf("%s: status %d, want %d (body %q)", c.name, got.Status, c.wantStatus, got.Body)
		return
	}
	if c.wantBody != "" && !strings.Contains(got.Body, c.wantBody) {
		t.Errorf("%s: body %q lacks %q", c.name, got.Body, c.wantBody)
	}
	if got.Status == http.StatusNoContent {
		if got.Body != "" || got.Header.Get("Content-Length") != "" {
			t.Errorf("%s: 204 with body %q / Content-Length %q", c.name, got.Body, got.Header.Get("Content-Length"))
		}
	} else {
		if got.Header.Get("Content-Length") == "" {
			t.Errorf("%s: no Content-Length (headers %v)", c.name, got.Header)
		}
		if got.JSON() == nil {
			t.Errorf("%s: body is not a JSON object: %q", c.name, got.Body)
		}
	}
	if cookie := got.Cookie("session"); c.wantCookie != (cookie != "") {
		t.Errorf("%s: session cookie %q, want one: %v", c.name, cookie, c.wantCookie)
	}
	if c.wantClient {
		if client, _ := got.JSON()["client"].(string); client != src {
			t.Errorf("%s: server saw client %q, want source address %s", c.name, client, src)
		}
	}
}

// TestServersAnswer checks the test servers and the clients without the
// agent: every route answers as test/servers/README.md says, through the
// Go client, curl and pipelined raw TCP, each from its own source address.
func TestServersAnswer(t *testing.T) {
	for _, lang := range serverLangs {
		t.Run(lang, func(t *testing.T) {
			srv := mustStartServer(t, lang)
			cases := serverRouteCases()

			t.Run("go client", func(t *testing.T) {
				c := mustClient(t, srcGo)
				for _, rc := range cases {
					checkRouteResponse(t, rc, srcGo, mustDo(t, c, srv, rc.req))
				}
			})

			t.Run("curl", func(t *testing.T) {
				for _, rc := range cases {
					checkRouteResponse(t, rc, srcCurl, curlDo(t, srcCurl, srv, rc.req))
				}
			})

			t.Run("keep-alive", func(t *testing.T) {
				c := mustClient(t, srcGo)
				var reused []bool
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
				for _, rc := range cases[:8] {
					hr, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
						rc.req.Method, srv.URL(rc.req.Path), strings.NewReader(rc.req.Body))
					if err != nil {
						t.Fatal(err)
					}
					for k, v := range rc.req.Header {
						hr.Header.Set(k, v)
					}
					resp, err := c.Do(hr)
					if err != nil {
						t.Fatalf("%s: %v", rc.name, err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				for i, r := range reused[1:] {
					if !r {
						t.Errorf("request %d opened a new connection; keep-alive not honoured", i+2)
					}
				}
			})

			t.Run("pipelined", func(t *testing.T) {
				conn := rawConn(t, srcRaw, srv.Addr)
				var reqs []Request
				for _, rc := range cases {
					reqs = append(reqs, rc.req)
				}
				conn.Send(t, reqs...)
				for i, got := range conn.ReadResponses(t, len(cases)) {
					checkRouteResponse(t, cases[i], srcRaw, got)
				}
			})

			t.Run("split writes", func(t *testing.T) {
				conn := rawConn(t, srcRaw, srv.Addr)
				wire := formLogin("alice", "correct-horse").Wire(srv.Addr)
				head := strings.Index(string(wire), "\r\n\r\n") + 4
				// Mid request line, mid header block, then the body in three.
				conn.WriteSplit(t, wire, 8, head-10, head, head+5, head+20)
				checkRouteResponse(t, cases[0], srcRaw, conn.ReadResponses(t, 1)[0])

				chunked := formLogin("bob", "hunter2").With("Transfer-Encoding", "chunked")
				body := chunked.Body
				chunked.Body = hexLen(body[:10]) + "\r\n" + body[:10] + "\r\n" +
					hexLen(body[10:]) + "\r\n" + body[10:] + "\r\n0\r\n\r\n"
				wire = chunked.Wire(srv.Addr)
				head = strings.Index(string(wire), "\r\n\r\n") + 4
				conn.WriteSplit(t, wire, head, head+len(hexLen(body[:10]))+12)
				checkRouteResponse(t, cases[1], srcRaw, conn.ReadResponses(t, 1)[0])
			})
		})
	}
}

func hexLen(s string) string { return fmt.Sprintf("%x", len(s)) }
