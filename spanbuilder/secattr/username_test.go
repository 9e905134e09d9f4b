package secattr

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
)

func wantHash(u string) string {
	m := hmac.New(sha256.New, []byte(testKey))
	m.Write([]byte(u))
	return HashPrefix + hex.EncodeToString(m.Sum(nil)[:16])
}

func TestUsername(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	cfg := config.Security{Username: config.UsernameConfig{
		Privacy:    config.PrivacyPlain,
		BodyFields: []string{"user.email", "username", "login"},
	}}
	plain := mustExtractor(t, cfg)
	cfg.Username.Header = "X-Remote-User"
	withHeader := mustExtractor(t, cfg)
	cfg.Username.Lowercase = ptr(false)
	cfg.Username.Header = ""
	keepCase := mustExtractor(t, cfg)

	tests := []struct {
		name string
		e    *Extractor
		in   Input
		want string // "" for no username
	}{
		{"form", plain, input(config.KindLogin, request("/login", "username=alice&password=x", "Content-Type", form), nil, ""), "alice"},
		{"form order of fields", plain, input(config.KindLogin, request("/login", "login=second&username=first", "Content-Type", form), nil, ""), "first"},
		{"json dotted path", plain, input(config.KindLogin, request("/login", `{"user":{"email":" Alice@Example.COM "},"password":"x"}`, "Content-Type", "application/json"), nil, ""), "alice@example.com"},
		{"json non-string ignored", plain, input(config.KindLogin, request("/login", `{"username":{"a":1},"login":"bob"}`, "Content-Type", "application/json"), nil, ""), "bob"},
		{"email lowercased", plain, input(config.KindLogin, request("/login", "username=Bob@Example.com", "Content-Type", form), nil, ""), "bob@example.com"},
		{"non-email keeps case", plain, input(config.KindLogin, request("/login", "username=BobSmith", "Content-Type", form), nil, ""), "BobSmith"},
		{"lowercase off", keepCase, input(config.KindLogin, request("/login", "username=Bob@Example.com", "Content-Type", form), nil, ""), "Bob@Example.com"},
		{"basic", plain, input(config.KindLogin, request("/login", "", "Authorization", basic("carol", "pw:with:colons")), nil, ""), "carol"},
		{"basic garbage", plain, input(config.KindLogin, request("/login", "", "Authorization", "Basic !!!notbase64"), nil, ""), ""},
		{"basic without colon", plain, input(config.KindLogin, request("/login", "", "Authorization", "Basic Y2Fyb2w="), nil, ""), ""},
		{"header", withHeader, input(config.KindLogin, request("/login", "username=body", "X-Remote-User", "dave", "Content-Type", form), nil, ""), "dave"},
		{"header empty falls back", withHeader, input(config.KindLogin, request("/login", "username=body", "X-Remote-User", " ", "Content-Type", form), nil, ""), "body"},
		{"oauth2 password grant", plain, input(config.KindToken, request("/token", "grant_type=password&username=erin&password=x", "Content-Type", form), nil, ""), "erin"},
		{"client_secret_basic is no user", plain, input(config.KindToken, request("/token", "grant_type=client_credentials", "Authorization", basic("app", "s"), "Content-Type", form), nil, ""), ""},
		{"control characters cleaned", plain, input(config.KindLogin, request("/login", "username=ev%0D%0Ail%1B%5B31m%E2%80%AE", "Content-Type", form), nil, ""), "evil[31m"},
		{"invalid utf-8 cleaned", plain, input(config.KindLogin, request("/login", "username=a%FF%FEb", "Content-Type", form), nil, ""), "ab"},
		{"oversized is capped", plain, input(config.KindLogin, request("/login", "username="+strings.Repeat("a", 2000), "Content-Type", form), nil, ""), strings.Repeat("a", MaxValueLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.e.Extract(tt.in)
			got, ok := attrs(t, out)["auth.username"]
			if tt.want == "" {
				if ok || out.UserKey != 0 {
					t.Fatalf("auth.username = %q, UserKey %d; want none", got.Emit(), out.UserKey)
				}
				return
			}
			if got.AsString() != tt.want {
				t.Errorf("auth.username = %q, want %q", got.AsString(), tt.want)
			}
			if out.UserKey == 0 {
				t.Error("UserKey not set")
			}
		})
	}
}

