package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/otlpsink"
	"github.com/authprobe/authprobe/test/testutil"
)

// TestSecretsNeverLeak sends passwords, tokens, cookies, API keys, client
// secrets, Basic credentials, codes and refresh tokens, in every privacy
// mode, to two agents at once (stdout and OTLP exporters, debug logging),
// and searches everything they printed, logged, served on /metrics and sent
// over OTLP for each secret; in hash and drop modes for the usernames too.
func TestSecretsNeverLeak(t *testing.T) {
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		for _, mode := range []string{"hash", "plain", "drop"} {
			t.Run(mode, func(t *testing.T) { checkNoLeak(t, srv, mode) })
		}
	})
}

func checkNoLeak(t *testing.T, srv *Server, mode string) {
	sink := otlpsink.Start(t)
	opts := AgentOptions{
		PIDs: []int{srv.PID}, Security: securityConfig(mode), Env: []string{userKeyEnvVar()},
		Args: []string{"--log-level", "debug"},
	}
	agStdout := mustStartAgent(t, opts)
	opts.Args = append(opts.Args, otlpArgs(sink)...)
	agOTLP := mustStartAgent(t, opts)

	rnd := func(prefix string) string { return prefix + "-" + randomHex(t, 8) }
	var (
		user      = rnd("leaky-user")
		email     = "Leaky.Person-" + randomHex(t, 4) + "@Example.COM"
		basicUser = rnd("leaky-basic")
		grantUser = rnd("leaky-grant")
		curlUser  = rnd("leaky-curl")

		pwForm, pwJSON, pwBasic, pwOAuth, pwCurl = rnd("pwform"), rnd("pwjson"), rnd("pwbasic"), rnd("pwoauth"), rnd("pwcurl")
		pwSpecial                                = "p@ss w0rd&x=" + randomHex(t, 6) + "+%"
		pwPublic                                 = rnd("pwpublic")
		ccSecret                                 = rnd("ccsecret")
		badCode, badRefresh                      = rnd("code"), rnd("refresh")
		apiKey, apiKeyQuery                      = rnd("apikey"), rnd("apikeyq")
		clientCookie                             = rnd("cookie")
		opaque                                   = rnd("opaque")
		schemeWord, schemeCred                   = "Xscheme" + randomHex(t, 6), rnd("schemecred")
		minted                                   = mintJWT(map[string]any{"alg": "HS256", "typ": "JWT"},
			map[string]any{"sub": "alice", "roles": []string{"user"}, "jti": randomHex(t, 12), "exp": time.Now().Unix() + 600}, "hmac")
	)

	// Every auth request from its own address, so the two exporters' spans
	// pair up by client.address.
	next := 10
	src := func() string { next++; return fmt.Sprintf("127.0.2.%d", next-1) }
	field := func(r Response, key string) string { v, _ := r.JSON()[key].(string); return v }
	do := func(req Request, status int) Response {
		t.Helper()
		got := mustDo(t, mustClient(t, src()), srv, req)
		mustStatus(t, req.Method+" "+req.Path, got, status)
		return got
	}
	token := func(status int, kv ...string) Response {
		t.Helper()
		return do(formRequest(http.MethodPost, "/oauth/token", kv...), status)
	}

	do(formLogin(user, pwForm), 401)
	do(jsonLogin(email, pwJSON), 401)
	ok := do(jsonLogin("alice", "correct-horse"), 200)
	loginToken, session := field(ok, "token"), ok.Cookie("session")
	do(formLogin(user, pwSpecial), 401)
	do(get("/basic").With("Authorization", basicAuth(basicUser, pwBasic)), 401)
	do(get("/basic").With("Authorization", basicAuth("alice", "correct-horse")), 200)
	token(400, "grant_type", "password", "username", grantUser, "password", pwOAuth)
	token(401, "grant_type", "client_credentials", "client_id", "svc", "client_secret", ccSecret)
	cc := do(formRequest(http.MethodPost, "/oauth/token", "grant_type", "client_credentials").With("Authorization", basicAuth("svc", "s3cret")), 200)
	ccToken := field(cc, "access_token")
	codeToken := field(token(200, "grant_type", "authorization_code", "code", "good-code"), "access_token")
	token(400, "grant_type", "authorization_code", "code", badCode)
	refreshed := field(token(200, "grant_type", "refresh_token", "refresh_token", "good-refresh"), "access_token")
	token(400, "grant_type", "refresh_token", "refresh_token", badRefresh)
	do(bearer("/api/orders", loginToken).With("Cookie", "session="+session), 200)
	do(bearer("/api/orders", ccToken), 200)
	do(bearer("/api/orders/1", minted), 200)
	do(bearer("/api/orders", opaque), 401)
	do(get("/api/orders").With("X-API-Key", apiKey), 401)
	do(get("/api/orders?api_key="+apiKeyQuery+"&page=2"), 401)
	do(get("/api/orders").With("Cookie", "session="+clientCookie), 401)
	do(get("/api/orders").With("Authorization", schemeWord+" "+schemeCred), 401)
	mustStatus(t, "curl login", curlDo(t, src(), srv, formLogin(curlUser, pwCurl)), 401)
	mustStatus(t, "curl logout", curlDo(t, src(), srv, Request{Method: http.MethodPost, Path: "/logout", Header: map[string]string{"Cookie": "session=" + session}}), 204)
	authRequests := next - 10
	// Not an auth route: its body must not surface either.
	mustStatus(t, "public form", mustDo(t, mustClient(t, "127.0.2.250"), srv, formRequest(http.MethodPost, "/public/form", "password", pwPublic)), 200)
	if session == "" {
		t.Fatal("login set no session cookie")
	}
	for name, v := range map[string]string{"login token": loginToken, "client token": ccToken, "code token": codeToken, "refreshed": refreshed} {
		if strings.Count(v, ".") != 2 {
			t.Fatalf("%s from the server is %q, not a JWT", name, v)
		}
	}

	agStdout.WaitForSpans(t, authRequests, spanWait)
	sink.WaitForSpans(t, authRequests, spanWait)
	time.Sleep(spanSettle)
	metrics := agStdout.Metrics(t) + agOTLP.Metrics(t)
	agStdout.Stop(t)
	agOTLP.Stop(t)
	stdoutSpans := agStdout.Spans(t)
	var otlpSpans []Span
	for _, s := range sink.Spans() {
		otlpSpans = append(otlpSpans, fromOTLP(s))
	}
	if len(stdoutSpans) != authRequests || len(otlpSpans) != authRequests {
		t.Errorf("want %d spans from each exporter, got %d on stdout and %d over OTLP:\n%s\n%s",
			authRequests, len(stdoutSpans), len(otlpSpans), describeSpans(stdoutSpans), describeSpans(otlpSpans))
	}

	// The exporters agree attribute for attribute.
	byOTLP := indexSpans(t, otlpSpans, func(sp Span) string { return sp.Attr("client.address") })
	for _, sp := range stdoutSpans {
		o, ok := byOTLP[sp.Attr("client.address")]
		if !ok {
			t.Errorf("no OTLP span for %s", sp)
			continue
		}
		if a, b := jsonText(sp.Attributes), jsonText(o.Attributes); a != b {
			t.Errorf("stdout and OTLP attributes differ:\n  stdout: %s\n  otlp:   %s", a, b)
		}
	}

	// What each mode makes of the usernames (the search below would pass
	// vacuously if they never reached the span).
	usernames := map[string]bool{}
	for _, sp := range stdoutSpans {
		if sp.HasAttr("auth.username") {
			usernames[sp.Attr("auth.username")] = true
		}
	}
	lowerEmail := strings.ToLower(email)
	seen := []string{user, lowerEmail, basicUser, grantUser, curlUser, "alice"}
	switch mode {
	case "plain":
		for _, u := range seen {
			if !usernames[u] {
				t.Errorf("plain: no span with auth.username %q; have %v", u, sortedKeys(usernames))
			}
		}
	case "hash":
		for _, u := range seen {
			if !usernames[usernameHash(u)] {
				t.Errorf("hash: no span with auth.username %s (of %q); have %v", usernameHash(u), u, sortedKeys(usernames))
			}
		}
		for u := range usernames {
			if !strings.HasPrefix(u, "hmac:") || len(u) != len("hmac:")+32 {
				t.Errorf("hash: auth.username %q is not hmac: + 32 hex digits", u)
			}
		}
	case "drop":
		if len(usernames) > 0 {
			t.Errorf("drop: spans carry auth.username %v", sortedKeys(usernames))
		}
	}

	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	secrets := map[string]string{
		"form password":              pwForm,
		"json password":              pwJSON,
		"correct password":           "correct-horse",
		"special password":           pwSpecial,
		"special password, encoded":  url.QueryEscape(pwSpecial),
		"basic password":             pwBasic,
		"basic credentials":          b64(basicUser + ":" + pwBasic),
		"good basic credentials":     b64("alice:correct-horse"),
		"oauth password":             pwOAuth,
		"client secret":              ccSecret,
		"good client secret":         "s3cret",
		"client basic credentials":   b64("svc:s3cret"),
		"authorization code":         "good-code",
		"bad authorization code":     badCode,
		"refresh token":              "good-refresh",
		"bad refresh token":          badRefresh,
		"opaque token":               opaque,
		"api key header":             apiKey,
		"api key query":              apiKeyQuery,
		"client cookie":              clientCookie,
		"session cookie":             session,
		"unknown auth scheme":        schemeWord,
		"unknown scheme credentials": schemeCred,
		"curl password":              pwCurl,
		"public-route password":      pwPublic,
	}
	for name, tok := range map[string]string{
		"login token": loginToken, "client token": ccToken, "code token": codeToken,
		"refreshed token": refreshed, "minted token": minted,
	} {
		parts := strings.Split(tok, ".")
		secrets[name] = tok
		secrets[name+" payload"] = parts[1]
		secrets[name+" signature"] = parts[2]
	}
	if mode != "plain" {
		for i, u := range []string{user, email, lowerEmail, basicUser, grantUser, curlUser} {
			secrets[fmt.Sprintf("username %d", i)] = u
		}
	}

	var payloads []byte
	for _, p := range sink.RawPayloads() {
		payloads = append(payloads, p...)
	}
	if len(payloads) == 0 {
		t.Fatal("no OTLP payloads received")
	}
	outputs := map[string][]byte{
		"stdout spans":         []byte(agStdout.Stdout()),
		"stdout agent's log":   []byte(agStdout.Stderr()),
		"OTLP agent's stdout":  []byte(agOTLP.Stdout()),
		"OTLP agent's log":     []byte(agOTLP.Stderr()),
		"/metrics":             []byte(metrics),
		"OTLP payloads (sink)": payloads,
	}
	if mode == "plain" && !bytes.Contains(payloads, []byte(user)) {
		t.Errorf("plain: username %q not in the OTLP payloads: is the search looking at the right bytes?", user)
	}
	if !bytes.Contains(outputs["stdout agent's log"], []byte("level=DEBUG")) {
		t.Errorf("agent log has no debug lines: --log-level debug not in effect?\n%s", testutil.Tail(agStdout.Stderr(), 2000))
	}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("secret %q is empty", what)
		}
		for where, out := range outputs {
			if bytes.Contains(out, []byte(s)) {
				t.Errorf("%s: %s (%q) appears in %s", mode, what, s, where)
			}
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
