package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// The username HMAC key of the hash-mode tests, handed to the agent through
// key_env so the test can compute the expected values itself.
const (
	userKeyEnv = "AUTHPROBE_E2E_USERNAME_KEY"
	userKey    = "e2e-fixed-username-key-0123456789"
)

// securityConfig is the agent's security section for one privacy mode; hash
// takes its key from userKeyEnv (see userKeyEnvVar).
func securityConfig(privacy string) map[string]any {
	user := map[string]any{"privacy": privacy}
	if privacy == "hash" {
		user["key_env"] = userKeyEnv
	}
	return map[string]any{"username": user, "session_cookies": []string{"session"}}
}

// userKeyEnvVar is the environment entry securityConfig("hash") needs.
func userKeyEnvVar() string { return userKeyEnv + "=" + userKey }

// usernameHash is auth.username in privacy hash as docs/security-attributes.md
// defines it: "hmac:" + hex of the first 16 bytes of HMAC-SHA256(key, user).
func usernameHash(user string) string {
	m := hmac.New(sha256.New, []byte(userKey))
	m.Write([]byte(user))
	return "hmac:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// mintJWT makes a compact JWS with the given header and claims; sig is the
// signature segment ("" for an unsigned token), or "hmac" to sign it with
// the test servers' key.
func mintJWT(header, claims map[string]any, sig string) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	if sig == "hmac" {
		mac := hmac.New(sha256.New, []byte(testutil.ServerJWTKey))
		mac.Write([]byte(input))
		sig = enc.EncodeToString(mac.Sum(nil))
	}
	return input + "." + sig
}

// routeKinds are the kinds of DefaultRoutes by span name.
var routeKinds = map[string]string{
	"auth.login": "login", "auth.authorize": "authorize", "auth.token": "token",
	"auth.logout": "logout", "auth.basic": "authorize",
}

// builderOwnedAuthAttrs are auth.* attributes spanbuilder sets from the
// request line itself; every other auth.* attribute (and enduser.id) is a
// security attribute that exactSecAttrs compares.
var builderOwnedAuthAttrs = map[string]bool{"auth.user_agent": true, "auth.resource": true}

// secAttrs picks the security attributes of a span's attributes.
func secAttrs(attrs map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range attrs {
		if (strings.HasPrefix(k, "auth.") && !builderOwnedAuthAttrs[k]) || k == "enduser.id" {
			out[k] = v
		}
	}
	return out
}

// jsonText is v as JSON: the comparison is type-exact (true is not "true",
// 401 is not "401") and independent of []string versus []any.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%T: %v>", v, err)
	}
	return string(b)
}

// checkExactAttrs asserts that got's security attributes are exactly want:
// the same keys, the same JSON types and values.
//
// A denial (auth.result=failure) not otherwise expected carries
// auth.decision.layer=service: the test servers decide by themselves, with
// no call to a database or upstream (issue 12's decision layer).
func checkExactAttrs(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	if _, ok := want["auth.decision.layer"]; !ok && got["auth.result"] == "failure" {
		want = maps.Clone(want)
		want["auth.decision.layer"] = "service"
	}
	have := secAttrs(got)
	keys := map[string]bool{}
	for k := range have {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var diffs []string
	for _, k := range names {
		g, gok := have[k]
		w, wok := want[k]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("%s missing, want %s", k, jsonText(w)))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("%s = %s, want none", k, jsonText(g)))
		case jsonText(g) != jsonText(w):
			diffs = append(diffs, fmt.Sprintf("%s = %s, want %s", k, jsonText(g), jsonText(w)))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%s: security attributes differ:\n  %s\n  all: %s", what, strings.Join(diffs, "\n  "), jsonText(got))
	}
}

// subnet24 is the /24 of an IPv4 address, as auth.client.subnet says it.
func subnet24(ip string) string {
	return netip.PrefixFrom(netip.MustParseAddr(ip), 24).Masked().String()
}

// secCase is one request and the span it must give.
type secCase struct {
	name   string
	req    Request
	status int
	span   string // span name
	path   string // url.path; req.Path when empty
	result string
	reason string
	// attrs are the security attributes beyond auth.result,
	// auth.failure_reason, auth.route.kind and auth.client.subnet, which
	// wantAttrs adds.
	attrs map[string]any
	// parent: send a traceparent, the span must join it.
	parent bool
}

func (c secCase) wantAttrs(client string) map[string]any {
	w := map[string]any{
		"auth.result":        c.result,
		"auth.route.kind":    routeKinds[c.span],
		"auth.client.subnet": subnet24(client),
	}
	if c.reason != "" {
		w["auth.failure_reason"] = c.reason
	}
	for k, v := range c.attrs {
		w[k] = v
	}
	return w
}

