// Command goserver is an uninstrumented login service for authprobe's
// end-to-end tests, built on net/http alone.
//
// Usage: goserver [PORT]  (or env PORT; HOST defaults to 127.0.0.1). Port 0
// picks a free port; the real one is printed as "listening <port>" on stdout
// once the socket accepts connections. Routes and answers are the same in
// every language under test/servers/; see test/servers/README.md.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

type user struct{ password, role string }

// lookupUser is the user table; a switch keeps it free of package state.
func lookupUser(name string) (user, bool) {
	switch name {
	case "alice":
		return user{"correct-horse", "user"}, true
	case "bob":
		return user{"hunter2", "guest"}, true
	}
	return user{}, false
}

const (
	clientID     = "svc"
	clientSecret = "s3cret"
	authCode     = "good-code"
	refreshToken = "good-refresh"
	// Tokens are signed so they look real; no route verifies them.
	jwtKey = "authprobe-test-key"
)

func main() {
	port := os.Getenv("PORT")
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	if port == "" {
		port = "0"
	}
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           newHandler(),
		ReadHeaderTimeout: 2 * time.Minute,
		// Long idle timeout: tests open connections before the agent
		// starts and use them seconds later.
		IdleTimeout: 2 * time.Minute,
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	// TLS_CERT and TLS_KEY (PEM files): HTTPS through crypto/tls, with
	// HTTP/2 offered by ALPN as net/http does by default.
	if cert, key := os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"); cert != "" && key != "" {
		err = srv.ServeTLS(ln, cert, key)
	} else {
		err = srv.Serve(ln)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// newHandler routes with ServeMux method patterns, as Go services do
// since Go 1.22: its matching (segments unescaped, unclean paths
// redirected, case-sensitive) is one of the routing rules the evasion tests
// compare. A path without its method's pattern gets the JSON 405.
func newHandler() http.Handler {
	mux := http.NewServeMux()
	notAllowed := func(w http.ResponseWriter, _ *http.Request) {
		send(w, http.StatusMethodNotAllowed, map[string]any{"error": "method_not_allowed"}, nil)
	}
	mux.HandleFunc("POST /login", login)
	mux.HandleFunc("/login", notAllowed)
	mux.HandleFunc("/api/", api)
	mux.HandleFunc("GET /basic", basic)
	mux.HandleFunc("/basic", notAllowed)
	mux.HandleFunc("POST /oauth/token", token)
	mux.HandleFunc("/oauth/token", notAllowed)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, _ *http.Request) {
		send(w, http.StatusNoContent, nil, map[string]string{"Set-Cookie": "session=; Max-Age=0; Path=/"})
	})
	mux.HandleFunc("/logout", notAllowed)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		send(w, http.StatusOK, map[string]any{"status": "ok"}, nil)
	})
	public := func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		send(w, http.StatusOK, map[string]any{"path": r.URL.Path, "client": host}, nil)
	}
	mux.HandleFunc("/public", public)
	mux.HandleFunc("/public/", public)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		send(w, http.StatusNotFound, map[string]any{"error": "not_found"}, nil)
	})
	// Read the whole body first so keep-alive and pipelining see the next
	// request at the right byte whatever the route does.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			send(w, http.StatusBadRequest, map[string]any{"error": "bad_request"}, nil)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		mux.ServeHTTP(w, r)
	})
}

