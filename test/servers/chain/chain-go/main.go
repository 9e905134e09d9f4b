// Command chain-go is the Go backend of the three-layer test flow
// (test/servers/chain/README.md): net/http (a goroutine per connection)
// and database/sql over the pure-Go driver github.com/jackc/pgx/v5/stdlib.
// It answers as the Python and Java backends do, with two differences
// that the tests are about: the document read runs on a goroutine the
// handler spawns and waits for (as handlers that fan work out do), the
// other routes' queries on the handler's own goroutine; and a failed login
// spawns a detached goroutine that counts the user's failures once the
// next request has arrived (after the failed login was answered), a query
// that belongs to no request.
//
// Configuration comes from the environment, as for the other backends:
// PORT, HOST, DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_POOL,
// POLL_MS (THREADS is ignored). "listening <port>" goes to stdout once it
// accepts; one line per request goes to stderr.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

var jwtKey = []byte("authprobe-test-key")

// dbRoles: the database role of a request's document work, by token role.
var dbRoles = map[string]string{"user": "app_reader", "guest": "app_guest"}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	return n
}

// openDB opens a pool of at most size connections (0: one per use). The
// driver runs every query as one extended-protocol round trip on the
// unnamed statement (exec mode), so that what crosses the wire does not
// depend on which pooled connection ran the statement before.
func openDB(size int) (*sql.DB, error) {
	dsn := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(env("DB_USER", "app"), os.Getenv("DB_PASSWORD")),
		Host:   net.JoinHostPort(env("DB_HOST", "127.0.0.1"), env("DB_PORT", "5432")),
		Path:   "/" + env("DB_NAME", "authdb"),
		RawQuery: url.Values{
			"sslmode": {"disable"}, "application_name": {"chain-go"}, "connect_timeout": {"5"},
		}.Encode(),
	}
	cfg, err := pgx.ParseConfig(dsn.String())
	if err != nil {
		return nil, fmt.Errorf("database config: %w", err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	db := stdlib.OpenDB(*cfg)
	if size > 0 {
		db.SetMaxOpenConns(size)
		db.SetMaxIdleConns(size)
	} else {
		db.SetMaxIdleConns(-1)
	}
	return db, nil
}

type server struct {
	db *sql.DB
	// background is the detached goroutines' pool of one connection, so
	// that they never take a request's pooled connection.
	background *sql.DB
	// arrived is closed, and replaced, when a request arrives.
	mu      sync.Mutex
	arrived chan struct{}
}

// next is closed when the next request arrives.
func (s *server) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrived
}

func (s *server) arrive(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		close(s.arrived)
		s.arrived = make(chan struct{})
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func main() {
	db, err := openDB(envInt("DB_POOL", 4))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ms := envInt("POLL_MS", 1000); ms > 0 {
		pollDB, err := openDB(1)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go poll(pollDB, time.Duration(ms)*time.Millisecond)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(env("HOST", "127.0.0.1"), env("PORT", "0")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	background, err := openDB(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := &server{db: db, background: background, arrived: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, r, 200, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /api/documents/{id}", s.document)
	mux.HandleFunc("POST /api/documents/{id}/owner", s.setOwner)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, r, 404, map[string]any{"error": "not_found"})
	})
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: s.arrive(mux), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// poll queries outside any request, on a connection of its own.
func poll(db *sql.DB, every time.Duration) {
	for {
		time.Sleep(every)
		var n int
		_ = db.QueryRow("SELECT count(*) AS active_users FROM users").Scan(&n)
	}
}

func reply(w http.ResponseWriter, r *http.Request, status int, body any) {
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	tp := r.Header.Get("traceparent")
	if tp == "" {
		tp = "-"
	}
	fmt.Fprintf(os.Stderr, "request %s %s %d traceparent=%s\n", r.Method, r.URL.EscapedPath(), status, tp)
}

// stats queries the database outside any auth route.
func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	var n int
	if err := s.db.QueryRowContext(r.Context(), "SELECT count(*) AS user_count FROM users").Scan(&n); err != nil {
		reply(w, r, 503, map[string]any{"error": "db_error"})
		return
	}
	reply(w, r, 200, map[string]any{"users": n})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var user, password string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var f struct{ Username, Password *string }
		if json.NewDecoder(r.Body).Decode(&f) != nil || f.Username == nil || f.Password == nil {
			reply(w, r, 400, map[string]any{"error": "bad_request"})
			return
		}
		user, password = *f.Username, *f.Password
	} else {
		if r.ParseForm() != nil || !r.PostForm.Has("username") || !r.PostForm.Has("password") {
			reply(w, r, 400, map[string]any{"error": "bad_request"})
			return
		}
		user, password = r.PostForm.Get("username"), r.PostForm.Get("password")
	}
	var (
		id   int
		role string
	)
	err := s.db.QueryRowContext(r.Context(),
		"SELECT id, role FROM users WHERE username = $1 AND password_hash = crypt($2, password_hash)",
		user, password).Scan(&id, &role)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		go s.countFailures(s.next(), user)
		reply(w, r, 401, map[string]any{"error": "invalid_credentials"})
	case err != nil:
		reply(w, r, 503, map[string]any{"error": "db_error"})
	default:
		reply(w, r, 200, map[string]any{"token": issueToken(user, role)})
	}
}

