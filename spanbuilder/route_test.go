package spanbuilder

import (
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

func TestRouteMatch(t *testing.T) {
	r := mustRouter(t, []config.Route{
		{Name: "login", Kind: config.KindLogin, Method: "POST", Path: "/login"},
		{Name: "login-any", Kind: config.KindLogin, Path: "/login"},
		{Name: "user", Kind: config.KindOther, Method: "get", Path: "/users/{id}/profile"},
		{Name: "star", Kind: config.KindOther, Path: "/v1/*/token"},
		{Name: "api", Kind: config.KindAuthorize, Path: "/api/**"},
		{Name: "root", Kind: config.KindOther, Method: "OPTIONS", Path: "/"},
		{Name: "enc", Kind: config.KindOther, Path: "/s%7eign"},
	})
	tests := []struct {
		method, target string
		want           string // route name, "" for none
	}{
		{"POST", "/login", "login"},
		{"GET", "/login", "login-any"}, // first route wants POST
		{"post", "/login", "login-any"},
		{"POST", "/login?next=/x", "login"},
		{"POST", "/login#frag", "login"},
		{"POST", "/login/", "login"},
		{"POST", "//login", "login"},
		{"POST", "/./login", "login"},
		{"POST", "/api/../login", "login"},
		{"POST", "/../../login", "login"},
		{"POST", "/%6cogin", "login"},
		{"POST", "/%6Cogin", "login"},
		{"POST", "/log%2Fin", ""},
		{"POST", "/loginx", ""},
		{"POST", "/Login", ""},
		{"POST", "http://example.com/login?x", "login"},
		{"POST", "HTTPS://example.com/login", "login"},
		{"POST", "*", ""},
		{"CONNECT", "example.com:443", ""},
		{"GET", "/users/42/profile", "user"},
		{"GET", "/users//profile", ""}, // "{id}" takes one non-empty segment
		{"GET", "/users/42/43/profile", ""},
		{"POST", "/users/42/profile", ""},
		{"GET", "/v1/x/token", "star"},
		{"GET", "/v1/token", ""},
		{"GET", "/api", "api"},
		{"GET", "/api/", "api"},
		{"DELETE", "/api/a/b/c", "api"},
		{"GET", "/apix", ""},
		{"GET", "/api/%2e%2e/login", "login-any"}, // decoded dots climb out of /api
		{"OPTIONS", "/", "root"},
		{"OPTIONS", "", ""},
		{"GET", "/s~ign", "enc"},
		{"GET", "/s%7Eign", "enc"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			got := ""
			if raw, ok := splitTarget(tt.target); ok {
				if rt := r.match(tt.method, normalizePath(raw)); rt != nil {
					got = rt.cfg.Name
				}
			}
			if got != tt.want {
				t.Errorf("matched %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	tests := map[string]string{
		"/":             "/",
		"/a/b":          "/a/b",
		"/a//b///":      "/a/b",
		"/a/./b/.":      "/a/b",
		"/a/b/../c":     "/a/c",
		"/..":           "/",
		"/a/%2e%2E/b":   "/b",
		"/%41%7a%2D%5F": "/Az-_",
		"/%2F%20%zz%4":  "/%2F%20%zz%4",
		"/a/..%2fb":     "/a/..%2fb",
		"/.hidden":      "/.hidden",
		"/a/...":        "/a/...",
	}
	for in, want := range tests {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRouterErrors(t *testing.T) {
	for _, rs := range [][]config.Route{
		{{Name: "a", Path: "login"}},
		{{Name: "a", Path: "/a/**/b"}},
		{{Name: "a", Path: "/a", Results: map[string]string{"700": "success"}}},
		{{Name: "a", Path: "/a", Results: map[string]string{"401": "nope"}}},
	} {
		if _, err := newRouter(rs); err == nil {
			t.Errorf("newRouter(%+v) accepted", rs)
		}
	}
}
