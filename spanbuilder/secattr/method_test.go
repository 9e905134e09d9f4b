package secattr

import (
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func TestMethod(t *testing.T) {
	e := mustExtractor(t, config.Security{SessionCookies: []string{"SESSIONID"}})
	const form = "application/x-www-form-urlencoded"
	multipart := "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n" +
		"--XyZ\r\nContent-Disposition: form-data; name=\"pwd\"\r\n\r\nhunter2\r\n--XyZ--\r\n"
	tests := []struct {
		name   string
		kind   string
		req    *decoder.Request
		method string
		extra  map[string]string // other attributes expected
	}{
		{"basic", config.KindLogin, request("/login", "", "Authorization", basic("alice", "pw")), MethodBasic, nil},
		{"basic lowercase scheme", config.KindLogin, request("/login", "", "authorization", "basic YWxpY2U6cHc="), MethodBasic, nil},
		{"bearer", config.KindOther, request("/api", "", "Authorization", "Bearer abc.def"), MethodBearer, nil},
		{"digest", config.KindLogin, request("/login", "", "Authorization", `Digest username="a", realm="r"`), "digest", nil},
		{"negotiate", config.KindLogin, request("/login", "", "Authorization", "Negotiate YIIB"), "negotiate", nil},
		{"bare secret is not a scheme", config.KindLogin, request("/login", "", "Authorization", "sk_live_abcdef"), MethodOther, nil},
		{"scheme with odd characters", config.KindLogin, request("/login", "", "Authorization", "a/b@c xyz"), MethodOther, nil},
		{"unknown scheme", config.KindLogin, request("/login", "", "Authorization", "MyScheme xyz"), MethodOther, nil},
		{"aws", config.KindLogin, request("/login", "", "Authorization", "AWS4-HMAC-SHA256 Credential=x"), "aws4-hmac-sha256", nil},
		{"empty authorization", config.KindLogin, request("/login", "", "Authorization", "  "), MethodNone, nil},
		{"api key header", config.KindOther, request("/api", "", "x-api-key", "k"), MethodAPIKey, nil},
		{"api key query", config.KindOther, request("/api?a=1&api_key=k", ""), MethodAPIKey, nil},
		{"empty api key query", config.KindOther, request("/api?api_key=", ""), MethodNone, nil},
		{"password form", config.KindLogin, request("/login", "username=alice&password=pw", "Content-Type", form), MethodPassword, nil},
		{"password form bracket", config.KindLogin, request("/login", "user%5Bname%5D=a&user%5Bpassword%5D=pw", "Content-Type", form), MethodPassword, nil},
		{"password sniffed form", config.KindLogin, request("/login", "login=a&passwd=pw"), MethodPassword, nil},
		{"password json", config.KindLogin, request("/login", `{"email":"a@b.c","pass":"pw"}`, "Content-Type", "application/json; charset=utf-8"), MethodPassword, nil},
		{"password nested json", config.KindLogin, request("/login", `{"user":{"name":"a","password":"pw"}}`, "Content-Type", "application/json"), MethodPassword, nil},
		{"password multipart", config.KindLogin, request("/login", multipart, "Content-Type", "multipart/form-data; boundary=XyZ"), MethodPassword, nil},
		{"empty password is not one", config.KindLogin, request("/login", "username=a&password=", "Content-Type", form), MethodNone, nil},
		{"oauth2 form", config.KindToken, request("/token", "grant_type=client_credentials&client_id=app-1&client_secret=s", "Content-Type", form), MethodOAuth2,
			map[string]string{"auth.oauth2.grant_type": "client_credentials", "auth.oauth2.client_id": "app-1"}},
		{"oauth2 json", config.KindToken, request("/token", `{"grant_type":"password","username":"bob","password":"pw"}`, "Content-Type", "application/json"), MethodOAuth2,
			map[string]string{"auth.oauth2.grant_type": "password"}},
		{"oauth2 client_secret_basic", config.KindToken, request("/token", "grant_type=client_credentials", "Authorization", basic("my%20app", "s"), "Content-Type", form), MethodOAuth2,
			map[string]string{"auth.oauth2.client_id": "my app"}},
		{"grant_type ignored off token routes", config.KindLogin, request("/login", "grant_type=password&username=a&password=pw", "Content-Type", form), MethodPassword, nil},
		{"cookie", config.KindOther, request("/me", "", "Cookie", "theme=dark; SESSIONID=abc"), MethodCookie, nil},
		{"unconfigured cookie", config.KindOther, request("/me", "", "Cookie", "other=abc"), MethodNone, nil},
		{"none", config.KindLogin, request("/login", ""), MethodNone, nil},
		{"authorization beats api key", config.KindOther, request("/api", "", "X-API-Key", "k", "Authorization", "Bearer t"), MethodBearer, nil},
		{"api key beats grant", config.KindToken, request("/token", "grant_type=password", "X-API-Key", "k", "Content-Type", form), MethodAPIKey, nil},
		{"grant beats password", config.KindToken, request("/token", "grant_type=password&password=pw", "Content-Type", form), MethodOAuth2, nil},
		{"password beats cookie", config.KindLogin, request("/login", "password=pw", "Cookie", "SESSIONID=1", "Content-Type", form), MethodPassword, nil},
		{"duplicate authorization", config.KindLogin, request("/login", "", "Authorization", basic("a", "b"), "Authorization", "Bearer x"), MethodBasic,
			map[string]string{"auth.authorization.duplicate": "true"}},
		{"nil request", config.KindLogin, nil, MethodNone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := e.Extract(input(tt.kind, tt.req, nil, "unknown"))
			got := attrs(t, out)
			if m := got["auth.method"].AsString(); m != tt.method {
				t.Errorf("auth.method = %q, want %q", m, tt.method)
			}
			for k, want := range tt.extra {
				if v, ok := got[k]; !ok || str(v) != want {
					t.Errorf("%s = %q, want %q", k, str(v), want)
				}
			}
		})
	}
}

func TestGrantType(t *testing.T) {
	tests := map[string]string{
		"password":            "password",
		" Client_Credentials": "client_credentials",
		"authorization_code":  "authorization_code",
		"refresh_token":       "refresh_token",
		"urn:ietf:params:oauth:grant-type:device_code":    "device_code",
		"urn:ietf:params:oauth:grant-type:jwt-bearer":     "jwt_bearer",
		"urn:ietf:params:oauth:grant-type:token-exchange": "token_exchange",
		"custom\r\nX-Injected: 1":                         "customx-injected: 1",
		strings.Repeat("g", 500):                          strings.Repeat("g", maxGrantLen),
	}
	for in, want := range tests {
		if got := normaliseGrant(in); got != want {
			t.Errorf("normaliseGrant(%q) = %q, want %q", in, got, want)
		}
	}
}
