package secattr

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// Results, as spanbuilder names them (repeated here: spanbuilder imports
// this package).
const (
	resultSuccess = "success"
	resultFailure = "failure"
	resultError   = "error"
)

const (
	maxReasonLen    = 64
	maxOAuthErrLen  = 64
	maxLocationScan = 8 << 10
)

// outcome applies the route's failure matchers and OAuth2 error responses.
//
// Matchers, first match wins:
//   - a matcher with result set (failure or error) forces that result and its
//     reason whatever the status said: this is how a legacy app's
//     "200 OK + error page" becomes a failure;
//   - a matcher without result only names the reason, and only when the
//     status already said failure (a success page that happens to contain
//     the text is left alone).
//
// OAuth2 errors (token and authorize routes only): the error code from a
// JSON body {"error":"invalid_grant"} or a redirect Location
// (?error=access_denied or #error=...) becomes auth.oauth2.error. A redirect
// carrying an error is a failed authorization by RFC 6749 §4.1.2.1 though
// its status is 302, so it makes the result failure (unless already error);
// a body error only names the reason when the result is failure. A matcher's
// reason wins over the OAuth2 code.
func (e *Extractor) outcome(in Input, body fields) (result, reason, oauthErr string) {
	resp := in.Response
	if resp == nil {
		return "", "", ""
	}
	effective := in.Result
	matched := false
	for _, m := range in.Route.FailureMatchers {
		if !matches(m, resp.Body, body) {
			continue
		}
		if r := forcedResult(m.Result); r != "" {
			result, reason, matched = r, clean(m.Reason, maxReasonLen), true
			effective = r
		} else if effective == resultFailure {
			reason, matched = clean(m.Reason, maxReasonLen), true
		}
		break
	}

	if in.Route.Kind != config.KindToken && in.Route.Kind != config.KindAuthorize {
		return result, reason, ""
	}
	code, fromRedirect := oauthError(resp.Header, body)
	if code == "" {
		return result, reason, ""
	}
	// A token endpoint's "error" is OAuth2's by definition. An API behind
	// an authorize route answers {"error": "..."} in its own words: only
	// the registered OAuth2/OIDC codes count there.
	if in.Route.Kind == config.KindAuthorize && !registeredOAuthError[code] {
		return result, reason, ""
	}
	if fromRedirect && effective != resultError && effective != resultFailure {
		result, effective = resultFailure, resultFailure
	}
	if effective == resultFailure && !matched {
		reason = code
	}
	return result, reason, code
}

// forcedResult normalises a matcher's result: "" (refine only), error, or
// failure for anything else that is set.
func forcedResult(r string) string {
	switch strings.ToLower(strings.TrimSpace(r)) {
	case "":
		return ""
	case resultError:
		return resultError
	}
	return resultFailure
}

// matches applies one matcher to a response body: a JSON path that exists
// (or whose scalar value equals Equals), else a substring. A matcher with
// neither never matches.
func matches(m config.BodyMatcher, raw []byte, body fields) bool {
	switch {
	case m.JSONField != "":
		v, ok := body.get(m.JSONField)
		if !ok {
			return false
		}
		return m.Equals == "" || (v.scalar && v.val == m.Equals)
	case m.Contains != "":
		if len(raw) > maxBodyScan {
			raw = raw[:maxBodyScan]
		}
		return bytes.Contains(raw, []byte(m.Contains))
	}
	return false
}

// registeredOAuthError are the error codes of RFC 6749 (authorization and
// token endpoints), RFC 6750 (bearer tokens), RFC 8628 (device flow) and
// OpenID Connect Core.
var registeredOAuthError = map[string]bool{
	"invalid_request": true, "unauthorized_client": true, "access_denied": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "invalid_client": true, "invalid_grant": true,
	"unsupported_grant_type": true, "invalid_token": true, "insufficient_scope": true,
	"authorization_pending": true, "slow_down": true, "expired_token": true,
	"interaction_required": true, "login_required": true, "account_selection_required": true,
	"consent_required": true, "invalid_request_uri": true, "invalid_request_object": true,
	"request_not_supported": true, "request_uri_not_supported": true, "registration_not_supported": true,
}

// oauthError finds an OAuth2 error code in a response: the JSON/form body's
// top-level "error" string, else the error parameter of a redirect
// Location's query or fragment.
func oauthError(h decoder.Header, body fields) (code string, fromRedirect bool) {
	if v, ok := body.str("error"); ok {
		if c := clean(v, maxOAuthErrLen); c != "" {
			return c, false
		}
	}
	loc := headerGet(h, "Location")
	if loc == "" || len(loc) > maxLocationScan {
		return "", false
	}
	u, err := url.Parse(strings.TrimSpace(loc))
	if err != nil {
		return "", false
	}
	v := u.Query().Get("error")
	if v == "" && u.Fragment != "" {
		if q, err := url.ParseQuery(u.Fragment); err == nil {
			v = q.Get("error")
		}
	}
	if c := clean(v, maxOAuthErrLen); c != "" {
		return c, true
	}
	return "", false
}
