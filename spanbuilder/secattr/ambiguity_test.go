package secattr

import (
	"slices"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// TestAmbiguity: a request that names its username more than once with
// different values gets no username and says so; what else servers read
// differently is named too. The comments say who reads what (checked
// against Go 1.26 net/http and encoding/json, Express 5.2 with its
// urlencoded and json parsers, Python 3.11 parse_qs and json).
func TestAmbiguity(t *testing.T) {
	const (
		form = "application/x-www-form-urlencoded"
		js   = "application/json"
		mp   = "multipart/form-data; boundary=B"
	)
	plain := mustExtractor(t, config.Security{Username: config.UsernameConfig{
		Privacy: config.PrivacyPlain, BodyFields: []string{"username", "user.email", "email"},
	}})
	withHeader := mustExtractor(t, config.Security{Username: config.UsernameConfig{
		Privacy: config.PrivacyPlain, Header: "X-Remote-User",
	}})
	part := func(name, val string) string {
		return "--B\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + val + "\r\n"
	}
	framed := func(a decoder.Ambiguity) *decoder.Request {
		r := request("/login", "username=bob", "Content-Type", form)
		r.Ambiguous = a
		return r
	}
	tests := []struct {
		name  string
		e     *Extractor
		kind  string
		req   *decoder.Request
		user  string   // "" for none
		kinds []string // auth.request.ambiguous
	}{
		// Forms: Go's FormValue and parse_qs take the first, Express an array.
		{"form repeated", plain, config.KindLogin, request("/login", "username=decoy&username=victim&password=x", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form repeated, same value", plain, config.KindLogin, request("/login", "username=bob&username=bob", "Content-Type", form), "bob", nil},
		{"form blank first", plain, config.KindLogin, request("/login", "username=&username=victim", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form escaped name", plain, config.KindLogin, request("/login", "user%6Eame=decoy&username=victim", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form other case", plain, config.KindLogin, request("/login", "username=bob&UserName=eve", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form other case alone", plain, config.KindLogin, request("/login", "UserName=eve", "Content-Type", form), "eve", nil},
		{"form semicolon", plain, config.KindLogin, request("/login", "username=decoy;username=victim", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form semicolon only", plain, config.KindLogin, request("/login", "a=1;username=victim", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"form semicolon elsewhere", plain, config.KindLogin, request("/login", "username=bob&password=a;b", "Content-Type", form), "bob", nil},
		{"form other fields repeat", plain, config.KindLogin, request("/login", "username=bob&role=a&role=b", "Content-Type", form), "bob", nil},
		{"form two configured fields", plain, config.KindLogin, request("/login", "email=other@example.com&username=alice", "Content-Type", form), "alice", nil},
		// JSON: every parser takes the last; Go's also matches any case.
		{"json repeated", plain, config.KindLogin, request("/login", `{"username":"decoy","username":"victim","password":"x"}`, "Content-Type", js), "", []string{AmbiguousUsername, AmbiguousJSONKey}},
		{"json repeated, same value", plain, config.KindLogin, request("/login", `{"username":"bob","username":"bob"}`, "Content-Type", js), "bob", []string{AmbiguousJSONKey}},
		{"json escaped key", plain, config.KindLogin, request("/login", `{"username":"decoy","\u0075sername":"victim"}`, "Content-Type", js), "", []string{AmbiguousUsername, AmbiguousJSONKey}},
		{"json other case", plain, config.KindLogin, request("/login", `{"username":"decoy","Username":"victim"}`, "Content-Type", js), "", []string{AmbiguousUsername}},
		{"json unicode fold", plain, config.KindLogin, request("/login", `{"username":"decoy","u`+"\u017f"+`ername":"victim"}`, "Content-Type", js), "", []string{AmbiguousUsername}},
		{"json object then string", plain, config.KindLogin, request("/login", `{"username":{},"username":"victim"}`, "Content-Type", js), "", []string{AmbiguousUsername, AmbiguousJSONKey}},
		{"json nested repeated", plain, config.KindLogin, request("/login", `{"user":{"email":"a@example.com"},"user":{"email":"b@example.com"}}`, "Content-Type", js), "", []string{AmbiguousUsername, AmbiguousJSONKey}},
		{"json repeated elsewhere", plain, config.KindLogin, request("/login", `{"role":"user","username":"bob","role":"admin"}`, "Content-Type", js), "bob", []string{AmbiguousJSONKey}},
		{"json same key, other objects", plain, config.KindLogin, request("/login", `{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":1}],"username":"bob"}`, "Content-Type", js), "bob", nil},
		{"json repeated deep", plain, config.KindLogin, request("/login", `{"username":"bob","x":[{"y":{"z":1,"z":2}}]}`, "Content-Type", js), "bob", []string{AmbiguousJSONKey}},
		// Multipart: Go takes the first part, multer and cgi collect all.
		{"multipart repeated", plain, config.KindLogin, request("/login", part("username", "decoy")+part("username", "victim")+"--B--\r\n", "Content-Type", mp), "", []string{AmbiguousUsername}},
		{"multipart once", plain, config.KindLogin, request("/login", part("username", "bob")+part("password", "x")+"--B--\r\n", "Content-Type", mp), "bob", nil},
		// Sources: Basic, body and query must agree.
		{"basic and body", plain, config.KindLogin, request("/login", "username=dave", "Authorization", basic("carol", "pw"), "Content-Type", form), "", []string{AmbiguousUsername}},
		{"basic and body agree", plain, config.KindLogin, request("/login", "username=carol", "Authorization", basic("carol", "pw"), "Content-Type", form), "carol", nil},
		{"two basic users", plain, config.KindLogin, request("/login", "", "Authorization", basic("carol", "pw"), "Authorization", basic("dave", "pw")), "", []string{AmbiguousAuthorization, AmbiguousUsername}},
		{"two authorizations, one basic", plain, config.KindLogin, request("/login", "", "Authorization", basic("carol", "pw"), "Authorization", "Bearer x"), "carol", []string{AmbiguousAuthorization}},
		{"query and body", plain, config.KindLogin, request("/login?username=victim", "username=decoy&password=x", "Content-Type", form), "", []string{AmbiguousUsername}},
		{"query alone", plain, config.KindLogin, request("/login?username=bob&password=x", ""), "bob", nil},
		{"query and body agree", plain, config.KindLogin, request("/login?username=bob", "username=bob", "Content-Type", form), "bob", nil},
		{"query repeated", plain, config.KindLogin, request("/login?username=a&username=b#x", ""), "", []string{AmbiguousUsername}},
		{"password grant repeated", plain, config.KindToken, request("/token", "grant_type=password&username=erin&username=eve&password=x", "Content-Type", form), "", []string{AmbiguousUsername}},
		// A configured header is authoritative, unless it disagrees with itself.
		{"header over body", withHeader, config.KindLogin, request("/login", "username=eve", "X-Remote-User", "dave", "Content-Type", form), "dave", nil},
		{"header twice", withHeader, config.KindLogin, request("/login", "username=eve", "X-Remote-User", "dave", "x-remote-user", "erin", "Content-Type", form), "", []string{AmbiguousUsername}},
		// Framing, from the decoder, and header lines.
		{"framing", plain, config.KindLogin, framed(decoder.AmbiguousCLTE | decoder.AmbiguousCL | decoder.AmbiguousTE), "bob", []string{AmbiguousCLTE, AmbiguousContentLength, AmbiguousTransferEncoding}},
		{"two hosts", plain, config.KindLogin, request("/login", "username=bob", "Host", "a", "Content-Type", form, "host", "b"), "bob", []string{AmbiguousHost}},
		{"clean", plain, config.KindLogin, request("/login", "username=bob&password=x", "Host", "a", "Content-Type", form), "bob", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.e.Extract(input(tt.kind, tt.req, response(401, ""), "failure"))
			m := attrs(t, out)
			got, ok := m["auth.username"]
			switch {
			case tt.user == "" && (ok || out.UserKey != 0):
				t.Errorf("auth.username = %q, UserKey %d; want none", got.Emit(), out.UserKey)
			case tt.user != "" && (got.AsString() != tt.user || out.UserKey == 0):
				t.Errorf("auth.username = %q, UserKey %d; want %q", got.Emit(), out.UserKey, tt.user)
			}
			if !slices.Equal(out.Ambiguous, tt.kinds) {
				t.Errorf("Ambiguous = %q, want %q", out.Ambiguous, tt.kinds)
			}
			attr, ok := m[AttrAmbiguous]
			if ok != (tt.kinds != nil) || ok && !slices.Equal(attr.AsStringSlice(), tt.kinds) {
				t.Errorf("%s = %v (present %v), want %q", AttrAmbiguous, attr.AsStringSlice(), ok, tt.kinds)
			}
		})
	}
}

// TestAmbiguityHashed: with hashed usernames an ambiguous request has no
// hash either.
func TestAmbiguityHashed(t *testing.T) {
	e := mustExtractor(t, config.Security{})
	out := e.Extract(input(config.KindLogin, request("/login", `{"username":"decoy","username":"victim"}`, "Content-Type", "application/json"), nil, "unknown"))
	if _, ok := attrs(t, out)["auth.username"]; ok || out.UserKey != 0 {
		t.Errorf("username on an ambiguous request: %+v", out)
	}
}

func TestMayName(t *testing.T) {
	names := []string{"username", "user.email"}
	for q, want := range map[string]bool{
		"next=/home": false, "": false, "a=1&b=2": false,
		"UserName=x": true, "x=1&USER.EMAIL=a": true, "%75sername=x": true, "u\xc5\xbfername=x": true,
	} {
		if got := mayName(q, names); got != want {
			t.Errorf("mayName(%q) = %v, want %v", q, got, want)
		}
	}
}

func BenchmarkExtractLoginJSON(b *testing.B) {
	e := mustExtractor(b, config.Security{})
	in := input(config.KindLogin,
		request("/login?next=/home", `{"username":"alice@example.com","password":"hunter2","remember":true,"device":{"id":"d-1","name":"phone"}}`,
			"Host", "app", "User-Agent", "curl/8", "Content-Type", "application/json"),
		response(401, `{"error":"invalid"}`, "Content-Type", "application/json"), "failure")
	b.ReportAllocs()
	for b.Loop() {
		if out := e.Extract(in); out.UserKey == 0 {
			b.Fatal("no user")
		}
	}
}
