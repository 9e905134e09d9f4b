package secattr

import (
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func TestParseBody(t *testing.T) {
	tests := []struct {
		name string
		h    decoder.Header
		body []byte
		want map[string]string // field → value; "!" means absent
	}{
		{"form", hdr("Content-Type", "application/x-www-form-urlencoded"), []byte("a=1&b=x%20y&a=2&bad=%zz&=v"), map[string]string{"a": "1", "b": "x y", "bad": "!", "": "!"}},
		{"json paths", hdr("Content-Type", "application/json"), []byte(`{"a":{"b":[1,"x",{"c":null}]},"t":true}`), map[string]string{"a.b.0": "1", "a.b.1": "x", "a.b.2.c": "", "t": "true"}},
		{"json sniffed", nil, []byte(` {"k":"v"}`), map[string]string{"k": "v"}},
		{"json truncated keeps prefix", hdr("Content-Type", "application/json"), mustFixture(t, "json-truncated.json"), map[string]string{"user.email": "trunc@example.org", "user.profile.bio": "!"}},
		{"json bomb", hdr("Content-Type", "application/json"), []byte(`{"a":"b","x":` + strings.Repeat("[", 100000)), map[string]string{"a": "b"}},
		{"json object bomb", hdr("Content-Type", "application/json"), []byte(strings.Repeat(`{"a":`, 100000)), map[string]string{"a": "", "a.a.a": ""}},
		{"json invalid utf-8", hdr("Content-Type", "application/json"), []byte("{\"u\":\"a\xffb\"}"), map[string]string{"u": "a\ufffdb"}},
		{"json garbage", hdr("Content-Type", "application/json"), []byte(`{"a":1,,,"b":2}`), map[string]string{"a": "1", "b": "!"}},
		{"multipart", hdr("Content-Type", "multipart/form-data; boundary=b0undary"), mustFixture(t, "multipart-login.txt"), map[string]string{"email": "Mallory@Example.org", "password": "multipart-Secret-42", "avatar": "!"}},
		{"multipart truncated", hdr("Content-Type", "multipart/form-data; boundary=b0undary"), mustFixture(t, "multipart-login.txt")[:60], map[string]string{"email": "", "password": "!"}},
		{"multipart no boundary", hdr("Content-Type", "multipart/form-data"), mustFixture(t, "multipart-login.txt"), map[string]string{"email": "!"}},
		{"unknown type", hdr("Content-Type", "application/xml"), []byte("<a>b=c</a>"), map[string]string{"<a>b": "!"}},
		{"encoded", hdr("Content-Type", "application/json", "Content-Encoding", "br"), []byte(`{"a":"b"}`), map[string]string{"a": "!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := parseBodyMap(tt.h, tt.body)
			for k, want := range tt.want {
				v, ok := f[k]
				if want == "!" {
					if ok {
						t.Errorf("%q = %q, want absent", k, v.val)
					}
					continue
				}
				if !ok || v.val != want {
					t.Errorf("%q = %q (present %v), want %q", k, v.val, ok, want)
				}
			}
		})
	}

	// Many fields: bounded.
	many := strings.Repeat("f=1&", 10000)
	if f := parseForm(newScratchPool().get(nil), many+"zz=2"); f.len() > maxFields {
		t.Errorf("%d fields kept", f.len())
	}
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 5000 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":1`)
	}
	sb.WriteString("}")
	if f, _ := parseJSON(newScratchPool().get(nil), []byte(sb.String())); f.len() > maxFields {
		t.Errorf("%d json fields kept", f.len())
	}
}

