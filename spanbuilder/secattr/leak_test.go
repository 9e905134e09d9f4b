package secattr

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// TestNoLeak sends exchanges carrying known secrets through Extract in every
// privacy mode and checks no secret (or a long piece of one) shows up
// anywhere in the Output.
func TestNoLeak(t *testing.T) {
	const (
		password     = "Pa55-w0rd-SECRET-1"
		basicPass    = "basic-SECRET-pass-2"
		apiKey       = "apikey-SECRET-3"
		cookieVal    = "cookie-SECRET-4"
		clientSecret = "client-SECRET-5"
		opaqueTok    = "opaque-SECRET-token-6"
		refreshTok   = "refresh-SECRET-7"
		respToken    = "issued-SECRET-token-8"
		respCookie   = "setcookie-SECRET-9"
		rawAuthz     = "rawauthz-SECRET-10"
		jwtSig       = "jwtsigSECRET11"
	)
	jwtTok := jwt(t, map[string]any{"alg": "HS256"}, map[string]any{"sub": "user-1", "roles": []any{"admin"}}, jwtSig)
	secrets := []string{password, basicPass, apiKey, cookieVal, clientSecret, opaqueTok, refreshTok, respToken, respCookie, rawAuthz, jwtSig, jwtTok}
	form := "application/x-www-form-urlencoded"
	js := "application/json"
	type ex struct {
		kind string
		req  *decoder.Request
		resp *decoder.Response
	}
	exchanges := []ex{
		{config.KindLogin, request("/login?api_key="+apiKey, "username=alice%40example.com&password="+password, "Content-Type", form, "Cookie", "sid="+cookieVal),
			response(302, "", "Set-Cookie", "sid="+respCookie+"; HttpOnly", "Location", "/home")},
		{config.KindLogin, request("/login", `{"user":{"email":"bob@example.com"},"password":"`+password+`"}`, "Content-Type", js),
			response(200, `{"token":"`+respToken+`"}`, "Content-Type", js)},
		{config.KindLogin, request("/login", mustMultipart(password), "Content-Type", "multipart/form-data; boundary=B"), response(401, "Invalid password "+password)},
		{config.KindLogin, request("/login", "", "Authorization", basic("carol", basicPass)), response(401, "")},
		{config.KindOther, request("/api", "", "Authorization", "Bearer "+opaqueTok, "X-API-Key", apiKey), response(200, "")},
		{config.KindOther, request("/api", "", "Authorization", "Bearer "+jwtTok), response(200, "")},
		{config.KindOther, request("/api", "", "Authorization", rawAuthz), response(401, "")},
		{config.KindOther, request("/api", "", "Authorization", rawAuthz+" "+rawAuthz), response(401, "")},
		{config.KindToken, request("/token", "grant_type=client_credentials&client_id=svc&client_secret="+clientSecret, "Content-Type", form),
			response(200, `{"access_token":"`+respToken+`","refresh_token":"`+refreshTok+`"}`, "Content-Type", js)},
		{config.KindToken, request("/token", `{"grant_type":"refresh_token","refresh_token":"`+refreshTok+`","client_secret":"`+clientSecret+`"}`, "Content-Type", js),
			response(400, `{"error":"invalid_grant","error_description":"token `+refreshTok+` revoked"}`, "Content-Type", js)},
		{config.KindToken, request("/token", "grant_type=password&username=dave&password="+password, "Authorization", basic("svc", clientSecret), "Content-Type", form), response(200, "")},
		{config.KindAuthorize, request("/authorize?client_id=c", "", "Cookie", "sid="+cookieVal), response(302, "", "Location", "https://app/cb?code="+respToken+"&state=x")},
		// Requests crafted to confuse parsers carry secrets too.
		{config.KindLogin, request("/login?username=q&password="+password, "username=a&username=b&password="+password+"&password="+basicPass, "Content-Type", form), response(401, "")},
		{config.KindLogin, request("/login", "username=x;password="+password, "Content-Type", form), response(401, "")},
		{config.KindLogin, request("/login", `{"username":"a","password":"`+password+`","password":"`+basicPass+`","username":"b"}`, "Content-Type", js), response(401, "")},
		{config.KindLogin, request("/login", "", "Authorization", basic("carol", basicPass), "Authorization", basic("dave", password)), response(401, "")},
	}
	for _, mode := range []string{config.PrivacyHash, config.PrivacyPlain, config.PrivacyDrop} {
		for _, random := range []bool{false, true} {
			cfg := config.Security{
				Username:       config.UsernameConfig{Privacy: mode, RandomKey: random},
				SessionCookies: []string{"sid"},
				TrustedProxies: []string{"10.0.0.0/8"},
			}
			e := mustExtractor(t, cfg)
			for i, x := range exchanges {
				in := input(x.kind, x.req, x.resp, "failure")
				in.Peer = netip.MustParseAddr("10.0.0.1")
				in.Route.FailureMatchers = []config.BodyMatcher{{Contains: "Invalid", Reason: "invalid_credentials"}}
				for _, result := range []string{"success", "failure"} {
					in.Result = result
					dump := strings.ToLower(fmt.Sprintf("%v %+v %#v", e.Extract(in), e.Extract(in), e.Extract(in)))
					for _, s := range secrets {
						s = strings.ToLower(s)
						if strings.Contains(dump, s) || containsChunk(dump, s, 8) {
							t.Errorf("mode %s random %v exchange %d: secret %q leaked: %s", mode, random, i, s, dump)
						}
					}
				}
			}
		}
	}
}

// containsChunk reports whether any n-byte piece of secret is in s.
func containsChunk(s, secret string, n int) bool {
	for i := 0; i+n <= len(secret); i++ {
		if strings.Contains(s, secret[i:i+n]) {
			return true
		}
	}
	return false
}

func mustMultipart(password string) string {
	return "--B\r\nContent-Disposition: form-data; name=\"login\"\r\n\r\nerin\r\n--B\r\nContent-Disposition: form-data; name=\"pwd\"\r\n\r\n" + password + "\r\n--B--\r\n"
}
