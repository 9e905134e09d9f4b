package secattr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authprobe/authprobe/config"
)

func TestJWT(t *testing.T) {
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	exp := func(d time.Duration) float64 { return float64(testTime.Add(d).Unix()) }
	deep := `{"a":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`
	tests := []struct {
		name  string
		cfg   config.JWTConfig
		token string
		want  map[string]string // attribute → value ("" means absent)
	}{
		{"claims", config.JWTConfig{}, jwt(t, hs, map[string]any{"sub": "u-1", "iss": "https://idp", "aud": "api", "roles": []any{"admin", 7, "user"}, "exp": exp(time.Hour)}, "c2ln"),
			map[string]string{"auth.token_type": "jwt", "auth.token.alg": "HS256", "auth.subject": "u-1", "enduser.id": "u-1", "auth.token.issuer": "https://idp",
				"auth.token.audience": "api", "auth.roles": "admin|user", "auth.token.expired": "false", "auth.token.unsigned": ""}},
		{"audience array", config.JWTConfig{}, jwt(t, hs, map[string]any{"aud": []any{"a", "b"}}, "c2ln"), map[string]string{"auth.token.audience": "a|b"}},
		{"scope string", config.JWTConfig{RolesClaim: "scope"}, jwt(t, hs, map[string]any{"scope": "read  write"}, "c2ln"), map[string]string{"auth.roles": "read|write"}},
		{"nested roles", config.JWTConfig{RolesClaim: "realm_access.roles"}, jwt(t, hs, map[string]any{"realm_access": map[string]any{"roles": []any{"r1"}}}, "c2ln"), map[string]string{"auth.roles": "r1"}},
		{"namespaced claim", config.JWTConfig{RolesClaim: "https://example.com/roles"}, jwt(t, hs, map[string]any{"https://example.com/roles": []any{"ops"}}, "c2ln"), map[string]string{"auth.roles": "ops"}},
		{"expired", config.JWTConfig{}, jwt(t, hs, map[string]any{"exp": exp(-time.Minute)}, "c2ln"), map[string]string{"auth.token.expired": "true"}},
		{"expired within leeway", config.JWTConfig{Leeway: config.Duration(2 * time.Minute)}, jwt(t, hs, map[string]any{"exp": exp(-time.Minute)}, "c2ln"), map[string]string{"auth.token.expired": "false"}},
		{"exp not a number", config.JWTConfig{}, jwt(t, hs, map[string]any{"exp": "soon"}, "c2ln"), map[string]string{"auth.token.expired": ""}},
		{"alg none", config.JWTConfig{}, jwt(t, map[string]any{"alg": "nOnE"}, map[string]any{"sub": "x"}, ""), map[string]string{"auth.token.unsigned": "true", "auth.token.alg": "nOnE"}},
		{"empty signature", config.JWTConfig{}, jwt(t, hs, map[string]any{"sub": "x"}, ""), map[string]string{"auth.token.unsigned": "true", "auth.token_type": "jwt"}},
		{"opaque", config.JWTConfig{}, "2YotnFZFEjr1zCsicMWpAA", map[string]string{"auth.token_type": "opaque", "auth.subject": ""}},
		{"jwe", config.JWTConfig{}, b64(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + ".a.b.c.d", map[string]string{"auth.token_type": "jwe", "auth.token.alg": "RSA-OAEP"}},
		{"base64 garbage", config.JWTConfig{}, "!!!.@@@.###", map[string]string{"auth.token_type": "malformed"}},
		{"not json", config.JWTConfig{}, b64("hello") + "." + b64("world") + ".c2ln", map[string]string{"auth.token_type": "malformed"}},
		{"claims not an object", config.JWTConfig{}, jwt(t, hs, `[1,2]`, "c2ln"), map[string]string{"auth.token_type": "malformed"}},
		{"header without alg", config.JWTConfig{}, jwt(t, map[string]any{"typ": "JWT"}, map[string]any{}, "c2ln"), map[string]string{"auth.token_type": "malformed"}},
		{"truncated claims", config.JWTConfig{}, b64(`{"alg":"HS256"}`) + "." + b64(`{"sub":"abc`) + ".c2ln", map[string]string{"auth.token_type": "malformed", "auth.subject": ""}},
		{"huge header", config.JWTConfig{}, jwt(t, map[string]any{"alg": "HS256", "x": strings.Repeat("a", 9000)}, map[string]any{}, "c2ln"), map[string]string{"auth.token_type": "malformed"}},
		{"huge claims", config.JWTConfig{}, jwt(t, hs, map[string]any{"x": strings.Repeat("a", 17000)}, "c2ln"), map[string]string{"auth.token_type": "malformed"}},
		{"huge signature", config.JWTConfig{}, jwt(t, hs, map[string]any{}, strings.Repeat("A", 10000)), map[string]string{"auth.token_type": "malformed"}},
		{"deep nesting bomb", config.JWTConfig{}, jwt(t, hs, deep, "c2ln"), map[string]string{"auth.token_type": "malformed"}},
		{"control characters in claims", config.JWTConfig{}, jwt(t, hs, map[string]any{"sub": "a\r\nb\x00c", "iss": strings.Repeat("é", 300)}, "c2ln"),
			map[string]string{"auth.subject": "abc", "auth.token.issuer": strings.Repeat("é", 128)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustExtractor(t, config.Security{JWT: tt.cfg})
			out := e.Extract(input(config.KindOther, request("/api", "", "Authorization", "Bearer "+tt.token), nil, "success"))
			got := attrs(t, out)
			for k, want := range tt.want {
				v, ok := got[k]
				if want == "" {
					if ok {
						t.Errorf("%s = %q, want absent", k, str(v))
					}
					continue
				}
				if !ok || str(v) != want {
					t.Errorf("%s = %q, want %q", k, str(v), want)
				}
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestJWKSVerify(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hmacKey := []byte("a-shared-hmac-secret-of-32-bytes")
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ecKey.Public(), KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
		{Key: hmacKey, KeyID: "hs1", Algorithm: "HS256", Use: "sig"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	e := mustExtractor(t, config.Security{JWT: config.JWTConfig{JWKSFile: mustFile(t, "jwks.json", string(b))}})

	sign := func(alg jose.SignatureAlgorithm, key any, kid string) string {
		opts := &jose.SignerOptions{}
		if kid != "" {
			opts = opts.WithHeader("kid", kid)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign([]byte(`{"sub":"svc"}`))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	esTok := sign(jose.ES256, ecKey, "ec1")
	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"es256", esTok, "true"},
		{"hs256", sign(jose.HS256, hmacKey, "hs1"), "true"},
		{"hs256 without kid", sign(jose.HS256, hmacKey, ""), "true"},
		{"wrong key", sign(jose.ES256, otherEC, "ec1"), "false"},
		{"unknown kid", sign(jose.HS256, hmacKey, "nope"), "false"},
		{"tampered claims", strings.Split(esTok, ".")[0] + "." + b64(`{"sub":"admin"}`) + "." + strings.Split(esTok, ".")[2], "false"},
		{"alg none", jwt(t, map[string]any{"alg": "none"}, map[string]any{"sub": "svc"}, ""), "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := e.Extract(input(config.KindOther, request("/api", "", "Authorization", "Bearer "+tt.token), nil, "success"))
			if got := str(attrs(t, out)["auth.token.verified"]); got != tt.want {
				t.Errorf("auth.token.verified = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJSONDepth(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want bool
	}{
		{`{"a":[1,{"b":2}]}`, 3, true},
		{`{"a":[1,{"b":2}]}`, 2, false},
		{`{"a":"[[[[[[[[["}`, 1, true},
		{`{"a":"\"[[[["}`, 1, true},
		{strings.Repeat("[", 100000), 32, false},
	}
	for _, tt := range tests {
		if got := jsonDepthWithin([]byte(tt.in), tt.max); got != tt.want {
			t.Errorf("jsonDepthWithin(%.30q, %d) = %v", tt.in, tt.max, got)
		}
	}
}
