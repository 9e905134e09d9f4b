package secattr

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
	"time"
	"unsafe"

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

// token is what a bearer token revealed: its kind and algorithm, and
// its decoded claims, which live in the scratch it was decoded in (parsed
// there as a document) and are wiped with it.
type token struct {
	kind     string
	alg      string // cleaned, in the Memory given to decodeToken
	unsigned bool
	claims   []byte // the decoded claims (numbers are read from them); nil when none
}

// decodeToken classifies a bearer token and, for a JWS, decodes (without
// verifying) its header and claims, leaving the claims parsed in sc (its
// nodes, from 0). Nothing here fails: a token that looks like a JWT (three
// segments) but does not decode is "malformed". It reads the segments as
// encoding/json's Unmarshal would (FuzzJWTDifferential holds it to that)
// and allocates nothing once sc and m have grown.
func decodeToken(tok string, sc *scratch, m *Memory) token {
	switch strings.Count(tok, ".") {
	case 2:
		return decodeJWS(tok, sc, m)
	case 4:
		// JWE compact: only the header is readable.
		h, _, _ := strings.Cut(tok, ".")
		if alg, enc, ok := decodeHeader(h, sc); ok && enc != "" {
			t := token{kind: TokenJWE}
			if alg >= 0 {
				t.alg = m.clean(sc.str(alg), maxAlgLen)
			}
			return t
		}
	}
	return token{kind: TokenOpaque}
}

func decodeJWS(tok string, sc *scratch, m *Memory) token {
	bad := token{kind: TokenMalformed}
	h, rest, _ := strings.Cut(tok, ".")
	p, sig, _ := strings.Cut(rest, ".")
	if base64.RawURLEncoding.DecodedLen(len(sig)) > maxJWTSignature || !isBase64URL(sig) {
		return bad
	}
	alg, _, ok := decodeHeader(h, sc)
	if !ok || alg < 0 {
		return bad
	}
	t := token{
		kind:     TokenJWT,
		alg:      m.clean(sc.str(alg), maxAlgLen),
		unsigned: strings.EqualFold(strings.TrimSpace(sc.str(alg)), "none") || sig == "",
	}
	sc.reset()
	if t.claims = decodeSegment(p, maxJWTClaims, maxClaimsDepth, sc, true); t.claims == nil {
		return bad
	}
	return t
}

// decodeHeader decodes a JOSE header into sc and finds what Unmarshal
// into struct{Alg *string; Enc string} would set: alg is the node of the
// last "alg" member (any case) or -1 (absent, or null last), enc the last
// "enc" string. A number, boolean, object or array in either is an error,
// as Unmarshal's type error is.
func decodeHeader(seg string, sc *scratch) (alg int32, enc string, ok bool) {
	sc.reset()
	if decodeSegment(seg, maxJWTHeader, maxHeaderDepth, sc, false) == nil {
		return -1, "", false
	}
	alg = -1
	for i := int32(1); i < sc.nodes[0].end; i = sc.nextSibling(i) {
		isAlg, isEnc := sc.keyFolds(i, "alg"), sc.keyFolds(i, "enc")
		if !isAlg && !isEnc {
			continue
		}
		switch sc.nodes[i].tok {
		case jsonString:
			if isAlg {
				alg = i
			} else {
				enc = sc.str(i)
			}
		case jsonNull:
			if isAlg {
				alg = -1 // null sets the pointer to nil; a string ignores it
			}
		default:
			return -1, "", false
		}
	}
	return alg, enc, true
}

// decodeSegment base64url-decodes one segment of at most max decoded
// bytes into sc, checks its nesting before parsing, and parses it as an
// object; it returns the decoded bytes (in sc), or nil.
func decodeSegment(seg string, max, depth int, sc *scratch, floats bool) []byte {
	if seg == "" || base64.RawURLEncoding.DecodedLen(len(seg)) > max+2 {
		return nil
	}
	src := strings.TrimRight(seg, "=")
	sc.raw = slices.Grow(sc.raw[:0], base64.RawURLEncoding.DecodedLen(len(src)))
	sc.raw = sc.raw[:base64.RawURLEncoding.DecodedLen(len(src))]
	n, err := base64.RawURLEncoding.Decode(sc.raw, unsafe.Slice(unsafe.StringData(src), len(src)))
	if err != nil || n > max {
		return nil
	}
	raw := bytes.TrimSpace(sc.raw[:n])
	if len(raw) == 0 || raw[0] != '{' || !jsonDepthWithin(raw, depth) || !parseDoc(sc, raw, floats) {
		return nil
	}
	return raw
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

// tokenAttrs adds the attributes of a bearer token; their strings are in
// m (valid until its Reset).
func (e *Extractor) tokenAttrs(attrs []attribute.KeyValue, raw string, now time.Time, m *Memory) []attribute.KeyValue {
	sc := e.scratches.get(m)
	defer e.scratches.put(sc)
	defer sc.wipe()
	t := decodeToken(raw, sc, m)
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
	if n := sc.member(0, "sub"); n >= 0 && sc.nodes[n].tok == jsonString {
		if s := m.clean(sc.str(n), MaxValueLen); s != "" {
			attrs = append(attrs, attribute.String("auth.subject", s), attribute.String("enduser.id", s))
		}
	}
	if n := sc.member(0, "iss"); n >= 0 && sc.nodes[n].tok == jsonString {
		if s := m.clean(sc.str(n), MaxValueLen); s != "" {
			attrs = append(attrs, attribute.String("auth.token.issuer", s))
		}
	}
	if n := sc.member(0, "aud"); n >= 0 {
		if v, found, _ := e.lists.of(sc, n, false, MaxValueLen, maxAudiences); found > 0 {
			attrs = append(attrs, attribute.KeyValue{Key: "auth.token.audience", Value: v})
		}
	}
	if n := sc.member(0, "exp"); n >= 0 && sc.nodes[n].tok == jsonNumber && !now.IsZero() {
		attrs = append(attrs, attribute.Bool("auth.token.expired", expired(sc.float(n, t.claims), now, e.leeway)))
	}
	if n := claimAt(sc, e.rolesClaim); n >= 0 {
		if v, _, kept := e.lists.of(sc, n, true, maxRoleLen, maxRoles); kept > 0 {
			attrs = append(attrs, attribute.KeyValue{Key: "auth.roles", Value: v})
		}
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
// ("realm_access.roles"); -1 when there is none.
func claimAt(sc *scratch, path string) int32 {
	if path == "" {
		return -1
	}
	if n := sc.member(0, path); n >= 0 {
		return n
	}
	cur := int32(0)
	for seg := range strings.SplitSeq(path, ".") {
		if cur = sc.member(cur, seg); cur < 0 {
			return -1
		}
	}
	return cur
}
