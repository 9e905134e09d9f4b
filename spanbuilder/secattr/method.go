package secattr

import (
	"encoding/base64"
	"net/url"
	"strings"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// auth.method values.
const (
	MethodBasic    = "basic"
	MethodBearer   = "bearer"
	MethodAPIKey   = "api_key"
	MethodPassword = "password"
	MethodOAuth2   = "oauth2"
	MethodCookie   = "cookie"
	MethodNone     = "none"
	// MethodOther is an Authorization header whose scheme is not a known
	// one: an unknown first word may be a bare secret, so it is not shown.
	MethodOther = "other"
)

// knownSchemes are the IANA-registered HTTP authentication schemes plus
// widespread unregistered ones; only these are exported by name.
var knownSchemes = [...]string{
	"basic", "bearer", "concealed", "digest", "dpop", "gnap", "hoba",
	"mutual", "negotiate", "oauth", "privatetoken", "scram-sha-1",
	"scram-sha-256", "vapid",
	"ntlm", "kerberos", "aws4-hmac-sha256", "token", "apikey", "ssws", "hawk",
}

const (
	maxBasicEncoded = 4 << 10
	maxGrantLen     = 64
	maxClientIDLen  = 128
)

// passwordKeys are body field names that carry a password.
var passwordKeys = [...]string{"password", "passwd", "pass", "pwd"}

// authInfo is how the request authenticated. The raw secrets in it (bearer)
// stay inside Extract.
type authInfo struct {
	method    string
	duplicate bool   // more than one Authorization header
	basicUser string // username of Basic credentials (raw)
	// basicConflict: another Authorization header carries Basic
	// credentials of another user.
	basicConflict bool
	bearer        string // raw bearer token, for JWT decoding only
	grantType     string // normalised OAuth2 grant type
	clientID      string // raw OAuth2 client_id
	grantUser     string // username of an OAuth2 password grant (raw)
	hasGrantType  bool
}

// detectMethod applies the precedence Authorization header > API key >
// OAuth2 grant > password body > session cookie > none, with one
// protocol-driven exception: on a token route, Basic credentials next to a
// grant_type are the OAuth2 client's (RFC 6749 §2.3.1), so the method is
// oauth2 and the Basic username is the client_id, not a user.
func (e *Extractor) detectMethod(route config.Route, req *decoder.Request, body fields) authInfo {
	var a authInfo
	if req == nil {
		a.method = MethodNone
		return a
	}
	if route.Kind == config.KindToken {
		if gt, ok := body.str("grant_type"); ok && strings.TrimSpace(gt) != "" {
			a.hasGrantType = true
			a.grantType = normaliseGrant(gt)
			a.clientID, _ = body.str("client_id")
			if a.grantType == "password" {
				a.grantUser, _ = body.str("username")
			}
		}
	}

	authz := headerGet(req.Header, "Authorization")
	a.duplicate = headerCount(req.Header, "Authorization") > 1
	if strings.TrimSpace(authz) != "" {
		scheme, cred := splitAuthorization(authz)
		switch scheme {
		case MethodBasic:
			user, ok := basicUser(cred)
			if a.hasGrantType {
				a.method = MethodOAuth2
				if ok && a.clientID == "" {
					// client_secret_basic form-encodes the id (RFC 6749 §2.3.1).
					if u, err := url.QueryUnescape(user); err == nil {
						user = u
					}
					a.clientID = user
				}
				return a
			}
			a.method = MethodBasic
			if ok {
				a.basicUser = user
			}
			if a.duplicate {
				a.basicConflict = otherBasicUser(req.Header, user)
			}
		case MethodBearer:
			a.method = MethodBearer
			a.bearer = cred
		default:
			a.method = scheme
		}
		return a
	}
	switch {
	case e.hasAPIKey(req):
		a.method = MethodAPIKey
	case a.hasGrantType:
		a.method = MethodOAuth2
	case hasPassword(body):
		a.method = MethodPassword
	case e.hasSessionCookie(req.Header):
		a.method = MethodCookie
	default:
		a.method = MethodNone
	}
	return a
}

// splitAuthorization returns the lowercase scheme and the credentials of an
// Authorization value. A value that is not "known-scheme SP credentials"
// gives MethodOther: a bare secret must never become a method name.
func splitAuthorization(v string) (scheme, cred string) {
	v = strings.TrimSpace(v)
	s, c, ok := strings.Cut(v, " ")
	c = strings.TrimSpace(c)
	if !ok || c == "" {
		return MethodOther, ""
	}
	for _, k := range knownSchemes {
		if strings.EqualFold(s, k) {
			return k, c
		}
	}
	return MethodOther, ""
}

// otherBasicUser reports an Authorization header with Basic credentials
// of a user other than first: servers take the first header (Go, Node,
// Python) or join them (some proxies), so neither user is known.
func otherBasicUser(h decoder.Header, first string) bool {
	for _, f := range h {
		if !strings.EqualFold(f.Name, "Authorization") {
			continue
		}
		if scheme, cred := splitAuthorization(f.Value); scheme == MethodBasic {
			if u, ok := basicUser(cred); !ok || u != first {
				return true
			}
		}
	}
	return false
}

// basicUser decodes Basic credentials and returns the user-id part.
func basicUser(cred string) (string, bool) {
	if len(cred) > maxBasicEncoded {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(cred)
		if err != nil {
			return "", false
		}
	}
	user, _, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false
	}
	return user, true
}

