package spanbuilder

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/spanbuilder/secattr"
)

// base is the wall time of kernel time 0 in these tests.
var base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testToWall(ns uint64) time.Time { return base.Add(time.Duration(ns)) }

var testRoutes = []config.Route{
	{Name: "auth.login", Kind: config.KindLogin, Method: "POST", Path: "/login",
		FailureMatchers: []config.BodyMatcher{{JSONField: "error", Equals: "mfa", Reason: "mfa_required", Result: "failure"}}},
	{Name: "auth.authorize", Kind: config.KindAuthorize, Path: "/api/**"},
	{Name: "auth.token", Kind: config.KindToken, Method: "POST", Path: "/oauth/token"},
}

// mustBuilder makes a Builder with plain usernames (so tests can see them)
// over testRoutes, adjusted by edit.
func mustBuilder(tb testing.TB, edit func(*Config)) *Builder {
	tb.Helper()
	cfg := Config{
		Routes: testRoutes,
		Security: config.Security{
			Username:       config.UsernameConfig{Privacy: config.PrivacyPlain},
			TrustedProxies: []string{"10.0.0.0/8"},
		},
		SecAttr:     secattr.Options{Env: func(string) string { return "" }},
		ServiceName: "shop",
		ToWall:      testToWall,
	}
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return b
}

