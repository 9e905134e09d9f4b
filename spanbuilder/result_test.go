package spanbuilder

import (
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func respExchange(code int, hdr ...string) *decoder.Exchange {
	var h decoder.Header
	for i := 0; i+1 < len(hdr); i += 2 {
		h = append(h, decoder.HeaderField{Name: hdr[i], Value: hdr[i+1]})
	}
	return &decoder.Exchange{Response: &decoder.Response{StatusCode: code, Header: h}}
}

func TestInferResultDefaults(t *testing.T) {
	r := mustRouter(t, []config.Route{
		{Name: "login", Kind: config.KindLogin, Path: "/login"},
		{Name: "authz", Kind: config.KindAuthorize, Path: "/authorize"},
	})
	login, authz := &r.routes[0], &r.routes[1]
	tests := []struct {
		name   string
		rt     *route
		ex     *decoder.Exchange
		result string
		reason string
	}{
		{"200", login, respExchange(200), ResultSuccess, ""},
		{"204", authz, respExchange(204), ResultSuccess, ""},
		{"302 plain", login, respExchange(302, "Location", "/home"), ResultSuccess, ""},
		{"303 no location", login, respExchange(303), ResultSuccess, ""},
		{"302 error query", authz, respExchange(302, "Location", "https://app/cb?state=x&error=access_denied&error_description=no"), ResultFailure, "access_denied"},
		{"302 error fragment", authz, respExchange(302, "location", "https://app/cb#state=x&error=access_denied"), ResultFailure, "access_denied"},
		{"302 error after query", authz, respExchange(302, "Location", "https://app/cb?a=1#error=login_required"), ResultFailure, "login_required"},
		{"302 error escaped", authz, respExchange(302, "Location", "/cb?error=invalid%5Fscope"), ResultFailure, "invalid_scope"},
		{"302 error odd", authz, respExchange(302, "Location", "/cb?error=%3Cscript%3E"), ResultFailure, ReasonRedirectError},
		{"302 errors= is not error", authz, respExchange(302, "Location", "/cb?errors=x&my_error=y"), ResultSuccess, ""},
		{"401 login", login, respExchange(401), ResultFailure, ReasonInvalidCredentials},
		{"401 elsewhere", authz, respExchange(401), ResultFailure, ReasonUnauthorized},
		{"403", authz, respExchange(403), ResultFailure, ReasonForbidden},
		{"423", login, respExchange(423), ResultFailure, ReasonLocked},
		{"429", login, respExchange(429), ResultFailure, ReasonRateLimited},
		{"400", login, respExchange(400), ResultFailure, ReasonBadRequest},
		{"404", authz, respExchange(404), ResultFailure, ReasonBadRequest},
		{"500", login, respExchange(500), ResultError, ReasonServerError},
		{"503", authz, respExchange(503), ResultError, ReasonServerError},
		{"101", authz, respExchange(101), ResultSuccess, ""},
		{"100", authz, respExchange(100), ResultUnknown, ReasonInformational},
		{"999", authz, respExchange(999), ResultUnknown, ReasonInvalidStatus},
		{"closed", login, &decoder.Exchange{End: decoder.EndClosed}, ResultUnknown, ReasonNoResponse},
		{"timeout", login, &decoder.Exchange{End: decoder.EndTimeout}, ResultUnknown, ReasonNoResponse},
		{"lost", login, &decoder.Exchange{End: decoder.EndLost, Lost: true}, ResultUnknown, ReasonCaptureLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inferResult(tt.rt, tt.ex)
			if got.result != tt.result || got.reason != tt.reason {
				t.Errorf("got %s/%s, want %s/%s", got.result, got.reason, tt.result, tt.reason)
			}
		})
	}
}

func TestInferResultOverrides(t *testing.T) {
	r := mustRouter(t, []config.Route{{
		Name: "login", Kind: config.KindLogin, Path: "/login",
		Results: map[string]string{
			"4xx": "failure/client_refused",
			"404": "unknown",
			"409": "failure",
			"200": "failure/legacy_error_page",
			"3xx": "success",
			"5xx": "error",
		},
	}})
	rt := &r.routes[0]
	tests := []struct {
		code           int
		hdr            []string
		result, reason string
	}{
		{401, nil, ResultFailure, "client_refused"},                               // class beats the default
		{404, nil, ResultUnknown, ""},                                             // exact beats class
		{409, nil, ResultFailure, ReasonBadRequest},                               // no reason: the default one
		{200, nil, ResultFailure, "legacy_error_page"},                            // even success can be overridden
		{302, []string{"Location", "/cb?error=access_denied"}, ResultSuccess, ""}, // configured wins
		{503, nil, ResultError, ReasonServerError},
		{201, nil, ResultSuccess, ""}, // no override for 2xx class
	}
	for _, tt := range tests {
		got := inferResult(rt, respExchange(tt.code, tt.hdr...))
		if got.result != tt.result || got.reason != tt.reason {
			t.Errorf("%d: got %s/%s, want %s/%s", tt.code, got.result, got.reason, tt.result, tt.reason)
		}
	}
	// No response: overrides do not apply.
	if got := inferResult(rt, &decoder.Exchange{End: decoder.EndClosed}); got != (outcome{ResultUnknown, ReasonNoResponse}) {
		t.Errorf("closed: %+v", got)
	}
}

// TestRespellingRedirect: a redirect that only respells the request's path
// is no result; a redirect elsewhere, or to the same spelling, is the
// application's answer.
func TestRespellingRedirect(t *testing.T) {
	r := mustRouter(t, []config.Route{{Name: "login", Kind: config.KindLogin, Path: "/login"}})
	tests := []struct {
		target         string
		code           int
		location       string
		result, reason string
	}{
		{"//login", 307, "/login", ResultUnknown, ReasonPathRedirect},             // Go's ServeMux
		{"/x/../login?a=1", 301, "/login?a=1", ResultUnknown, ReasonPathRedirect}, // Go 1.21
		{"/login", 301, "/login/", ResultUnknown, ReasonPathRedirect},             // Django's APPEND_SLASH
		{"/Login", 308, "http://shop/login", ResultUnknown, ReasonPathRedirect},
		{"/login", 302, "/login?failed", ResultSuccess, ""}, // the same spelling: the app's answer
		{"//login", 302, "/home", ResultSuccess, ""},        // elsewhere
		{"//login", 303, "/login", ResultSuccess, ""},       // 303 makes it a GET: the app's answer
		{"//login", 307, "", ResultSuccess, ""},
		{"//login", 200, "/login", ResultSuccess, ""},
	}
	for _, tt := range tests {
		ex := respExchange(tt.code, "Location", tt.location)
		ex.Request = &decoder.Request{Method: "POST", Target: tt.target}
		got := inferResult(&r.routes[0], ex)
		if got.result != tt.result || got.reason != tt.reason {
			t.Errorf("%s -> %d %s: got %s/%s, want %s/%s", tt.target, tt.code, tt.location, got.result, got.reason, tt.result, tt.reason)
		}
	}
	// An override for the status is the operator's word.
	r = mustRouter(t, []config.Route{{Name: "login", Kind: config.KindLogin, Path: "/login", Results: map[string]string{"307": "failure/moved"}}})
	ex := respExchange(307, "Location", "/login")
	ex.Request = &decoder.Request{Method: "POST", Target: "//login"}
	if got := inferResult(&r.routes[0], ex); got != (outcome{ResultFailure, "moved"}) {
		t.Errorf("with an override: %+v", got)
	}
}
