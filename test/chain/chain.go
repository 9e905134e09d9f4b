// Package chain starts the three-layer flow of issue 12 on loopback for
// tests: PostgreSQL with the chain schema (a users table with password
// hashes; documents under row-level security; an app role that lacks a
// privilege), an uninstrumented login/authorize backend in Python
// (ThreadingHTTPServer + psycopg2), in Java (com.sun.net.httpserver +
// JDBC) and in Go (net/http + database/sql over pgx), and nginx in front of each (one location it denies itself). Every
// service runs as its own account when the test is root, on a free port,
// and is stopped, with its temp dir removed, at cleanup even on failure.
// Routes and answers: test/servers/chain/README.md. Only tests import it.
package chain

import (
	"testing"
	"time"
)

// Options shape an Env.
type Options struct {
	// Langs are the backends to start (default Python, Java and Go).
	Langs []string
	// ForwardTraceparent: the gateways pass the caller's traceparent on.
	ForwardTraceparent bool
	// Backend options shared by every backend (Lang and DBAddr are set
	// per backend).
	Backend BackendOptions
	// Postgres options.
	Postgres PostgresOptions
}

// Env is the running flow: one database, and per language a backend and
// the gateway in front of it.
type Env struct {
	Postgres *Postgres
	Backends map[string]*Backend
	Gateways map[string]*Gateway
}

// Start brings the flow up and registers its teardown.
func Start(tb testing.TB, opts Options) *Env {
	tb.Helper()
	langs := opts.Langs
	if len(langs) == 0 {
		langs = []string{Python, Java, Go}
	}
	env := &Env{Postgres: MustStartPostgres(tb, opts.Postgres), Backends: map[string]*Backend{}, Gateways: map[string]*Gateway{}}
	for _, lang := range langs {
		bo := opts.Backend
		bo.Lang = lang
		b := MustStartBackend(tb, env.Postgres, bo)
		env.Backends[lang] = b
		env.Gateways[lang] = MustStartGateway(tb, GatewayOptions{Upstream: b.Addr, ForwardTraceparent: opts.ForwardTraceparent})
	}
	return env
}

// Application is the application_name each backend's database sessions
// carry (the PostgreSQL log's application_name).
func Application(lang string) string { return "chain-" + lang }

// settle is how long the log collector may take to write an entry.
const settle = 5 * time.Second
