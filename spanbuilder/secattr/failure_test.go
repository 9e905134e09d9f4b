package secattr

import (
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func TestOutcome(t *testing.T) {
	e := mustExtractor(t, config.Security{})
	matchers := []config.BodyMatcher{
		{JSONField: "error.code", Equals: "MFA_REQUIRED", Reason: "mfa_required"},
		{JSONField: "locked", Reason: "locked"},
		{Contains: "Invalid username or password", Reason: "invalid_credentials", Result: "failure"},
		{Contains: "Internal oops", Reason: "server_error", Result: "error"},
	}
	const js = "application/json"
	tests := []struct {
		name       string
		kind       string
		resp       *decoder.Response
		result     string // inferred from status
		wantResult string
		wantReason string
		wantOAuth  string
	}{
		{"json equals", config.KindLogin, response(401, `{"error":{"code":"MFA_REQUIRED"}}`, "Content-Type", js), "failure", "", "mfa_required", ""},
		{"json equals mismatch", config.KindLogin, response(401, `{"error":{"code":"OTHER"}}`, "Content-Type", js), "failure", "", "", ""},
		{"json exists object", config.KindLogin, response(403, `{"locked":{"until":1}}`, "Content-Type", js), "failure", "", "locked", ""},
		{"refine only on failure", config.KindLogin, response(200, `{"locked":false}`, "Content-Type", js), "success", "", "", ""},
		{"200 error page forced failure", config.KindLogin, response(200, `<html><p>Invalid username or password</p>`, "Content-Type", "text/html"), "success", "failure", "invalid_credentials", ""},
		{"forced error", config.KindLogin, response(200, `Internal oops`), "success", "error", "server_error", ""},
		{"first match wins", config.KindLogin, response(401, `{"locked":1,"m":"Invalid username or password"}`, "Content-Type", js), "failure", "", "locked", ""},
		{"gzip body not parsed", config.KindLogin, response(401, `{"locked":1}`, "Content-Type", js, "Content-Encoding", "gzip"), "failure", "", "", ""},
		{"oauth2 json error", config.KindToken, response(400, `{"error":"invalid_grant","error_description":"bad"}`, "Content-Type", js), "failure", "", "invalid_grant", "invalid_grant"},
		{"oauth2 json error on success", config.KindToken, response(200, `{"error":"weird"}`, "Content-Type", js), "success", "", "", "weird"},
		{"oauth2 redirect error", config.KindAuthorize, response(302, "", "Location", "https://app/cb?error=access_denied&state=s"), "success", "failure", "access_denied", "access_denied"},
		{"oauth2 fragment error", config.KindAuthorize, response(302, "", "Location", "https://app/cb#error=login_required"), "unknown", "failure", "login_required", "login_required"},
		{"oauth2 redirect keeps error result", config.KindAuthorize, response(302, "", "Location", "/cb?error=server_error"), "error", "", "", "server_error"},
		{"oauth2 redirect success", config.KindAuthorize, response(302, "", "Location", "/cb?code=abc"), "success", "", "", ""},
		{"oauth2 error cleaned", config.KindToken, response(400, "{\"error\":\"bad\\r\\nX: y\\u202e\"}", "Content-Type", js), "failure", "", "badX: y", "badX: y"},
		{"no oauth2 off token routes", config.KindLogin, response(400, `{"error":"Invalid password"}`, "Content-Type", js), "failure", "", "", ""},
		{"no response", config.KindLogin, nil, "unknown", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(tt.kind, request("/x", ""), tt.resp, tt.result)
			in.Route.FailureMatchers = matchers
			out := e.Extract(in)
			if out.Result != tt.wantResult || out.FailureReason != tt.wantReason {
				t.Errorf("result %q reason %q, want %q %q", out.Result, out.FailureReason, tt.wantResult, tt.wantReason)
			}
			if got := attrs(t, out)["auth.oauth2.error"].AsString(); got != tt.wantOAuth {
				t.Errorf("auth.oauth2.error = %q, want %q", got, tt.wantOAuth)
			}
		})
	}

	// A matcher's reason wins over the OAuth2 code.
	in := input(config.KindToken, request("/token", ""), response(400, `{"error":"invalid_grant","locked":true}`, "Content-Type", js), "failure")
	in.Route.FailureMatchers = matchers
	if out := e.Extract(in); out.FailureReason != "locked" {
		t.Errorf("matcher vs oauth2: reason %q", out.FailureReason)
	}
}