// TestHostile feeds whole exchanges an attacker controls and checks Extract
// degrades to safe, bounded attributes.
func TestHostile(t *testing.T) {
	e := mustExtractor(t, config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyPlain}, SessionCookies: []string{"sid"}})
	huge := strings.Repeat("A", 1<<20)
	tests := []struct {
		name string
		req  *decoder.Request
		resp *decoder.Response
		want map[string]string
	}{
		{"oversized bearer", request("/api", "", "Authorization", "Bearer "+huge), nil, map[string]string{"auth.method": "bearer", "auth.token_type": "opaque"}},
		{"oversized jwt-shaped bearer", request("/api", "", "Authorization", "Bearer "+huge+"."+huge+"."+huge), nil, map[string]string{"auth.token_type": "malformed"}},
		{"oversized basic", request("/login", "", "Authorization", "Basic "+huge), nil, map[string]string{"auth.method": "basic", "auth.username": ""}},
		{"oversized username header", request("/login", "username="+huge, "Content-Type", "application/x-www-form-urlencoded"), nil, map[string]string{"auth.username": strings.Repeat("A", MaxValueLen)}},
		{"crlf in authorization", request("/login", "", "Authorization", "Bearer a\r\nX-Injected: 1"), nil, map[string]string{"auth.method": "bearer", "auth.token_type": "opaque"}},
		{"crlf in scheme", request("/login", "", "Authorization", "Evil\r\nX: y"), nil, map[string]string{"auth.method": "other"}},
		{"duplicate authorization", request("/login", "", "Authorization", "Bearer a", "authorization", basic("x", "y")), nil,
			map[string]string{"auth.method": "bearer", "auth.authorization.duplicate": "true", "auth.username": ""}},
		{"json bomb body", request("/login", strings.Repeat("[", 100000), "Content-Type", "application/json"), nil, map[string]string{"auth.method": "none"}},
		{"binary body", request("/login", "\x00\x01\x02=\xff\xfe&password=\x00", "Content-Type", "application/x-www-form-urlencoded"), nil, map[string]string{"auth.method": "password"}},
		{"invalid utf-8 everywhere", request("/login", "username=%C3%28%ED%A0%80x", "Content-Type", "application/x-www-form-urlencoded"), response(401, "{\"error\":\"\xff\"}", "Content-Type", "application/json"),
			map[string]string{"auth.username": "(x"}},
		{"garbage response", request("/login", ""), response(200, strings.Repeat("{\"a\":", 50000), "Set-Cookie", "sid", "Set-Cookie", "=x", "Location", "%%%"), map[string]string{"auth.session.issued": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := e.Extract(input(config.KindLogin, tt.req, tt.resp, "success"))
			got := attrs(t, out)
			for k, want := range tt.want {
				v, ok := got[k]
				if want == "" {
					if ok {
						t.Errorf("%s = %q, want absent", k, str(v))
					}
				} else if str(v) != want {
					t.Errorf("%s = %q, want %q", k, str(v), want)
				}
			}
			checkClean(t, out)
		})
	}
}

// checkClean asserts every string attribute is capped and printable.
func checkClean(tb testing.TB, out Output) {
	tb.Helper()
	for _, kv := range out.Attributes {
		vals := []string{kv.Value.Emit()}
		if kv.Value.Type() == 4 || kv.Value.Type() == 8 { // STRING, STRINGSLICE
			vals = append(kv.Value.AsStringSlice(), kv.Value.AsString())
		}
		for _, v := range vals {
			if len(v) > MaxValueLen {
				tb.Errorf("%s: %d bytes", kv.Key, len(v))
			}
			if v != clean(v, MaxValueLen) {
				tb.Errorf("%s: not clean: %q", kv.Key, v)
			}
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  plain  ", "plain"},
		{"a\r\nb\tc\x00d\x7f\u0085e", "abcde"},
		{"x\xff\xfey", "xy"},
		{"\u202eevil\u2066\u200b", "evil"},
		{strings.Repeat("é", 200), strings.Repeat("é", 128)},
		{strings.Repeat("a", 300), strings.Repeat("a", 256)},
	}
	for _, tt := range tests {
		if got := clean(tt.in, MaxValueLen); got != tt.want {
			t.Errorf("clean(%.20q) = %.20q, want %.20q", tt.in, got, tt.want)
		}
	}
	if got := clean("abcdef", 3); got != "abc" {
		t.Errorf("cap 3: %q", got)
	}
}
