package spanbuilder

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
)

// mustRouter compiles routes or fails the test.
func mustRouter(tb testing.TB, routes []config.Route) *router {
	tb.Helper()
	r, err := newRouter(routes)
	if err != nil {
		tb.Fatalf("newRouter: %v", err)
	}
	return r
}

var matchRoutes = []config.Route{
	{Name: "login", Kind: config.KindLogin, Method: "POST", Path: "/login"},
	{Name: "login-any", Kind: config.KindLogin, Path: "/login"},
	{Name: "user", Kind: config.KindOther, Method: "get", Path: "/users/{id}/profile"},
	{Name: "star", Kind: config.KindOther, Path: "/v1/*/token"},
	{Name: "api", Kind: config.KindAuthorize, Path: "/api/**"},
	{Name: "root", Kind: config.KindOther, Method: "OPTIONS", Path: "/"},
	{Name: "enc", Kind: config.KindOther, Path: "/s%7eign"},
	{Name: "exact", Kind: config.KindOther, Path: "/Exact/Case", CaseSensitive: true},
	{Name: "jdk", Kind: config.KindLogin, Method: "POST", Path: "/j_security_check", Prefix: true},
	{Name: "page", Kind: config.KindOther, Method: "GET", Path: "/page"},
	{Name: "slash", Kind: config.KindOther, Path: "/a%2Fb"},
	{Name: "utf8", Kind: config.KindOther, Path: "/café"},
}