// runSecCases sends every case from its own source address (base.N,
// N = 10, 11, ...) and checks each one's span: the common fields with
// checkSpan and the security attributes exactly.
func runSecCases(t *testing.T, srv *Server, ag *Agent, base string, cases []secCase) {
	t.Helper()
	var all []sentCase
	for i, c := range cases {
		src := fmt.Sprintf("%s.%d", base, 10+i)
		path := c.path
		if path == "" {
			path, _, _ = strings.Cut(c.req.Path, "?")
		}
		w := spanWant{
			name: c.span, method: c.req.Method, path: path, status: c.status,
			result: c.result, reason: c.reason, client: src,
		}
		req := c.req
		if c.parent {
			tp := newTraceParent(t)
			w.parent = &tp
			req = req.With("traceparent", tp.String())
		}
		mustStatus(t, c.name, mustDo(t, mustClient(t, src), srv, req), c.status)
		all = append(all, sentCase{c: c, src: src, want: w})
	}
	spans := ag.ExpectSpans(t, len(cases), spanWait)
	checkSentSpans(t, srv, spans, all, false, func(s sentCase, sp Span) {
		// Query strings carry secrets (api_key=...): never in http.target.
		if got := sp.Attr("http.target"); got != s.want.path {
			t.Errorf("%s: http.target %q, want %q", s.c.name, got, s.want.path)
		}
	})
}

// tokenCases are the bearer-token requests on /api/** and their JWT-derived
// attributes.
func tokenCases() []secCase {
	now := time.Now().Unix()
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	valid := mintJWT(hs, map[string]any{
		"sub": "alice", "roles": []string{"user", "auditor"}, "iss": "https://issuer.example",
		"aud": []string{"orders-api", "web"}, "iat": now, "exp": now + 3600,
	}, "hmac")
	expired := mintJWT(hs, map[string]any{
		"sub": "bob-expired", "roles": []string{"user"}, "aud": "orders-api", "iat": now - 7200, "exp": now - 3600,
	}, "hmac")
	unsigned := mintJWT(map[string]any{"alg": "none", "typ": "JWT"}, map[string]any{
		"sub": "mallory", "roles": []string{"superuser"}, "exp": now + 3600,
	}, "")
	guest := testutil.MakeJWT("bob", "guest")
	// Three segments that decode to no JSON: the servers answer 401.
	malformed := "bm90LWpzb24.bm90LWpzb24.c2lnbmF0dXJl"
	opaque := "opq_" + hex.EncodeToString([]byte("0123456789abcdef"))

	api := func(name, token string, status int, result, reason string, attrs map[string]any) secCase {
		attrs["auth.method"] = "bearer"
		if oauthRegistered[reason] {
			attrs["auth.oauth2.error"] = reason
		}
		return secCase{
			name: name, req: bearer("/api/orders/42", token), status: status, span: "auth.authorize",
			result: result, reason: reason, attrs: attrs,
		}
	}
	return []secCase{
		api("bearer valid jwt", valid, 200, "success", "", map[string]any{
			"auth.token_type": "jwt", "auth.token.alg": "HS256", "auth.token.expired": false,
			"auth.subject": "alice", "enduser.id": "alice", "auth.roles": []string{"user", "auditor"},
			"auth.token.issuer": "https://issuer.example", "auth.token.audience": []string{"orders-api", "web"},
		}),
		api("bearer expired jwt", expired, 200, "success", "", map[string]any{
			"auth.token_type": "jwt", "auth.token.alg": "HS256", "auth.token.expired": true,
			"auth.subject": "bob-expired", "enduser.id": "bob-expired", "auth.roles": []string{"user"},
			"auth.token.audience": []string{"orders-api"},
		}),
		api("bearer alg none", unsigned, 200, "success", "", map[string]any{
			"auth.token_type": "jwt", "auth.token.alg": "none", "auth.token.unsigned": true,
			"auth.token.expired": false, "auth.subject": "mallory", "enduser.id": "mallory",
			"auth.roles": []string{"superuser"},
		}),
		api("bearer guest forbidden", guest, 403, "failure", "forbidden", map[string]any{
			"auth.token_type": "jwt", "auth.token.alg": "HS256", "auth.token.expired": false,
			"auth.subject": "bob", "enduser.id": "bob", "auth.roles": []string{"guest"},
		}),
		api("bearer malformed", malformed, 401, "failure", "invalid_token", map[string]any{
			"auth.token_type": "malformed",
		}),
		api("bearer opaque", opaque, 401, "failure", "invalid_token", map[string]any{
			"auth.token_type": "opaque",
		}),
	}
}