// exchange is a hand-made decoder output: a request from 192.0.2.7:50000
// to port 8080 at kernel times 1000..2000, a response at 3000..4000.
func exchange(method, target string, reqHdr decoder.Header, body string, code int, respHdr decoder.Header, respBody string) *decoder.Exchange {
	ex := &decoder.Exchange{
		Conn: decoder.ConnInfo{
			Key:   decoder.ConnKey{Sock: 0xffff888012345678, Gen: 1},
			Peer:  netip.MustParseAddrPort("192.0.2.7:50000"),
			Local: netip.MustParseAddrPort("127.0.0.1:8080"),
		},
		Request: &decoder.Request{Method: method, Target: target, Proto: "HTTP/1.1",
			Header: reqHdr, Body: []byte(body), ContentLength: int64(len(body))},
		RequestStart: 1000, RequestEnd: 2000,
	}
	if code == 0 {
		ex.End = decoder.EndClosed
		return ex
	}
	ex.Response = &decoder.Response{Proto: "HTTP/1.1", StatusCode: code, Header: respHdr,
		Body: []byte(respBody), ContentLength: int64(len(respBody))}
	ex.ResponseStart, ex.ResponseEnd = 3000, 4000
	return ex
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func TestBuild(t *testing.T) {
	form := hdr("Host", "shop", "Content-Type", "application/x-www-form-urlencoded", "User-Agent", "curl/8.5")
	tests := []struct {
		name    string
		edit    func(*Config)
		ex      *decoder.Exchange
		proc    Process
		want    map[string]any // attributes that must be present with these values
		absent  []string       // attributes that must not be present
		span    Span           // Name, Result, FailureReason, StatusCode, RouteKind, Process.ServiceName, End
		parent  string         // trace id of the parent, "" for none
		secrets []string       // must appear nowhere in the span
	}{
		{
			name: "login failure joins the caller's trace",
			ex: exchange("POST", "/login?next=%2Fhome", append(cloneHeader(form), decoder.HeaderField{Name: "traceparent", Value: validTP}),
				"username=Alice%40Example.com&password=hunter2", 401, hdr("Content-Type", "text/plain"), "nope"),
			proc: Process{PID: 42, Exe: "/usr/bin/python3.11"},
			want: map[string]any{
				"auth.result": "failure", "auth.failure_reason": "invalid_credentials",
				"net.peer.ip": "192.0.2.7", "client.address": "192.0.2.7",
				"network.peer.address": "192.0.2.7", "network.peer.port": int64(50000),
				"auth.user_agent": "curl/8.5", "user_agent.original": "curl/8.5",
				"http.target": "/login", "url.path": "/login", "http.route": "/login",
				"http.request.method": "POST", "http.response.status_code": int64(401),
				"server.port": int64(8080), "auth.resource": "/login", "auth.route.kind": "login",
				"auth.method": "password", "auth.username": "alice@example.com",
				"auth.client.subnet": "192.0.2.0/24",
			},
			span:    Span{Name: "auth.login", Result: "failure", FailureReason: "invalid_credentials", StatusCode: codes.Error, RouteKind: "login", Process: Process{ServiceName: "shop"}, End: testToWall(4000)},
			parent:  traceHex,
			secrets: []string{"hunter2", "next="},
		},
		{
			name: "login success, service name from the executable",
			edit: func(c *Config) { c.ServiceName = "" },
			ex: exchange("POST", "/login", hdr("Content-Type", "application/json"),
				`{"username":"bob","password":"s3cr3t-pw"}`, 200, hdr("Set-Cookie", "session=abcdef123; HttpOnly"), `{"ok":true}`),
			proc:    Process{PID: 42, Exe: "/usr/bin/node"},
			want:    map[string]any{"auth.result": "success", "http.response.status_code": int64(200), "auth.username": "bob"},
			absent:  []string{"auth.failure_reason", "auth.user_agent", "user_agent.original"},
			span:    Span{Name: "auth.login", Result: "success", StatusCode: codes.Unset, RouteKind: "login", Process: Process{ServiceName: "node"}, End: testToWall(4000)},
			secrets: []string{"s3cr3t-pw", "abcdef123"},
		},
		{
			name: "body matcher turns 200 into failure",
			ex: exchange("POST", "/login", hdr("Content-Type", "application/json"), `{"username":"bob"}`,
				200, hdr("Content-Type", "application/json"), `{"error":"mfa"}`),
			want: map[string]any{"auth.result": "failure", "auth.failure_reason": "mfa_required"},
			span: Span{Name: "auth.login", Result: "failure", FailureReason: "mfa_required", StatusCode: codes.Error, RouteKind: "login", Process: Process{ServiceName: "shop"}, End: testToWall(4000)},
		},
		{
			name: "authorize 403 with status unset on 4xx, behind a trusted proxy",
			edit: func(c *Config) { c.Security.StatusUnsetOn4xx = true },
			ex: func() *decoder.Exchange {
				ex := exchange("GET", "/api/orders/7?api_key=K-12345-SECRET", hdr("Authorization", "Bearer not-a-jwt-secret",
					"X-Forwarded-For", "203.0.113.9, 10.1.1.1", "User-Agent", "evil\r\nX-Injected: 1"), "", 403, nil, "")
				ex.Conn.Peer = netip.MustParseAddrPort("[::ffff:10.0.0.5]:40000")
				return ex
			}(),
			want: map[string]any{
				"auth.result": "failure", "auth.failure_reason": "forbidden",
				"client.address": "203.0.113.9", "net.peer.ip": "203.0.113.9",
				"network.peer.address": "10.0.0.5", "network.peer.port": int64(40000),
				"http.target": "/api/orders/7", "http.route": "/api/**", "auth.resource": "/api/orders/7",
				"auth.user_agent": "evilX-Injected: 1", "auth.method": "bearer", "auth.client.subnet": "203.0.113.0/24",
			},
			span:    Span{Name: "auth.authorize", Result: "failure", FailureReason: "forbidden", StatusCode: codes.Unset, RouteKind: "authorize", Process: Process{ServiceName: "shop"}, End: testToWall(4000)},
			secrets: []string{"K-12345-SECRET", "not-a-jwt-secret", "api_key="},
		},
		{
			name:    "no response",
			ex:      exchange("POST", "/oauth/token", hdr("traceparent", "00-bad"), "grant_type=password&username=u&password=p4ss", 0, nil, ""),
			want:    map[string]any{"auth.result": "unknown", "auth.failure_reason": "no_response", "auth.route.kind": "token"},
			absent:  []string{"http.response.status_code"},
			span:    Span{Name: "auth.token", Result: "unknown", FailureReason: "no_response", StatusCode: codes.Unset, RouteKind: "token", Process: Process{ServiceName: "shop"}, End: testToWall(2000)},
			secrets: []string{"p4ss"},
		},
		{
			name: "server error, normalised path",
			ex:   exchange("GET", "//api/./v1/../users/", nil, "", 502, nil, ""),
			want: map[string]any{"auth.result": "error", "auth.failure_reason": "server_error",
				"http.target": "//api/./v1/../users/", "url.path": "/api/users"},
			span: Span{Name: "auth.authorize", Result: "error", FailureReason: "server_error", StatusCode: codes.Error, RouteKind: "authorize", Process: Process{ServiceName: "shop"}, End: testToWall(4000)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBuilder(t, tt.edit)
			s, ok := b.Build(tt.ex, tt.proc)
			if !ok {
				t.Fatal("not built")
			}
			got := attrMap(s.Attributes)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s = %#v, want absent", k, got[k])
				}
			}
			if len(got) != len(s.Attributes) {
				t.Errorf("duplicate attribute keys in %v", s.Attributes)
			}
			if s.Name != tt.span.Name || s.Result != tt.span.Result || s.FailureReason != tt.span.FailureReason ||
				s.StatusCode != tt.span.StatusCode || s.RouteKind != tt.span.RouteKind ||
				s.Process.ServiceName != tt.span.Process.ServiceName {
				t.Errorf("span %s result %s/%s status %v kind %s service %s, want %s %s/%s %v %s %s",
					s.Name, s.Result, s.FailureReason, s.StatusCode, s.RouteKind, s.Process.ServiceName,
					tt.span.Name, tt.span.Result, tt.span.FailureReason, tt.span.StatusCode, tt.span.RouteKind, tt.span.Process.ServiceName)
			}
			if !s.Start.Equal(testToWall(1000)) || !s.End.Equal(tt.span.End) {
				t.Errorf("times %v..%v, want %v..%v", s.Start, s.End, testToWall(1000), tt.span.End)
			}
			if tt.parent == "" {
				if s.Parent.IsValid() {
					t.Errorf("parent %v, want none", s.Parent)
				}
			} else if s.Parent.TraceID().String() != tt.parent || !s.Parent.IsRemote() {
				t.Errorf("parent %v, want trace %s remote", s.Parent, tt.parent)
			}
			dump := fmt.Sprintf("%+v", s)
			for _, sec := range tt.secrets {
				if strings.Contains(dump, sec) {
					t.Errorf("secret %q leaked into the span: %s", sec, dump)
				}
			}
		})
	}
}