// TestRouteMatch: every spelling a server routes to a handler matches
// that handler's route; the comments name who routes it so (checked
// against Go 1.26 net/http, Express 5.2, Python 3.11 http.server, the JDK
// 17 HttpServer and nginx 1.22).
func TestRouteMatch(t *testing.T) {
	r := mustRouter(t, matchRoutes)
	tests := []struct {
		method, target string
		want           string // route name, "" for none
		path           string // normalised path, when matched
	}{
		{"POST", "/login", "login", "/login"},
		{"GET", "/login", "login-any", "/login"},  // first route wants POST
		{"post", "/login", "login-any", "/login"}, // methods are exact
		{"POST", "/login?next=/x", "login", "/login"},
		{"POST", "/login#frag", "login", "/login"}, // Express, Python, JDK, nginx
		// Case: Express ignores it, so routes do by default.
		{"POST", "/Login", "login", "/Login"},
		{"POST", "/LOGIN", "login", "/LOGIN"},
		{"POST", "/%4cOGIN", "login", "/LOGIN"},
		{"GET", "/exact/case", "", ""},
		{"GET", "/Exact/Case", "exact", "/Exact/Case"},
		{"GET", "/Exact/%43ase", "exact", "/Exact/Case"},
		// Trailing slash: Express, the JDK.
		{"POST", "/login/", "login", "/login"},
		{"POST", "/Login/", "login", "/Login"},
		// Repeated slashes: Go (307), nginx, Python's leading "//".
		{"POST", "//login", "login", "/login"},
		{"POST", "/login//", "login", "/login"},
		// Dot segments: Go (307), nginx.
		{"POST", "/./login", "login", "/login"},
		{"POST", "/api/../login", "login", "/login"},
		{"POST", "/../../login", "login", "/login"},
		{"POST", "/login/.", "login", "/login"},
		{"POST", "/login/x/..", "login", "/login"},
		{"POST", "/x/%2e%2E/login", "login", "/login"}, // nginx
		{"POST", "/%2e/login", "login", "/login"},      // nginx
		{"GET", "/api/%2e%2e/login", "login-any", "/login"},
		{"POST", "/.hidden/../login", "login", "/login"},
		{"POST", "/login/...", "", ""},
		// Percent-encoding: Go, the JDK, nginx decode before routing.
		{"POST", "/%6cogin", "login", "/login"},
		{"POST", "/%6Cogin", "login", "/login"},
		{"GET", "/s~ign", "enc", "/s~ign"},
		{"GET", "/s%7Eign", "enc", "/s~ign"},
		{"GET", "/caf%C3%A9", "utf8", "/café"},
		{"GET", "/caf%c3%a9", "utf8", "/café"},
		{"POST", "/log%69n%", "", ""},
		{"POST", "/login%zz", "", ""},
		// Encoded slashes: a separator for nginx, the JDK and Go 1.21; a
		// character for Go 1.22+. Either reading matches.
		{"POST", "/log%2Fin", "", ""},
		{"POST", "/login%2F", "login", "/login"},     // JDK
		{"POST", "/x/..%2flogin", "login", "/login"}, // nginx
		{"POST", "/x%2F..%2Flogin", "login", "/login"},
		{"POST", "/login%5c", "login", "/login"},
		{"GET", "/a%2Fb", "slash", "/a%2Fb"},
		{"GET", "/a%2fb", "slash", "/a%2Fb"},
		{"GET", "/api/a%2Fb", "api", "/api/a%2Fb"},
		// %25 is not decoded twice.
		{"POST", "/%256Cogin", "", ""},
		// Path parameters: servlet containers strip them.
		{"POST", "/login;jsessionid=1", "login", "/login"},
		{"POST", "/login;x/", "login", "/login"},
		{"POST", "/LOGIN;x", "login", "/LOGIN"},
		{"POST", "/x/..;y/login", "login", "/login"}, // Tomcat resolves ".." after stripping
		{"POST", "/lo;x/gin", "", ""},
		{"POST", "/login%3Bx", "", ""}, // an encoded ';' is a character
		// Backslashes: IIS and WHATWG URL parsers read them as '/'.
		{"POST", "/login\\", "login", "/login"},
		{"POST", "/x\\..\\login", "login", "/login"},
		// Dots kept (Express, Python, the JDK): "/api/../admin" is served
		// under /api there.
		{"GET", "/api/../admin", "api", "/api/../admin"},
		{"GET", "/api/./x", "api", "/api/x"},
		// "//host/path": java.net.URI reads an authority.
		{"POST", "//evil/login", "login", "/login"},
		{"GET", "//api/x", "api", "/api/x"},
		// Absolute form, any scheme and case (all five servers).
		{"POST", "http://example.com/login?x", "login", "/login"},
		{"POST", "HTTPS://example.com/login", "login", "/login"},
		{"POST", "HtTp://h/LOGIN", "login", "/LOGIN"},
		{"POST", "ws://h:80/login", "login", "/login"},
		{"POST", "foo+bar.1://user@h/login", "login", "/login"},
		{"POST", "http://h\\login", "login", "/login"},
		{"POST", "http:/login", "login", "/login"},
		{"OPTIONS", "http://h", "root", "/"},
		{"OPTIONS", "http://h?x", "root", "/"},
		{"POST", "http:login", "", ""},
		{"POST", "h/login", "", ""},
		{"POST", "1http://h/login", "", ""},
		{"POST", "*", "", ""},
		{"CONNECT", "example.com:443", "", ""},
		// Prefix routes (JDK HttpServer contexts).
		{"POST", "/j_security_check", "jdk", "/j_security_check"},
		{"POST", "/j_security_checkx", "jdk", "/j_security_checkx"},
		{"POST", "/J_SECURITY_CHECK.do", "jdk", "/J_SECURITY_CHECK.do"},
		{"POST", "/j_security_check/x/y", "jdk", "/j_security_check/x/y"},
		{"POST", "/j_security_chec", "", ""},
		// Methods: GET takes HEAD, nothing else folds.
		{"HEAD", "/page", "page", "/page"},
		{"GET", "/page", "page", "/page"},
		{"POST", "/page", "", ""},
		{"get", "/page", "", ""},
		// Patterns.
		{"GET", "/users/42/profile", "user", "/users/42/profile"},
		{"HEAD", "/users/42/profile", "user", "/users/42/profile"},
		{"GET", "/users//profile", "", ""}, // "{id}" takes one non-empty segment
		{"GET", "/users/42/43/profile", "", ""},
		{"POST", "/users/42/profile", "", ""},
		{"GET", "/v1/x/token", "star", "/v1/x/token"},
		{"GET", "/v1/token", "", ""},
		{"GET", "/api", "api", "/api"},
		{"GET", "/api/", "api", "/api"},
		{"GET", "/API/x", "api", "/API/x"},
		{"DELETE", "/api/a/b/c", "api", "/api/a/b/c"},
		{"GET", "/apix", "", ""},
		{"OPTIONS", "/", "root", "/"},
		{"OPTIONS", "//", "root", "/"},
		{"OPTIONS", "/..", "root", "/"},
		{"OPTIONS", "", "", ""},
		{"POST", "/loginx", "", ""},
		{"POST", "/login%00", "", ""},
		{"POST", "/login.", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rt, path := r.find(tt.method, tt.target, true)
			got := ""
			if rt != nil {
				got = rt.cfg.Name
			}
			if got != tt.want || path != tt.path {
				t.Errorf("matched %q on %q, want %q on %q", got, path, tt.want, tt.path)
			}
			if rt2, _ := r.find(tt.method, tt.target, false); rt2 != rt {
				t.Errorf("without keep: matched %v, want %v", rt2, rt)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in                            string
		canonical, encSlash, keepDots string
		saw                           uint8
	}{
		{"/", "/", "/", "/", 0},
		{"/a/b", "/a/b", "/a/b", "/a/b", 0},
		{"/a//b///", "/a/b", "/a/b", "/a/b", 0},
		{"/a/./b/.", "/a/b", "/a/b", "/a/./b/.", sawDotSegment},
		{"/a/b/../c", "/a/c", "/a/c", "/a/b/../c", sawDotSegment},
		{"/..", "/", "/", "/..", sawDotSegment},
		{"/a/%2e%2E/b", "/b", "/b", "/a/../b", sawDotSegment},
		{"/%41%7a%2D%5F", "/Az-_", "/Az-_", "/Az-_", 0},
		{"/%2F%20%zz%4", "/%2F %25zz%254", "/ %25zz%254", "/%2F %25zz%254", sawEncodedSlash},
		{"/%%32%66", "/%252f", "/%252f", "/%252f", 0},
		{"/a/..%2fb", "/a/..%2Fb", "/b", "/a/..%2Fb", sawEncodedSlash},
		{"/a%5cb", "/a%5Cb", "/a/b", "/a%5Cb", sawEncodedSlash},
		{"/.hidden", "/.hidden", "/.hidden", "/.hidden", 0},
		{"/a/...", "/a/...", "/a/...", "/a/...", 0},
		{"/a;x=1/b;y", "/a/b", "/a/b", "/a/b", 0},
		{"/a;%2F/b", "/a/b", "/a/b", "/a/b", sawEncodedSlash},
		{"/;x/a", "/a", "/a", "/a", 0},
		{"/a%3bx", "/a%3Bx", "/a%3Bx", "/a%3Bx", 0},
		{"/a%25%32%66", "/a%252f", "/a%252f", "/a%252f", 0},
		{"/a\\b\\\\c", "/a/b/c", "/a/b/c", "/a/b/c", 0},
		{"/a/%00/b", "/a/\x00/b", "/a/\x00/b", "/a/\x00/b", 0},
		{"/caf\xc3\xa9", "/caf\xc3\xa9", "/caf\xc3\xa9", "/caf\xc3\xa9", 0},
		{"rel/x", "/rel/x", "/rel/x", "/rel/x", 0},
		{"", "/", "/", "/", 0},
	}
	for _, tt := range tests {
		for _, rd := range []struct {
			r    reading
			want string
		}{{readCanonical, tt.canonical}, {readEncodedSlash, tt.encSlash}, {readKeepDots, tt.keepDots}} {
			got, saw := normalizePath(nil, tt.in, rd.r)
			if string(got) != rd.want {
				t.Errorf("normalizePath(%q, %d) = %q, want %q", tt.in, rd.r, got, rd.want)
			}
			if rd.r == readCanonical && saw != tt.saw {
				t.Errorf("normalizePath(%q) saw %b, want %b", tt.in, saw, tt.saw)
			}
		}
		if isCleanPath(tt.in) && tt.canonical != tt.in {
			t.Errorf("isCleanPath(%q) but it normalises to %q", tt.in, tt.canonical)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]bool{
		"/login": true, "/": true, "/a/b.c": true, "/café": true,
		"": false, "login": false, "/login/": false, "//login": false, "/./login": false,
		"/a/.hidden": false, // conservative: the slow path gets it right
		"/%6c":       false, "/a;b": false, "/a\\b": false,
	} {
		if got := isCleanPath(in); got != want {
			t.Errorf("isCleanPath(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNewRouterErrors(t *testing.T) {
	for _, rs := range [][]config.Route{
		{{Name: "a", Path: "login"}},
		{{Name: "a", Path: "/a/**/b"}},
		{{Name: "a", Path: "/a;b"}},
		{{Name: "a", Path: "/a", Results: map[string]string{"700": "success"}}},
		{{Name: "a", Path: "/a", Results: map[string]string{"401": "nope"}}},
	} {
		if _, err := newRouter(rs); err == nil {
			t.Errorf("newRouter(%+v) accepted", rs)
		}
	}
}

// TestInterestingAgreesWithBuild: Interesting is true exactly when Build
// builds a span.
func TestInterestingAgreesWithBuild(t *testing.T) {
	b := mustBuilder(t, func(c *Config) { c.Routes = matchRoutes })
	for _, target := range []string{"/login", "//LOGIN/", "/x/..%2flogin", "/loginx", "*", "http://h/api/x", "/api/../admin", "/health"} {
		for _, method := range []string{"POST", "GET", "HEAD"} {
			_, built := b.Build(exchange(method, target, nil, "", 200, nil, ""), Process{})
			if got := b.Interesting(method, target); got != built {
				t.Errorf("Interesting(%s %s) = %v, Build %v", method, target, got, built)
			}
		}
	}
}

// TestInterestingAllocations pins the decoder's contract: no allocation
// for paths that fit the stack buffer, clean or not.
func TestInterestingAllocations(t *testing.T) {
	b := mustBuilder(t, nil)
	for _, target := range []string{"/login?next=/", "/health", "//api/./v1/../%6Cogin/", "http://h/x/..%2flogin", "//evil/login"} {
		if n := testing.AllocsPerRun(100, func() { b.Interesting("POST", target) }); n != 0 {
			t.Errorf("Interesting(POST %s): %v allocations", target, n)
		}
	}
}

// TestLongPaths: paths beyond the stack buffer match all the same.
func TestLongPaths(t *testing.T) {
	b := mustBuilder(t, nil)
	long := "/" + strings.Repeat("a/", 3000) + strings.Repeat("../", 3000) + "login"
	if !b.Interesting("POST", long) {
		t.Error("a long path that resolves to /login is not interesting")
	}
	if b.Interesting("POST", "/"+strings.Repeat("%61", 5000)) {
		t.Error("a long path that is no route is interesting")
	}
	if !b.Interesting("GET", "/api/"+strings.Repeat("x%2F", 3000)) {
		t.Error("a long path under /api is not interesting")
	}
}

// goMux is a real net/http ServeMux with a login handler, as a Go service
// would register it.
func goMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("LOGIN")) })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("HEALTH")) })
	return mux
}

