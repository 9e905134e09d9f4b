package secattr

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// auth.token_type values.
const (
	TokenJWT       = "jwt"
	TokenJWE       = "jwe" // encrypted: claims cannot be read
	TokenOpaque    = "opaque"
	TokenMalformed = "malformed"
)

// Bounds on token decoding: a hostile token costs at most a few tens of
// KiB of base64 and a depth-checked JSON decode.
const (
	maxJWTHeader    = 8 << 10  // decoded header bytes
	maxJWTClaims    = 16 << 10 // decoded claims bytes
	maxJWTSignature = 2 << 10  // decoded signature bytes (RSA-16384)
	maxHeaderDepth  = 4
	maxClaimsDepth  = 16
	maxRoles        = 32
	maxRoleLen      = 128
	maxAudiences    = 8
	maxAlgLen       = 32
)

// jwtHeader is the part of a JOSE header we read.
type jwtHeader struct {
	Alg *string `json:"alg"`
	Enc string  `json:"enc"`
}

// token is what a bearer token revealed. It holds no part of the token.
type token struct {
	kind     string
	alg      string
	unsigned bool
	claims   map[string]any
}

// decodeToken classifies a bearer token and, for a JWS, decodes (without
// verifying) its header and claims. Nothing here fails: a token that looks
// like a JWT (three segments) but does not decode is "malformed".
func decodeToken(tok string) token {
	switch strings.Count(tok, ".") {
	case 2:
		return decodeJWS(tok)
	case 4:
		// JWE compact: only the header is readable.
		h, _, _ := strings.Cut(tok, ".")
		var hdr jwtHeader
		if decodeJSONSegment(h, maxJWTHeader, maxHeaderDepth, &hdr) && hdr.Enc != "" {
			t := token{kind: TokenJWE}
			if hdr.Alg != nil {
				t.alg = clean(*hdr.Alg, maxAlgLen)
			}
			return t
		}
	}
	return token{kind: TokenOpaque}
}

func decodeJWS(tok string) token {
	bad := token{kind: TokenMalformed}
	h, rest, _ := strings.Cut(tok, ".")
	p, sig, _ := strings.Cut(rest, ".")
	if base64.RawURLEncoding.DecodedLen(len(sig)) > maxJWTSignature || !isBase64URL(sig) {
		return bad
	}
	var hdr jwtHeader
	if !decodeJSONSegment(h, maxJWTHeader, maxHeaderDepth, &hdr) || hdr.Alg == nil {
		return bad
	}
	var claims map[string]any
	if !decodeJSONSegment(p, maxJWTClaims, maxClaimsDepth, &claims) || claims == nil {
		return bad
	}
	alg := clean(*hdr.Alg, maxAlgLen)
	return token{
		kind:     TokenJWT,
		alg:      alg,
		unsigned: strings.EqualFold(strings.TrimSpace(*hdr.Alg), "none") || sig == "",
		claims:   claims,
	}
}

// decodeJSONSegment base64url-decodes one segment of at most max decoded
// bytes, checks its nesting before any JSON decoding, and unmarshals it.
func decodeJSONSegment(seg string, max, depth int, v any) bool {
	if seg == "" || base64.RawURLEncoding.DecodedLen(len(seg)) > max+2 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil || len(raw) > max {
		return false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || !jsonDepthWithin(raw, depth) {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// jsonDepthWithin reports whether data nests objects and arrays at most max
// deep. One linear pass with no allocation, so nesting bombs are rejected
// before encoding/json (which recurses) sees them.
func jsonDepthWithin(data []byte, max int) bool {
	depth, inStr, esc := 0, false, false
	for _, c := range data {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				return false
			}
		case '}', ']':
			depth--
		}
	}
	return true
}

// tokenAttrs adds the attributes of a bearer token.
func (e *Extractor) tokenAttrs(attrs []attribute.KeyValue, raw string, now time.Time) []attribute.KeyValue {
	t := decodeToken(raw)
	attrs = append(attrs, attribute.String("auth.token_type", t.kind))
	if t.alg != "" {
		attrs = append(attrs, attribute.String("auth.token.alg", t.alg))
	}
	if t.kind != TokenJWT {
		return attrs
	}
	if t.unsigned {
		attrs = append(attrs, attribute.Bool("auth.token.unsigned", true))
	}
	if e.jwks != nil {
		attrs = append(attrs, attribute.Bool("auth.token.verified", !t.unsigned && e.verify(raw)))
	}
	if sub, ok := t.claims["sub"].(string); ok {
		if s := clean(sub, MaxValueLen); s != "" {
			attrs = append(attrs, attribute.String("auth.subject", s), attribute.String("enduser.id", s))
		}
	}
	if iss, ok := t.claims["iss"].(string); ok {
		if s := clean(iss, MaxValueLen); s != "" {
			attrs = append(attrs, attribute.String("auth.token.issuer", s))
		}
	}
	if aud := stringsOf(t.claims["aud"], false); len(aud) > 0 {
		attrs = append(attrs, attribute.StringSlice("auth.token.audience", cleanList(aud, MaxValueLen, maxAudiences)))
	}
	if exp, ok := t.claims["exp"].(float64); ok && !now.IsZero() && !math.IsNaN(exp) {
		attrs = append(attrs, attribute.Bool("auth.token.expired", expired(exp, now, e.leeway)))
	}
	if roles := cleanList(stringsOf(claimAt(t.claims, e.rolesClaim), true), maxRoleLen, maxRoles); len(roles) > 0 {
		attrs = append(attrs, attribute.StringSlice("auth.roles", roles))
	}
	return attrs
}

// expired reports exp (NumericDate seconds) before now minus leeway.
func expired(exp float64, now time.Time, leeway time.Duration) bool {
	limit := float64(now.Add(-leeway).UnixNano()) / 1e9
	return exp < limit
}

// claimAt finds a claim by its full name first (namespaced claims such as
// "https://example.com/roles" contain dots), then by dotted path
// ("realm_access.roles").
func claimAt(claims map[string]any, path string) any {
	if path == "" {
		return nil
	}
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for seg := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[seg]; !ok {
			return nil
		}
	}
	return cur
}

// stringsOf reads a string or an array of strings (non-strings skipped); a
// string is split on spaces when split is set (OAuth2 "scope").
func stringsOf(v any, split bool) []string {
	switch x := v.(type) {
	case string:
		if split {
			return strings.Fields(x)
		}
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, el := range x {
			if s, ok := el.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