// oauthCases are token-endpoint requests of every grant type.
func oauthCases() []secCase {
	tok := func(name string, status int, result, reason string, attrs map[string]any, kv ...string) secCase {
		attrs["auth.method"] = "oauth2"
		if reason != "" {
			attrs["auth.oauth2.error"] = reason
		}
		if result == "success" {
			attrs["auth.session.issued"] = true
		}
		return secCase{
			name: name, req: formRequest(http.MethodPost, "/oauth/token", kv...), status: status,
			span: "auth.token", result: result, reason: reason, attrs: attrs,
		}
	}
	basicClient := tok("oauth client_credentials basic", 200, "success", "",
		map[string]any{"auth.oauth2.grant_type": "client_credentials", "auth.oauth2.client_id": "svc"},
		"grant_type", "client_credentials")
	basicClient.req = basicClient.req.With("Authorization", basicAuth("svc", "s3cret"))
	return []secCase{
		tok("oauth password ok", 200, "success", "",
			map[string]any{"auth.oauth2.grant_type": "password", "auth.username": "alice"},
			"grant_type", "password", "username", "alice", "password", "correct-horse"),
		tok("oauth password bad", 400, "failure", "invalid_grant",
			map[string]any{"auth.oauth2.grant_type": "password", "auth.username": "alice"},
			"grant_type", "password", "username", "alice", "password", "not-hers"),
		tok("oauth client_credentials form", 200, "success", "",
			map[string]any{"auth.oauth2.grant_type": "client_credentials", "auth.oauth2.client_id": "svc"},
			"grant_type", "client_credentials", "client_id", "svc", "client_secret", "s3cret"),
		basicClient,
		tok("oauth client_credentials bad secret", 401, "failure", "invalid_client",
			map[string]any{"auth.oauth2.grant_type": "client_credentials", "auth.oauth2.client_id": "svc"},
			"grant_type", "client_credentials", "client_id", "svc", "client_secret", "wrong-secret"),
		tok("oauth authorization_code ok", 200, "success", "",
			map[string]any{"auth.oauth2.grant_type": "authorization_code"},
			"grant_type", "authorization_code", "code", "good-code"),
		tok("oauth authorization_code bad", 400, "failure", "invalid_grant",
			map[string]any{"auth.oauth2.grant_type": "authorization_code"},
			"grant_type", "authorization_code", "code", "bad-code"),
		tok("oauth refresh_token ok", 200, "success", "",
			map[string]any{"auth.oauth2.grant_type": "refresh_token"},
			"grant_type", "refresh_token", "refresh_token", "good-refresh"),
		tok("oauth refresh_token bad", 400, "failure", "invalid_grant",
			map[string]any{"auth.oauth2.grant_type": "refresh_token"},
			"grant_type", "refresh_token", "refresh_token", "stale-refresh"),
	}
}

// plainCases cover logins, Basic, API keys and cookies with plain
// usernames.
func plainCases() []secCase {
	login := func(name string, req Request, status int, result, reason string, attrs map[string]any) secCase {
		if _, ok := attrs["auth.method"]; !ok {
			attrs["auth.method"] = "password"
		}
		if result == "success" {
			attrs["auth.session.issued"] = true
		}
		return secCase{name: name, req: req, status: status, span: "auth.login", result: result, reason: reason, attrs: attrs}
	}
	authz := func(name string, req Request, status int, span, result, reason string, attrs map[string]any) secCase {
		if oauthRegistered[reason] {
			attrs["auth.oauth2.error"] = reason
		}
		return secCase{name: name, req: req, status: status, span: span, result: result, reason: reason, attrs: attrs}
	}
	return []secCase{
		login("form login ok", formLogin("alice", "correct-horse"), 200, "success", "",
			map[string]any{"auth.username": "alice"}),
		login("form login bad password", formLogin("alice", "wrong"), 401, "failure", "invalid_credentials",
			map[string]any{"auth.username": "alice"}),
		login("json login ok", jsonLogin("bob", "hunter2"), 200, "success", "",
			map[string]any{"auth.username": "bob"}),
		login("json login email lowercased", jsonLogin("  Carol@Example.COM ", "x"), 401, "failure", "invalid_credentials",
			map[string]any{"auth.username": "carol@example.com"}),
		login("json login locked", jsonLogin("locked-user", "x"), 423, "failure", "locked",
			map[string]any{"auth.username": "locked-user"}),
		login("form login without fields", formRequest(http.MethodPost, "/login"), 401, "failure", "invalid_credentials",
			map[string]any{"auth.method": "none"}),
		authz("basic ok", get("/basic").With("Authorization", basicAuth("alice", "correct-horse")), 200,
			"auth.basic", "success", "", map[string]any{"auth.method": "basic", "auth.username": "alice"}),
		authz("basic bad password", get("/basic").With("Authorization", basicAuth("alice", "nope")), 401,
			"auth.basic", "failure", "unauthorized", map[string]any{"auth.method": "basic", "auth.username": "alice"}),
		authz("api key header", get("/api/orders").With("X-API-Key", "key-0123456789abcdef"), 401,
			"auth.authorize", "failure", "unauthorized", map[string]any{"auth.method": "api_key"}),
		authz("api key query", get("/api/orders?api_key=key-fedcba9876543210"), 401,
			"auth.authorize", "failure", "unauthorized", map[string]any{"auth.method": "api_key"}),
		authz("session cookie", get("/api/orders").With("Cookie", "theme=dark; session=cookie-0123456789"), 401,
			"auth.authorize", "failure", "unauthorized", map[string]any{"auth.method": "cookie"}),
		authz("logout with session cookie", Request{Method: http.MethodPost, Path: "/logout", Header: map[string]string{"Cookie": "session=cookie-0123456789"}}, 204,
			"auth.logout", "success", "", map[string]any{"auth.method": "cookie"}),
	}
}