func cloneHeader(h decoder.Header) decoder.Header { return append(decoder.Header(nil), h...) }

// TestBuildAmbiguous: a request that servers read differently says so on
// its span and carries no username, not even for aggregation.
func TestBuildAmbiguous(t *testing.T) {
	b := mustBuilder(t, nil)
	ex := exchange("POST", "/login", hdr("Content-Type", "application/json", "Transfer-Encoding", "chunked"),
		`{"username":"decoy","password":"pw-SECRET","username":"victim"}`, 401, nil, "")
	ex.Request.Ambiguous = decoder.AmbiguousCLTE
	s, ok := b.Build(ex, Process{})
	if !ok {
		t.Fatal("not built")
	}
	want := []string{secattr.AmbiguousCLTE, secattr.AmbiguousUsername, secattr.AmbiguousJSONKey}
	if !slices.Equal(s.Ambiguous, want) {
		t.Errorf("Span.Ambiguous = %q, want %q", s.Ambiguous, want)
	}
	got := attrMap(s.Attributes)
	if v, _ := got[secattr.AttrAmbiguous].([]string); !slices.Equal(v, want) {
		t.Errorf("%s = %#v, want %q", secattr.AttrAmbiguous, got[secattr.AttrAmbiguous], want)
	}
	if u, ok := got["auth.username"]; ok || s.UserKey != 0 {
		t.Errorf("auth.username = %v, UserKey %d on an ambiguous request", u, s.UserKey)
	}
	if got["auth.result"] != "failure" {
		t.Errorf("auth.result = %v", got["auth.result"])
	}
	if dump := fmt.Sprintf("%+v", s); strings.Contains(dump, "SECRET") || strings.Contains(dump, "victim") || strings.Contains(dump, "decoy") {
		t.Errorf("span carries body values: %s", dump)
	}

	// An ordinary request has neither.
	s, _ = b.Build(exchange("POST", "/login", hdr("Content-Type", "application/json"), `{"username":"bob"}`, 401, nil, ""), Process{})
	if s.Ambiguous != nil || attrMap(s.Attributes)[secattr.AttrAmbiguous] != nil || s.UserKey == 0 {
		t.Errorf("ordinary request: Ambiguous %q, UserKey %d", s.Ambiguous, s.UserKey)
	}
}