func TestPrivacy(t *testing.T) {
	in := input(config.KindLogin, request("/login", "username=Alice@Example.com&password=x", "Content-Type", "application/x-www-form-urlencoded"), nil, "")
	var keys []uint64
	for _, mode := range []string{config.PrivacyHash, "", config.PrivacyPlain, config.PrivacyDrop} {
		t.Run("mode="+mode, func(t *testing.T) {
			e := mustExtractor(t, config.Security{Username: config.UsernameConfig{Privacy: mode}})
			out := e.Extract(in)
			v, ok := attrs(t, out)["auth.username"]
			switch mode {
			case config.PrivacyHash, "":
				if want := wantHash("alice@example.com"); v.AsString() != want {
					t.Errorf("hash = %q, want %q", v.AsString(), want)
				}
			case config.PrivacyPlain:
				if v.AsString() != "alice@example.com" {
					t.Errorf("plain = %q", v.AsString())
				}
			case config.PrivacyDrop:
				if ok {
					t.Errorf("drop exported %q", v.AsString())
				}
			}
			if out.UserKey == 0 {
				t.Error("UserKey not set")
			}
			keys = append(keys, out.UserKey)
		})
	}
	for _, k := range keys {
		if k != keys[0] {
			t.Errorf("UserKey differs between modes: %v", keys)
		}
	}
}

func TestNew(t *testing.T) {
	env := func(vals map[string]string) func(string) string {
		return func(k string) string { return vals[k] }
	}
	longFile := mustFile(t, "key", "  "+testKey+"\n")
	shortFile := mustFile(t, "short", "tooshort\n")
	tests := []struct {
		name    string
		cfg     config.UsernameConfig
		env     map[string]string
		wantErr string // substring; "" for success
		random  bool
	}{
		{"hash without key", config.UsernameConfig{}, nil, "needs key_file or key_env", false},
		{"hash random key", config.UsernameConfig{RandomKey: true}, nil, "", true},
		{"plain needs no key", config.UsernameConfig{Privacy: config.PrivacyPlain}, nil, "", false},
		{"drop needs no key", config.UsernameConfig{Privacy: config.PrivacyDrop}, nil, "", false},
		{"key env", config.UsernameConfig{KeyEnv: "K"}, map[string]string{"K": testKey}, "", false},
		{"key env unset", config.UsernameConfig{KeyEnv: "K"}, nil, "K is empty or unset", false},
		{"key env short", config.UsernameConfig{KeyEnv: "K"}, map[string]string{"K": "short-secret"}, "need at least 16", false},
		{"key file", config.UsernameConfig{KeyFile: longFile}, nil, "", false},
		{"key file short", config.UsernameConfig{KeyFile: shortFile}, nil, "need at least 16", false},
		{"key file missing", config.UsernameConfig{KeyFile: "/nonexistent/key"}, nil, "no such file", false},
		{"both sources", config.UsernameConfig{KeyFile: longFile, KeyEnv: "K"}, nil, "only one", false},
		{"bad privacy", config.UsernameConfig{Privacy: "rot13", RandomKey: true}, nil, "unknown privacy", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewWithOptions(config.Security{Username: tt.cfg}, Options{Env: env(tt.env)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "short-secret") || strings.Contains(err.Error(), "tooshort") {
					t.Fatalf("error leaks the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.RandomKeyInUse() != tt.random {
				t.Errorf("RandomKeyInUse = %v, want %v", e.RandomKeyInUse(), tt.random)
			}
		})
	}

	// The key file's contents are trimmed: same hash as the env key.
	e := mustExtractor(t, config.Security{Username: config.UsernameConfig{KeyFile: longFile}})
	if got, _ := e.usernameValue("x", nil); got != wantHash("x") {
		t.Errorf("key file hash %q, want %q", got, wantHash("x"))
	}

	// A failing random source is an error, not a zero key.
	_, err := NewWithOptions(config.Security{Username: config.UsernameConfig{RandomKey: true}}, Options{Rand: bytes.NewReader(nil)})
	if err == nil {
		t.Errorf("short random source: err = %v", err)
	}

	bad := []config.Security{
		{TrustedProxies: []string{"10.0.0.0/33"}},
		{TrustedProxies: []string{"proxy.local"}},
		{JWT: config.JWTConfig{JWKSFile: "/nonexistent/jwks.json"}},
		{JWT: config.JWTConfig{JWKSFile: mustFile(t, "jwks.json", `{"keys":[]}`)}},
		{JWT: config.JWTConfig{JWKSFile: mustFile(t, "bad.json", `{"keys":[{"kty":"oct"`)}},
	}
	for i, cfg := range bad {
		cfg.Username.RandomKey = true
		if _, err := New(cfg); err == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
}
