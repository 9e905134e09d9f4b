package secattr

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/authprobe/authprobe/config"
)

// dumpAttrs is a list of attributes as text, in order, for comparing.
func dumpAttrs(attrs []attribute.KeyValue) string {
	var b strings.Builder
	for _, kv := range attrs {
		fmt.Fprintf(&b, "%s=%s(%q) ", kv.Key, kv.Value.Type(), kv.Value.Emit())
	}
	return b.String()
}

// jwtDiffCase checks one token against the reference (encoding/json into
// a map, jwt_ref_test.go) for every roles claim setting, with and without
// a Memory.
func jwtDiffCase(t *testing.T, exts []*Extractor, tok string) {
	t.Helper()
	now := testTime
	for _, e := range exts {
		want := dumpAttrs(e.refTokenAttrs(nil, tok, now))
		if got := dumpAttrs(e.tokenAttrs(nil, tok, now, nil)); got != want {
			t.Fatalf("roles claim %q, token %q:\n got  %s\n want %s", e.rolesClaim, tok, got, want)
		}
		var m Memory
		if got := dumpAttrs(e.tokenAttrs(nil, tok, now, &m)); got != want {
			t.Fatalf("roles claim %q, token %q, in a Memory:\n got  %s\n want %s", e.rolesClaim, tok, got, want)
		}
		m.Reset()
	}
}

func jwtDiffExtractors(t testing.TB) []*Extractor {
	var exts []*Extractor
	for _, rc := range []string{"", "realm_access.roles", "scope", "a.b.c", "https://x/roles", "."} {
		exts = append(exts, mustExtractor(t, config.Security{JWT: config.JWTConfig{RolesClaim: rc, Leeway: config.Duration(time.Minute)}}))
	}
	return exts
}

// FuzzJWTDifferential: the zero-allocation token decoding says what
// encoding/json says, for the header and claims JSON the fuzzer makes
// (base64url-encoded into a token, with or without a signature) and for
// the raw token string itself.
func FuzzJWTDifferential(f *testing.F) {
	for _, s := range jwtDiffSeeds {
		f.Add(s[0], s[1], s[2])
	}
	exts := jwtDiffExtractors(f)
	enc := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header, claims, sig string) {
		jwtDiffCase(t, exts, enc([]byte(header))+"."+enc([]byte(claims))+"."+sig)
		jwtDiffCase(t, exts, enc([]byte(header))+".a.b.c.d")
		jwtDiffCase(t, exts, header)
	})
}

// jwtDiffSeeds are headers, claims and signatures where encoding/json's
// rules are easy to miss: repeated and case-folded names, nulls, numbers
// out of float64's range, nesting, escapes, invalid UTF-8, whitespace.
var jwtDiffSeeds = [][3]string{
	{`{"alg":"HS256","typ":"JWT"}`, `{"sub":"u-1","iss":"https://idp","aud":"api","roles":["admin",7,"user"],"exp":1796194728}`, "c2ln"},
	{`{"ALG":"HS256"}`, `{"sub":"a","sub":"b","aud":["x","y",""],"exp":1e400}`, "c2ln"},
	{`{"alg":"HS256","Alg":null}`, `{"sub":1}`, "c2ln"},
	{`{"alg":"none"}`, `{"sub":"x","exp":"soon"}`, ""},
	{`{"alg":5}`, `{}`, "c2ln"},
	{`{"alg":"RSA-OAEP","enc":"A256GCM","enc":null}`, `{}`, "c2ln"},
	{`{"alg":"HS256","enc":{}}`, `{}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"realm_access":{"roles":["r1"]},"realm_access":{"x":1}}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"realm_access":{"roles":"r1  r2\u00a0r3"},"scope":"read\twrite","a":{"b":{"c":["deep"]}}}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"https://x/roles":null,"https":{"//x/roles":["no"]}}`, "c2ln"},
	{`{"alg":"HS\u0032\u00e9\ud83d\ude00\ud800"}`, "{\"sub\":\"a\xffb\",\"iss\":\"\\u0000x\\n\"}", "c2ln"},
	{" \v{\"alg\":\"HS256\"}\n", "\u00a0{\"sub\":\"x\"} ", "c2ln"},
	{`{"alg":"HS256"}`, `{"sub":"x"} {}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"exp":-0,"n":[1.5e-400,1E+2,-12.25]}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"roles":["` + strings.Repeat("r", 200) + `","b\u200bc"],"aud":[[],"a",{"x":"y"}]}`, "c2ln"},
	{`{"alg":"HS256"}`, `{"":{"":["empty path"]}}`, "c2ln"},
}

// TestJWTDifferentialSeeds runs the fuzzer's seeds as a plain test.
func TestJWTDifferentialSeeds(t *testing.T) {
	exts := jwtDiffExtractors(t)
	enc := base64.RawURLEncoding.EncodeToString
	for _, s := range jwtDiffSeeds {
		jwtDiffCase(t, exts, enc([]byte(s[0]))+"."+enc([]byte(s[1]))+"."+s[2])
		jwtDiffCase(t, exts, enc([]byte(s[0]))+".a.b.c.d")
	}
}

// TestTokenAttrsAllocations: a JWT's attributes made in a reused Memory
// allocate nothing once the roles and audience lists have been seen.
func TestTokenAttrsAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	e := mustExtractor(t, config.Security{})
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc([]byte(`{"sub":"alice","iss":"https://idp.example","aud":["api","web"],"roles":["user","admin"],"exp":1796194728}`)) + ".c2ln"
	var m Memory
	attrs := make([]attribute.KeyValue, 0, 16)
	if n := testing.AllocsPerRun(100, func() { attrs = e.tokenAttrs(attrs[:0], tok, testTime, &m); m.Reset() }); n > 0 {
		t.Errorf("%.1f allocations per token", n)
	}
}