// answeredByLogin reports whether the mux answers a request line from its
// login handler; false when net/http rejects the request.
func answeredByLogin(mux *http.ServeMux, method, target string) bool {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")))
	if err != nil {
		return false
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec.Code == http.StatusOK && rec.Body.String() == "LOGIN"
}

// TestServeMuxVariants: every variant Go's ServeMux answers from its login
// handler is interesting; the variants it redirects are matched too (the
// span then records the redirect).
func TestServeMuxVariants(t *testing.T) {
	mux := goMux()
	b := mustBuilder(t, func(c *Config) {
		c.Routes = []config.Route{{Name: "auth.login", Kind: config.KindLogin, Method: "POST", Path: "/login"}}
	})
	answered := 0
	for _, target := range []string{
		"/login", "/%6cogin", "/%6C%6F%67%69%6E", "http://h/login", "HTTP://h/login", "ws://h/login",
		"http://user@h:80/login?x#y", "http:/login", "/login?x=1", "//login", "/./login", "/x/../login",
		"/login/.", "/login/x/..", "/login/", "/Login", "/login;x", "/login%2F", "/log%2Fin", "//h/login",
	} {
		if answeredByLogin(mux, "POST", target) {
			answered++
			if !b.Interesting("POST", target) {
				t.Errorf("ServeMux answers POST %s from its login handler; not interesting", target)
			}
		}
	}
	if answered < 6 {
		t.Errorf("ServeMux answered only %d variants from the login handler; the test no longer exercises it", answered)
	}
}

// FuzzRouteServeMux is a differential target: whatever request-target Go's
// ServeMux answers from its POST /login handler must be interesting.
func FuzzRouteServeMux(f *testing.F) {
	for _, s := range []string{"/login", "/%6cogin", "http://h/login", "//login", "/a/../login", "/login;x", "/LOGIN/"} {
		f.Add(s)
	}
	mux := goMux()
	b := mustBuilder(f, func(c *Config) {
		c.Routes = []config.Route{{Name: "auth.login", Kind: config.KindLogin, Method: "POST", Path: "/login"}}
	})
	f.Fuzz(func(t *testing.T, target string) {
		if strings.ContainsAny(target, " \r\n") {
			return // not one request-target
		}
		if answeredByLogin(mux, "POST", target) && !b.Interesting("POST", target) {
			t.Fatalf("ServeMux answers POST %q from its login handler; not interesting", target)
		}
	})
}

// FuzzNormalizePath: normalisation never panics, gives "/" or segments
// without empty, "." or ".." ones (canonical), and is idempotent.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/a/../b", "//x/./y/", "/%2e%2E/%2f", "/a;b/..;c", "\\x\\..", "%", "/%zz%4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, _ := normalizePath(nil, raw, readCanonical)
		if len(p) == 0 || p[0] != '/' || len(p) > 1 && p[len(p)-1] == '/' {
			t.Fatalf("normalizePath(%q) = %q", raw, p)
		}
		for _, s := range strings.Split(string(p[1:]), "/") {
			if len(p) > 1 && (s == "" || s == "." || s == "..") {
				t.Fatalf("normalizePath(%q) = %q has segment %q", raw, p, s)
			}
		}
		if again, _ := normalizePath(nil, string(p), readCanonical); string(again) != string(p) {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, p, again)
		}
		var buf [maxStackPath]byte
		if q, _ := normalizePath(buf[:0], raw, readCanonical); string(q) != string(p) {
			t.Fatalf("with a buffer %q, without %q", q, p)
		}
	})
}

func BenchmarkInteresting(b *testing.B) {
	bl := mustBuilder(b, nil)
	for _, bc := range []struct{ name, method, target string }{
		{"clean-match", "POST", "/login?next=/home"},
		{"clean-miss", "GET", "/health"},
		{"clean-miss-long", "GET", "/static/js/vendor/app.0123456789abcdef.min.js?v=3"},
		{"unclean-match", "POST", "//api/./v1/../%6Cogin/"},
		{"unclean-miss", "GET", "/assets/%2e%2e/x;y/..%2fz"},
		{"absolute", "POST", "http://shop.example:8080/login"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bl.Interesting(bc.method, bc.target)
			}
		})
	}
}
