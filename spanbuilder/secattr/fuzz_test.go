package secattr

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// FuzzJWT: any bearer token classifies without panicking into a known kind,
// and what is exported is clean and never the token.
func FuzzJWT(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEiLCJyb2xlcyI6WyJhIl19.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("opaque-token")
	e := mustExtractor(f, config.Security{JWT: config.JWTConfig{RolesClaim: "realm_access.roles"}})
	f.Fuzz(func(t *testing.T, tok string) {
		sc := e.scratches.get(nil)
		tk := decodeToken(tok, sc, nil)
		e.scratches.put(sc)
		switch tk.kind {
		case TokenJWT, TokenJWE, TokenOpaque, TokenMalformed:
		default:
			t.Fatalf("kind %q", tk.kind)
		}
		out := e.Extract(Input{Request: &decoder.Request{Header: hdr("Authorization", "Bearer "+tok)}, RequestTime: testTime})
		checkClean(t, out)
		if cred := strings.TrimSpace(tok); len(cred) >= 24 {
			for _, kv := range out.Attributes {
				if strings.Contains(kv.Value.Emit(), cred) {
					t.Fatalf("token exported in %s", kv.Key)
				}
			}
		}
	})
}

// FuzzBody: form, JSON and multipart field extraction stays bounded and
// never panics, whatever the bytes and content type.
func FuzzBody(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("username=alice&password=x"))
	f.Add("application/json", []byte(`{"user":{"email":"a@b"},"password":"x","n":[1,{"a":null}]}`))
	f.Add("multipart/form-data; boundary=B", []byte("--B\r\nContent-Disposition: form-data; name=\"pwd\"\r\n\r\nx\r\n--B--\r\n"))
	f.Add("", []byte(`[[[[{"a":`))
	e := mustExtractor(f, config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyPlain, BodyFields: []string{"user.email", "username"}}})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		h := hdr("Content-Type", ct)
		fs, _ := parseBodyMap(h, body)
		if len(fs) > maxFields {
			t.Fatalf("%d fields", len(fs))
		}
		for k, v := range fs {
			if len(k) > maxFieldKey || len(v.val) > maxFieldValue {
				t.Fatalf("field %d/%d bytes", len(k), len(v.val))
			}
		}
		in := Input{Route: config.Route{Kind: config.KindToken}, Request: &decoder.Request{Header: h, Body: body},
			Response: &decoder.Response{StatusCode: 400, Header: h, Body: body}, Result: "failure", RequestTime: testTime}
		checkClean(t, e.Extract(in))
	})
}

// FuzzAmbiguity: whatever the target, body and Authorization headers, a
// request flagged duplicate_username has no username, the kinds are known
// ones in order, and what is exported is clean.
func FuzzAmbiguity(f *testing.F) {
	f.Add("/login?username=a", "application/x-www-form-urlencoded", "username=b;username=c&password=x", "Basic YTpi")
	f.Add("/login", "application/json", `{"username":"a","Username":"b","x":{"k":1,"k":2}}`, "")
	f.Add("/login", "multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\na\r\n--B\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nb\r\n--B--\r\n", "")
	e := mustExtractor(f, config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyPlain, BodyFields: []string{"username", "user.email"}}})
	f.Fuzz(func(t *testing.T, target, ct, body, authz string) {
		req := &decoder.Request{Method: "POST", Target: target, Header: hdr("Content-Type", ct, "Authorization", authz, "Authorization", authz+"x"), Body: []byte(body)}
		out := e.Extract(Input{Route: config.Route{Kind: config.KindLogin}, Request: req, Result: "failure", RequestTime: testTime})
		checkClean(t, out)
		order := -1
		for _, k := range out.Ambiguous {
			i := slices.Index(ambiguityKinds[:], k)
			if i <= order {
				t.Fatalf("kinds %q out of order or unknown", out.Ambiguous)
			}
			order = i
		}
		if slices.Contains(out.Ambiguous, AmbiguousUsername) {
			if _, ok := attrs(t, out)["auth.username"]; ok || out.UserKey != 0 {
				t.Fatalf("username on an ambiguous request: %+v", out)
			}
		}
	})
}

// FuzzForwarded: the client address is the peer or an address named in the
// headers, and an untrusted peer is never overridden.
func FuzzForwarded(f *testing.F) {
	f.Add("10.0.0.1", "203.0.113.5, 10.0.0.2", "")
	f.Add("10.0.0.1", "", `for="[2001:db8::1]:80";proto=https, for=10.0.0.3`)
	f.Add("198.51.100.1", "1.2.3.4", "for=_hidden")
	f.Add("::ffff:10.0.0.1", "garbage,,", `for="unterminated`)
	e := mustExtractor(f, config.Security{TrustedProxies: []string{"10.0.0.0/8", "2001:db8::/32"}})
	f.Fuzz(func(t *testing.T, peer, xff, fwd string) {
		p, _ := netip.ParseAddr(peer)
		req := &decoder.Request{Header: hdr("X-Forwarded-For", xff, "Forwarded", fwd)}
		got := e.clientAddr(p, req)
		want := p.Unmap().WithZone("")
		if !e.isTrusted(want) || !want.IsValid() {
			if got != want {
				t.Fatalf("untrusted peer %v overridden by %v", p, got)
			}
			return
		}
		if got != want && !strings.Contains(xff+fwd, got.String()) && !strings.Contains(strings.ToLower(xff+fwd), strings.TrimPrefix(got.String(), "::ffff:")) {
			// mapped or zoned forms are normalised; anything else must come from the headers
			if !got.IsValid() {
				t.Fatalf("invalid client address from %q %q", xff, fwd)
			}
		}
		if s := e.subnetOf(got); got.IsValid() && s == "" {
			t.Fatalf("no subnet for %v", got)
		}
	})
}

func BenchmarkExtractLogin(b *testing.B) {
	e := mustExtractor(b, config.Security{SessionCookies: []string{"sid"}, TrustedProxies: []string{"10.0.0.0/8"}})
	in := input(config.KindLogin,
		request("/login", "username=Alice%40Example.com&password=hunter2&remember=1",
			"Host", "app", "User-Agent", "curl/8", "Content-Type", "application/x-www-form-urlencoded",
			"X-Forwarded-For", "203.0.113.9, 10.0.0.2", "Cookie", "theme=dark"),
		response(302, "", "Location", "/home", "Set-Cookie", "sid=abc; Path=/; HttpOnly"), "success")
	in.Peer = netip.MustParseAddr("10.0.0.1")
	in.Route.FailureMatchers = []config.BodyMatcher{{Contains: "Invalid", Reason: "invalid_credentials"}}
	b.ReportAllocs()
	for b.Loop() {
		out := e.Extract(in)
		if out.UserKey == 0 {
			b.Fatal("no user")
		}
	}
}

func BenchmarkExtractBearer(b *testing.B) {
	e := mustExtractor(b, config.Security{})
	tok := jwt(b, map[string]any{"alg": "RS256", "kid": "k"}, map[string]any{"sub": "u-1", "iss": "https://idp", "aud": []string{"api"}, "exp": 2e9, "roles": []string{"a", "b"}}, strings.Repeat("s", 342))
	in := input(config.KindOther, request("/api", "", "Authorization", "Bearer "+tok), response(200, ""), "success")
	b.ReportAllocs()
	for b.Loop() {
		e.Extract(in)
	}
}
