package spanbuilder

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// Failure reasons the status mapping gives.
const (
	ReasonInvalidCredentials = "invalid_credentials"
	ReasonUnauthorized       = "unauthorized"
	ReasonForbidden          = "forbidden"
	ReasonLocked             = "locked"
	ReasonRateLimited        = "rate_limited"
	ReasonBadRequest         = "bad_request"
	ReasonServerError        = "server_error"
	ReasonNoResponse         = "no_response"
	ReasonCaptureLost        = "capture_lost"
	ReasonRedirectError      = "redirect_error" // error= parameter that is not a plain code
	ReasonInformational      = "informational"  // a 1xx status as the final answer
	ReasonInvalidStatus      = "invalid_status"
	// ReasonPathRedirect: the server redirected to another spelling of the
	// request's own path (Go's ServeMux answers "//login" with a 307 to
	// "/login"): it has not judged the attempt.
	ReasonPathRedirect = "path_redirect"
)

// outcome is an auth.result and its auth.failure_reason.
type outcome struct {
	result, reason string
}

// overrides are a route's compiled Results: an exact code beats a class.
type overrides struct {
	exact map[int]outcome
	class [6]outcome // by first digit; result "" when unset
}

func compileOverrides(m map[string]string) (overrides, error) {
	var ov overrides
	for k, v := range m {
		code, class, err := config.ParseResultKey(k)
		if err != nil {
			return ov, err
		}
		res, reason, err := config.ParseResultValue(v)
		if err != nil {
			return ov, err
		}
		o := outcome{res, reason}
		if code != 0 {
			if ov.exact == nil {
				ov.exact = map[int]outcome{}
			}
			ov.exact[code] = o
		} else {
			ov.class[class] = o
		}
	}
	return ov, nil
}

func (ov *overrides) lookup(code int) (outcome, bool) {
	if o, ok := ov.exact[code]; ok {
		return o, true
	}
	if c := code / 100; c >= 1 && c <= 5 && ov.class[c].result != "" {
		return ov.class[c], true
	}
	return outcome{}, false
}

// inferResult gives the outcome of an exchange from its response status:
// the route's overrides first, then the default mapping.
func inferResult(rt *route, ex *decoder.Exchange) outcome {
	resp := ex.Response
	if resp == nil {
		if ex.End == decoder.EndLost {
			return outcome{ResultUnknown, ReasonCaptureLost}
		}
		return outcome{ResultUnknown, ReasonNoResponse}
	}
	o, ok := rt.results.lookup(resp.StatusCode)
	if !ok && respellingRedirect(ex.Request, resp) {
		// Not a success: the client follows the redirect (a 307 keeps the
		// method and body) and that request gets its own span.
		return outcome{ResultUnknown, ReasonPathRedirect}
	}
	def := defaultOutcome(rt.cfg.Kind, resp)
	if !ok {
		return def
	}
	// An override without a reason keeps the default reason when it names
	// the same result ("409": failure stays bad_request).
	if o.reason == "" && o.result == def.result {
		o.reason = def.reason
	}
	return o
}

// defaultOutcome is the status → result mapping of the design.
func defaultOutcome(kind string, resp *decoder.Response) outcome {
	code := resp.StatusCode
	switch {
	case code == 101:
		return outcome{ResultSuccess, ""} // protocol switch accepted
	case code >= 100 && code < 200:
		return outcome{ResultUnknown, ReasonInformational}
	case code >= 200 && code < 300:
		return outcome{ResultSuccess, ""}
	case code >= 300 && code < 400:
		// OAuth2/OIDC report a refused authorization as a redirect back to
		// the client carrying error=... (RFC 6749 §4.1.2.1).
		if reason, ok := redirectError(headerGet(resp.Header, "Location")); ok {
			return outcome{ResultFailure, reason}
		}
		return outcome{ResultSuccess, ""}
	case code == 401:
		if kind == config.KindLogin {
			return outcome{ResultFailure, ReasonInvalidCredentials}
		}
		return outcome{ResultFailure, ReasonUnauthorized}
	case code == 403:
		return outcome{ResultFailure, ReasonForbidden}
	case code == 423:
		return outcome{ResultFailure, ReasonLocked}
	case code == 429:
		return outcome{ResultFailure, ReasonRateLimited}
	case code >= 400 && code < 500:
		return outcome{ResultFailure, ReasonBadRequest}
	case code >= 500 && code < 600:
		return outcome{ResultError, ReasonServerError}
	}
	return outcome{ResultUnknown, ReasonInvalidStatus}
}

// redirectError finds an error parameter in a Location's query or
// fragment (the implicit flow puts it there). Only a plain snake_case code
// is kept as the reason: the value is attacker-influenced text.
func redirectError(loc string) (reason string, ok bool) {
	i := strings.IndexAny(loc, "?#")
	if i < 0 {
		return "", false
	}
	params := loc[i+1:]
	for params != "" {
		var kv string
		kv, params, _ = strings.Cut(params, "&")
		if q := strings.IndexByte(kv, '#'); q >= 0 {
			// The fragment starts a new parameter list.
			params = kv[q+1:] + "&" + params
			kv = kv[:q]
		}
		k, v, _ := strings.Cut(kv, "=")
		if k != "error" {
			continue
		}
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		}
		if config.IsReason(v) {
			return v, true
		}
		return ReasonRedirectError, true
	}
	return "", false
}

// respellingRedirect reports a redirect to the request's own path spelled
// otherwise, the way servers canonicalise paths before routing ("//login"
// to "/login", "/login" to "/login/"). A redirect to the same spelling
// (a failed form login sent back to "/login?error") is the application's
// answer and is not one.
func respellingRedirect(req *decoder.Request, resp *decoder.Response) bool {
	switch resp.StatusCode {
	case 301, 302, 307, 308:
	default:
		return false
	}
	if req == nil {
		return false
	}
	loc, ok := splitTarget(headerGet(resp.Header, "Location"))
	if !ok {
		return false
	}
	raw, ok := splitTarget(req.Target)
	if !ok || raw == loc {
		return false
	}
	var a, b [maxStackPath]byte
	p, _ := normalizePath(a[:0], raw, readCanonical)
	q, _ := normalizePath(b[:0], loc, readCanonical)
	return bytes.EqualFold(p, q)
}