// TestSecurityAttributes: every kind of credential the servers take gives
// exactly the documented security attributes (docs/security-attributes.md),
// with usernames in plain text and, in a second agent run, hashed with a
// fixed key.
func TestSecurityAttributes(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)

		t.Run("plain", func(t *testing.T) {
			ag := mustStartAgent(t, AgentOptions{PIDs: []int{srv.PID}, Security: securityConfig("plain")})
			cases := append(plainCases(), tokenCases()...)
			cases = append(cases, oauthCases()...)
			cases[0].parent = true // one joins a caller's trace, too
			runSecCases(t, srv, ag, "127.0.1", cases)
			ag.Stop(t)
		})

		t.Run("hash", func(t *testing.T) {
			ag := mustStartAgent(t, AgentOptions{
				PIDs: []int{srv.PID}, Security: securityConfig("hash"), Env: []string{userKeyEnvVar()},
			})
			hashed := func(u string) map[string]any { return map[string]any{"auth.username": usernameHash(u)} }
			plus := func(m map[string]any, kv ...any) map[string]any {
				for i := 0; i+1 < len(kv); i += 2 {
					m[kv[i].(string)] = kv[i+1]
				}
				return m
			}
			cases := []secCase{
				{name: "form login ok", req: formLogin("alice", "correct-horse"), status: 200, span: "auth.login", result: "success",
					attrs: plus(hashed("alice"), "auth.method", "password", "auth.session.issued", true)},
				{name: "json login email", req: jsonLogin("Carol@Example.COM", "x"), status: 401, span: "auth.login", result: "failure", reason: "invalid_credentials",
					attrs: plus(hashed("carol@example.com"), "auth.method", "password")},
				{name: "basic ok", req: get("/basic").With("Authorization", basicAuth("alice", "correct-horse")), status: 200, span: "auth.basic", result: "success",
					attrs: plus(hashed("alice"), "auth.method", "basic")},
				{name: "oauth password bad", req: formRequest(http.MethodPost, "/oauth/token", "grant_type", "password", "username", "bob", "password", "x"),
					status: 400, span: "auth.token", result: "failure", reason: "invalid_grant",
					attrs: plus(hashed("bob"), "auth.method", "oauth2", "auth.oauth2.grant_type", "password", "auth.oauth2.error", "invalid_grant")},
			}
			runSecCases(t, srv, ag, "127.0.1", cases)
			ag.Stop(t)
		})
	})
}

// oauthRegistered are the OAuth2 error codes the test servers use that an
// authorize route reports as auth.oauth2.error; an API's own words
// ({"error": "forbidden"}) are not OAuth2 errors.
var oauthRegistered = map[string]bool{"invalid_token": true, "insufficient_scope": true, "invalid_request": true}

// sentCase is one request a test sent, from its own source address.
type sentCase struct {
	c    secCase
	src  string
	want spanWant
}

// checkSentSpans finds each sent request's span by its client address and
// checks it exactly: the span, its security attributes, and — when
// uniqueTraces — that no two share a trace. more adds the caller's checks.
func checkSentSpans(t *testing.T, srv *Server, spans []Span, all []sentCase, uniqueTraces bool, more func(sentCase, Span)) {
	t.Helper()
	bySrc := indexSpans(t, spans, func(sp Span) string { return sp.Attr("client.address") })
	traces := map[string]bool{}
	for _, s := range all {
		sp, ok := bySrc[s.src]
		if !ok {
			t.Errorf("%s: no span from %s:\n%s", s.c.name, s.src, describeSpans(spans))
			continue
		}
		checkSpan(t, srv, sp, s.want)
		checkExactAttrs(t, s.c.name, sp.Attributes, s.c.wantAttrs(s.src))
		if uniqueTraces {
			if traces[sp.TraceID] {
				t.Errorf("%s: trace %s shared with another span", s.c.name, sp.TraceID)
			}
			traces[sp.TraceID] = true
		}
		more(s, sp)
	}
}
