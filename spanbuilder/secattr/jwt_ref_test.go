package secattr

// The bearer-token decoding authprobe had before its own zero-allocation
// one (encoding/json into a map), kept as the reference that
// FuzzJWTDifferential holds jwt.go to.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// refJWTHeader is the part of a JOSE header we read.
type refJWTHeader struct {
	Alg *string `json:"alg"`
	Enc string  `json:"enc"`
}

// token is what a bearer token revealed. It holds no part of the token.
type refToken struct {
	kind     string
	alg      string
	unsigned bool
	claims   map[string]any
}

// decodeToken classifies a bearer token and, for a JWS, decodes (without
// verifying) its header and claims. Nothing here fails: a token that looks
// like a JWT (three segments) but does not decode is "malformed".
func refDecodeToken(tok string) refToken {
	switch strings.Count(tok, ".") {
	case 2:
		return refDecodeJWS(tok)
	case 4:
		// JWE compact: only the header is readable.
		h, _, _ := strings.Cut(tok, ".")
		var hdr refJWTHeader
		if refDecodeJSONSegment(h, maxJWTHeader, maxHeaderDepth, &hdr) && hdr.Enc != "" {
			t := refToken{kind: TokenJWE}
			if hdr.Alg != nil {
				t.alg = clean(*hdr.Alg, maxAlgLen)
			}
			return t
		}
	}
	return refToken{kind: TokenOpaque}
}

func refDecodeJWS(tok string) refToken {
	bad := refToken{kind: TokenMalformed}
	h, rest, _ := strings.Cut(tok, ".")
	p, sig, _ := strings.Cut(rest, ".")
	if base64.RawURLEncoding.DecodedLen(len(sig)) > maxJWTSignature || !isBase64URL(sig) {
		return bad
	}
	var hdr refJWTHeader
	if !refDecodeJSONSegment(h, maxJWTHeader, maxHeaderDepth, &hdr) || hdr.Alg == nil {
		return bad
	}
	var claims map[string]any
	if !refDecodeJSONSegment(p, maxJWTClaims, maxClaimsDepth, &claims) || claims == nil {
		return bad
	}
	alg := clean(*hdr.Alg, maxAlgLen)
	return refToken{
		kind:     TokenJWT,
		alg:      alg,
		unsigned: strings.EqualFold(strings.TrimSpace(*hdr.Alg), "none") || sig == "",
		claims:   claims,
	}
}

// decodeJSONSegment base64url-decodes one segment of at most max decoded
// bytes, checks its nesting before any JSON decoding, and unmarshals it.
func refDecodeJSONSegment(seg string, max, depth int, v any) bool {
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

// tokenAttrs adds the attributes of a bearer token.
func (e *Extractor) refTokenAttrs(attrs []attribute.KeyValue, raw string, now time.Time) []attribute.KeyValue {
	t := refDecodeToken(raw)
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
	if aud := refStringsOf(t.claims["aud"], false); len(aud) > 0 {
		attrs = append(attrs, attribute.StringSlice("auth.token.audience", refCleanList(aud, MaxValueLen, maxAudiences)))
	}
	if exp, ok := t.claims["exp"].(float64); ok && !now.IsZero() && !math.IsNaN(exp) {
		attrs = append(attrs, attribute.Bool("auth.token.expired", refExpired(exp, now, e.leeway)))
	}
	if roles := refCleanList(refStringsOf(refClaimAt(t.claims, e.rolesClaim), true), maxRoleLen, maxRoles); len(roles) > 0 {
		attrs = append(attrs, attribute.StringSlice("auth.roles", roles))
	}
	return attrs
}

// expired reports exp (NumericDate seconds) before now minus leeway.
func refExpired(exp float64, now time.Time, leeway time.Duration) bool {
	limit := float64(now.Add(-leeway).UnixNano()) / 1e9
	return exp < limit
}

// claimAt finds a claim by its full name first (namespaced claims such as
// "https://example.com/roles" contain dots), then by dotted path
// ("realm_access.roles").
func refClaimAt(claims map[string]any, path string) any {
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
func refStringsOf(v any, split bool) []string {
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

// refCleanList cleans each value, drops empty ones and keeps at most n.
func refCleanList(vals []string, max, n int) []string {
	out := make([]string, 0, min(len(vals), n))
	for _, v := range vals {
		if len(out) == n {
			break
		}
		if c := clean(v, max); c != "" {
			out = append(out, c)
		}
	}
	return out
}