func send(w http.ResponseWriter, status int, obj any, headers map[string]string) {
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	b, _ := json.Marshal(obj)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// fields returns the body's string fields; ok is false for a malformed JSON
// body.
func fields(r *http.Request, body []byte) (map[string]string, bool) {
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ctype == "application/json" {
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
			return nil, false
		}
		out := map[string]string{}
		for k, v := range obj {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
		return out, true
	}
	return formFields(body), true
}

func formFields(body []byte) map[string]string {
	vals, _ := url.ParseQuery(string(body))
	out := map[string]string{}
	for k, v := range vals {
		out[k] = v[0]
	}
	return out
}

func checkPassword(username, password string) bool {
	u, ok := lookupUser(username)
	return ok && subtle.ConstantTimeCompare([]byte(u.password), []byte(password)) == 1
}

// loginMarker marks every answer of the login handler, so a test can tell
// a request the server routed to it from one it refused or routed elsewhere.
const loginMarker = "X-Login-Handler"

func login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(loginMarker, "1")
	body, _ := io.ReadAll(r.Body) // read in full by the wrapper
	f, ok := fields(r, body)
	if !ok {
		send(w, http.StatusBadRequest, map[string]any{"error": "bad_request"}, nil)
		return
	}
	username, password := f["username"], f["password"]
	switch {
	case username == "locked-user":
		send(w, http.StatusLocked, map[string]any{"error": "account_locked"}, nil)
	case username == "ratelimited":
		send(w, http.StatusTooManyRequests, map[string]any{"error": "rate_limited"}, map[string]string{"Retry-After": "30"})
	case !checkPassword(username, password):
		send(w, http.StatusUnauthorized, map[string]any{"error": "invalid_credentials"}, nil)
	default:
		send(w, http.StatusOK, map[string]any{"token": makeJWT(username, roleOf(username))},
			map[string]string{"Set-Cookie": "session=" + randomHex(16) + "; Path=/; HttpOnly"})
	}
}

func api(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		send(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"}, map[string]string{"WWW-Authenticate": "Bearer"})
		return
	}
	payload, ok := jwtPayload(strings.TrimSpace(tok))
	if !ok {
		send(w, http.StatusUnauthorized, map[string]any{"error": "invalid_token"}, map[string]string{"WWW-Authenticate": "Bearer"})
		return
	}
	if strings.Contains(path, "admin") || hasRole(payload, "guest") {
		send(w, http.StatusForbidden, map[string]any{"error": "forbidden"}, nil)
		return
	}
	send(w, http.StatusOK, map[string]any{"ok": true, "path": path}, nil)
}

func basic(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); ok && u == "alice" && checkPassword(u, p) {
		send(w, http.StatusOK, map[string]any{"ok": true}, nil)
		return
	}
	send(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"}, map[string]string{"WWW-Authenticate": `Basic realm="test"`})
}

func token(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body) // read in full by the wrapper
	f := formFields(body)
	var ok bool
	var sub string
	switch f["grant_type"] {
	case "password":
		sub = f["username"]
		ok = checkPassword(sub, f["password"])
	case "client_credentials":
		id, secret := f["client_id"], f["client_secret"]
		if u, p, basic := r.BasicAuth(); basic {
			id, secret = u, p
		}
		if id != clientID || subtle.ConstantTimeCompare([]byte(secret), []byte(clientSecret)) != 1 {
			send(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"}, nil)
			return
		}
		ok, sub = true, id
	case "authorization_code":
		ok, sub = f["code"] == authCode, "alice"
	case "refresh_token":
		ok, sub = f["refresh_token"] == refreshToken, "alice"
	default:
		send(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"}, nil)
		return
	}
	if !ok {
		send(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant"}, nil)
		return
	}
	role := "service"
	if u, found := lookupUser(sub); found {
		role = u.role
	}
	send(w, http.StatusOK, map[string]any{"access_token": makeJWT(sub, role), "token_type": "Bearer", "expires_in": 3600},
		map[string]string{"Cache-Control": "no-store"})
}

func makeJWT(sub, role string) string {
	now := time.Now().Unix()
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	payload, _ := json.Marshal(map[string]any{"sub": sub, "role": role, "roles": []string{role}, "iat": now, "exp": now + 3600})
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(jwtKey))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// jwtPayload decodes a JWT payload without verifying it.
func jwtPayload(tok string) (map[string]any, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, false
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil || p == nil {
		return nil, false
	}
	return p, true
}

func hasRole(p map[string]any, role string) bool {
	if p["role"] == role {
		return true
	}
	roles, _ := p["roles"].([]any)
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

func roleOf(name string) string {
	u, _ := lookupUser(name)
	return u.role
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