func TestBuildUnmatchedAndStats(t *testing.T) {
	b := mustBuilder(t, nil)
	for _, ex := range []*decoder.Exchange{
		exchange("GET", "/login", nil, "", 200, nil, ""), // wrong method
		exchange("POST", "/health", nil, "", 200, nil, ""),
		exchange("OPTIONS", "*", nil, "", 200, nil, ""),
		{Conn: decoder.ConnInfo{}}, // no request
		nil,
	} {
		if s, ok := b.Build(ex, Process{}); ok {
			t.Errorf("built %s for an unconfigured route", s.Name)
		}
	}
	b.Build(exchange("POST", "/login", hdr("traceparent", validTP, "tracestate", "x y"), "", 200, nil, ""), Process{})
	b.Build(exchange("POST", "/login", hdr("traceparent", "00-"+traceHex+"-"+spanHex+"-1"), "", 200, nil, ""), Process{})
	want := Stats{Matched: 2, Unmatched: 5, Joined: 1, MalformedTraceparent: 1, DroppedTracestate: 1}
	if got := b.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no ToWall", func(c *Config) { c.ToWall = nil }, "ToWall is required"},
		{"no routes", func(c *Config) { c.Routes = nil }, "no routes"},
		{"bad path", func(c *Config) { c.Routes = []config.Route{{Name: "x", Path: "x"}} }, "route 0 (x) path"},
		{"bad results", func(c *Config) {
			c.Routes = []config.Route{{Name: "x", Path: "/x", Results: map[string]string{"4xx": "meh"}}}
		}, "route 0 (x) results"},
		{"hash without key", func(c *Config) { c.Security.Username.Privacy = config.PrivacyHash }, "security attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Routes: testRoutes, ToWall: testToWall,
				Security: config.Security{Username: config.UsernameConfig{Privacy: config.PrivacyPlain}}}
			tt.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestWireString(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	tests := map[string]string{
		"curl/8.5":            "curl/8.5",
		"a\x00b\r\nc\td\x7f":  "abcd",
		"bad\xffutf8":         "bad\uFFFDutf8",
		"\u0085next\u009bcsi": "nextcsi",
		long:                  strings.Repeat("é", 128),
	}
	for in, want := range tests {
		got := wireString(in)
		if got != want {
			t.Errorf("wireString(%q) = %q, want %q", in, got, want)
		}
		if len(got) > maxAttrBytes || !utf8.ValidString(got) {
			t.Errorf("wireString(%q) = %q: %d bytes, valid %v", in, got, len(got), utf8.ValidString(got))
		}
	}
}

// FuzzBuild feeds wire-controlled request targets and header values through
// Build: it must not panic, attributes must be capped valid UTF-8, and no
// query string may reach http.target.
func FuzzBuild(f *testing.F) {
	f.Add("/login?api_key=x", "curl", validTP, "a=1")
	f.Add("//api/%2e%2e/login#x", "\xff\x00", "00-xyz", "")
	f.Add("http://h/api", strings.Repeat("u", 300), "", "bad key=1")
	b := mustBuilder(f, nil)
	f.Fuzz(func(t *testing.T, target, ua, tp, ts string) {
		ex := exchange("POST", target, hdr("User-Agent", ua, "traceparent", tp, "tracestate", ts), "", 401, nil, "")
		s, ok := b.Build(ex, Process{})
		if !ok {
			return
		}
		for _, kv := range s.Attributes {
			if kv.Value.Type() != attribute.STRING {
				continue
			}
			v := kv.Value.AsString()
			if len(v) > maxAttrBytes || !utf8.ValidString(v) {
				t.Fatalf("%s = %q", kv.Key, v)
			}
			if kv.Key == attrHTTPTarget && strings.ContainsAny(v, "?#") {
				t.Fatalf("http.target %q carries a query", v)
			}
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	bl := mustBuilder(b, nil)
	ex := exchange("POST", "/login?next=/home",
		hdr("Host", "shop", "User-Agent", "Mozilla/5.0 (X11; Linux x86_64)", "Content-Type", "application/x-www-form-urlencoded",
			"traceparent", validTP, "tracestate", "rojo=00f067aa0ba902b7"),
		"username=alice%40example.com&password=hunter2", 401, hdr("Content-Type", "application/json"), `{"error":"invalid"}`)
	p := Process{PID: 42, Exe: "/usr/bin/python3"}
	b.ReportAllocs()
	for b.Loop() {
		s, ok := bl.Build(ex, p)
		if !ok {
			b.Fatal("not built")
		}
		bl.Release(&s) // as the pipeline does once the span is exported
	}
}