// countFailures queries, on a goroutine a failed login spawned, once the
// next request arrived: after the login was answered.
func (s *server) countFailures(next <-chan struct{}, user string) {
	<-next
	var n int
	_ = s.background.QueryRow("SELECT count(*) AS failed_logins FROM users WHERE username = $1", user).Scan(&n)
}

// errRefused is the database refusing the caller (42501: a missing
// privilege, or a row-level security policy).
var errRefused = errors.New("refused by the database")

// asCaller runs work in one transaction as the database role of the
// caller's token role, with app.user set to its subject.
func (s *server) asCaller(ctx context.Context, c claims, work func(*sql.Tx) error) error {
	role, ok := dbRoles[c.Role]
	if !ok {
		role = "app_guest"
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = func() error {
		if _, err := tx.ExecContext(ctx, "SET LOCAL ROLE "+role); err != nil { // a fixed name from dbRoles
			return err
		}
		if _, err := tx.ExecContext(ctx, "SELECT set_config('app.user', $1, true)", c.Sub); err != nil {
			return err
		}
		return work(tx)
	}()
	if err != nil {
		_ = tx.Rollback()
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" {
			return errRefused
		}
		return err
	}
	return tx.Commit()
}

// refused answers a failed asCaller: 403 when the database refused.
func refused(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errRefused) {
		reply(w, r, 403, map[string]any{"error": "forbidden"})
		return
	}
	reply(w, r, 503, map[string]any{"error": "db_error"})
}

// document reads on a goroutine it spawns and waits for.
func (s *server) document(w http.ResponseWriter, r *http.Request) {
	c, ok := bearer(r)
	if !ok {
		reply(w, r, 401, map[string]any{"error": "unauthorized"})
		return
	}
	type result struct {
		title string
		found bool
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		res.err = s.asCaller(r.Context(), c, func(tx *sql.Tx) error {
			var id int
			err := tx.QueryRowContext(r.Context(), "SELECT id, title FROM documents WHERE id = $1", r.PathValue("id")).Scan(&id, &res.title)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			res.found = err == nil
			return err
		})
		done <- res
	}()
	res := <-done
	switch {
	case res.err != nil:
		refused(w, r, res.err)
	case !res.found:
		// Row-level security hid it (or it does not exist).
		reply(w, r, 403, map[string]any{"error": "forbidden"})
	default:
		reply(w, r, 200, map[string]any{"id": r.PathValue("id"), "title": res.title})
	}
}

// setOwner updates on the handler's goroutine: row-level security refuses
// (42501) a new owner that is not the caller.
func (s *server) setOwner(w http.ResponseWriter, r *http.Request) {
	c, ok := bearer(r)
	if !ok {
		reply(w, r, 401, map[string]any{"error": "unauthorized"})
		return
	}
	if r.ParseForm() != nil || !r.PostForm.Has("owner") {
		reply(w, r, 400, map[string]any{"error": "bad_request"})
		return
	}
	var n int64
	err := s.asCaller(r.Context(), c, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(r.Context(), "UPDATE documents SET owner = $1 WHERE id = $2", r.PostForm.Get("owner"), r.PathValue("id"))
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	switch {
	case err != nil:
		refused(w, r, err)
	case n == 0:
		reply(w, r, 403, map[string]any{"error": "forbidden"})
	default:
		reply(w, r, 200, map[string]any{"id": r.PathValue("id")})
	}
}

type claims struct {
	Sub  string `json:"sub"`
	Role string `json:"role"`
	Exp  int64  `json:"exp"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sign(input string) []byte {
	m := hmac.New(sha256.New, jwtKey)
	m.Write([]byte(input))
	return m.Sum(nil)
}

func issueToken(sub, role string) string {
	now := time.Now().Unix()
	header := b64([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, _ := json.Marshal(map[string]any{"sub": sub, "role": role, "roles": []string{role}, "iat": now, "exp": now + 3600})
	p := b64(payload)
	return header + "." + p + "." + b64(sign(header+"."+p))
}

// bearer: the claims of the request's valid, unexpired HS256 token.
func bearer(r *http.Request) (claims, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return claims{}, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, sign(parts[0]+"."+parts[1])) {
		return claims{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c claims
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Sub == "" || c.Exp < time.Now().Unix() {
		return claims{}, false
	}
	return c, true
}