func TestSessionIssued(t *testing.T) {
	named := mustExtractor(t, config.Security{SessionCookies: []string{"sid"}})
	anyCookie := mustExtractor(t, config.Security{})
	tests := []struct {
		name   string
		e      *Extractor
		kind   string
		resp   *decoder.Response
		result string
		want   bool
	}{
		{"configured cookie", named, config.KindLogin, response(302, "", "Set-Cookie", "theme=x", "Set-Cookie", "sid=abc; Path=/; HttpOnly"), "success", true},
		{"other cookie only", named, config.KindLogin, response(302, "", "Set-Cookie", "theme=x"), "success", false},
		{"any cookie", anyCookie, config.KindLogin, response(200, "", "Set-Cookie", "JSESSIONID=1"), "success", true},
		{"deleting cookie max-age", named, config.KindLogin, response(200, "", "Set-Cookie", "sid=x; Max-Age=0"), "success", false},
		{"deleting cookie empty", named, config.KindLogin, response(200, "", "Set-Cookie", `sid=""; Path=/`), "success", false},
		{"deleting cookie expires", named, config.KindLogin, response(200, "", "Set-Cookie", "sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT"), "success", false},
		{"future expires", named, config.KindLogin, response(200, "", "Set-Cookie", "sid=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT"), "success", true},
		{"access token", anyCookie, config.KindToken, response(200, `{"access_token":"eyJ","token_type":"Bearer"}`, "Content-Type", "application/json"), "success", true},
		{"id token", anyCookie, config.KindToken, response(200, `{"id_token":"x"}`), "success", true},
		{"empty token", anyCookie, config.KindToken, response(200, `{"access_token":""}`), "success", false},
		{"failure never issues", anyCookie, config.KindLogin, response(401, "", "Set-Cookie", "sid=x"), "failure", false},
		{"logout never issues", anyCookie, config.KindLogout, response(200, "", "Set-Cookie", "sid=x"), "success", false},
		{"forced failure on 200", anyCookie, config.KindLogin, response(200, "Invalid username or password", "Set-Cookie", "sid=x"), "success", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(tt.kind, request("/x", ""), tt.resp, tt.result)
			in.Route.FailureMatchers = []config.BodyMatcher{{Contains: "Invalid username", Reason: "invalid_credentials", Result: "failure"}}
			_, got := attrs(t, tt.e.Extract(in))["auth.session.issued"]
			if got != tt.want {
				t.Errorf("auth.session.issued = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestOAuthErrorOnAuthorizeRoutes: an API's own {"error": "forbidden"} is
// not an OAuth2 error; the registered codes are.
func TestOAuthErrorOnAuthorizeRoutes(t *testing.T) {
	e := mustExtractor(t, config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyDrop}})
	tests := []struct {
		kind, body string
		want       string
	}{
		{config.KindAuthorize, `{"error":"forbidden"}`, ""},
		{config.KindAuthorize, `{"error":"insufficient_scope"}`, "insufficient_scope"},
		{config.KindToken, `{"error":"custom_vendor_code"}`, "custom_vendor_code"},
	}
	for _, tt := range tests {
		out := e.Extract(input(tt.kind, request("/x", ""), response(403, tt.body, "Content-Type", "application/json"), "failure"))
		got := str(attrs(t, out)["auth.oauth2.error"])
		if got != tt.want {
			t.Errorf("%s %s: auth.oauth2.error %q, want %q", tt.kind, tt.body, got, tt.want)
		}
	}
}