// normaliseGrant maps grant_type values to short names: the RFC 6749 ones as
// they are, registered URNs (urn:ietf:params:oauth:grant-type:device_code)
// to their last part with '-' as '_', anything else cleaned.
func normaliseGrant(gt string) string {
	gt = strings.TrimSpace(gt)
	const urn = "urn:ietf:params:oauth:grant-type:"
	if len(gt) > len(urn) && strings.EqualFold(gt[:len(urn)], urn) {
		gt = strings.ReplaceAll(gt[len(urn):], "-", "_")
	}
	return clean(strings.ToLower(gt), maxGrantLen)
}

// hasAPIKey reports a non-empty configured API key header or query parameter.
func (e *Extractor) hasAPIKey(req *decoder.Request) bool {
	for _, name := range e.apiHeaders {
		if strings.TrimSpace(headerGet(req.Header, name)) != "" {
			return true
		}
	}
	if len(e.apiQuery) == 0 {
		return false
	}
	_, rawQuery, ok := strings.Cut(req.Target, "?")
	if !ok {
		return false
	}
	rawQuery, _, _ = strings.Cut(rawQuery, "#")
	for pair := range strings.SplitSeq(rawQuery, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if v == "" {
			continue
		}
		if uk, err := url.QueryUnescape(k); err == nil && containsFold(e.apiQuery, uk) {
			return true
		}
	}
	return false
}

// hasPassword reports a non-empty password field in a body: a form field or
// multipart part named like passwordKeys (also as "user[password]"), or such
// a key anywhere in the first three levels of a JSON object.
func hasPassword(body fields) bool {
	for k, v := range body.all() {
		if v.scalar && v.val != "" && isPasswordKey(k) {
			return true
		}
	}
	return false
}

func isPasswordKey(k string) bool {
	if strings.Count(k, ".") > 2 {
		return false
	}
	last := k
	if i := strings.LastIndexByte(last, '.'); i >= 0 {
		last = last[i+1:]
	}
	if strings.HasSuffix(last, "]") {
		if i := strings.LastIndexByte(last, '['); i >= 0 {
			last = last[i+1 : len(last)-1]
		}
	}
	for _, p := range passwordKeys {
		if strings.EqualFold(last, p) {
			return true
		}
	}
	return false
}

// hasSessionCookie reports a configured session cookie in the request.
func (e *Extractor) hasSessionCookie(h decoder.Header) bool {
	if len(e.sessionCookies) == 0 {
		return false
	}
	found := false
	cookieNames(h, func(name string) bool {
		found = containsFold(e.sessionCookies, name)
		return found
	})
	return found
}
