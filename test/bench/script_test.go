package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// loginCounter is a loopback server counting what the Lua scripts send.
type loginCounter struct {
	logins, other atomic.Uint64
}

func mustCountingServer(tb testing.TB) (*httptest.Server, *loginCounter) {
	tb.Helper()
	c := &loginCounter{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/login" {
			c.logins.Add(1)
			if r.FormValue("password") != "correct-horse" {
				w.WriteHeader(http.StatusUnauthorized)
			}
			return
		}
		c.other.Add(1)
	}))
	tb.Cleanup(srv.Close)
	return srv, c
}

// TestScriptCounts runs each generated script under real wrk and checks
// that the counts its done() prints are what the server received.
func TestScriptCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wrk for a second per workload")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (apt-get install wrk)")
	}
	vs, err := variants("stdout")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range vs {
		t.Run(w.key, func(t *testing.T) {
			srv, got := mustCountingServer(t)
			script := filepath.Join(t.TempDir(), w.key+".lua")
			if err := os.WriteFile(script, []byte(w.script()), 0o600); err != nil {
				t.Fatal(err)
			}
			l := wrkLoad{threads: 2, connections: 4, script: script, url: srv.URL}
			r, err := l.run(context.Background(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if (r.AuthSent == 0) != (w.every == 0) || r.Sent < r.Completed || r.P50 == 0 {
				t.Fatalf("implausible wrk result %+v", r)
			}
			// Requests in flight when wrk stopped still reach the server.
			deadline := time.Now().Add(2 * time.Second)
			for got.logins.Load()+got.other.Load() < r.Sent && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := got.logins.Load(); n != r.AuthSent {
				t.Errorf("server got %d logins, script counted %d", n, r.AuthSent)
			}
			if n := got.other.Load(); n != r.Sent-r.AuthSent {
				t.Errorf("server got %d other requests, script counted %d", n, r.Sent-r.AuthSent)
			}
			// Each thread sends one login in every w.every requests, the
			// first of each w.every: a thread's count is its requests over
			// w.every, rounded either way.
			if w.every == 0 {
				return
			}
			threads := uint64(l.threads)
			if lo, hi := r.Sent/uint64(w.every)-threads, r.Sent/uint64(w.every)+threads; r.AuthSent < lo || r.AuthSent > hi {
				t.Errorf("%d logins of %d requests, want about 1 in %d", r.AuthSent, r.Sent, w.every)
			}
		})
	}
}

// TestHeyCounts checks that hey's responses plus errors are what the
// server received: the fixed-rate run's loss check rests on it.
func TestHeyCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hey for a second")
	}
	if _, err := exec.LookPath("hey"); err != nil {
		t.Skip("hey not installed (apt-get install hey)")
	}
	srv, got := mustCountingServer(t)
	h, err := runHey(context.Background(), srv.URL+"/login", 400, 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := got.logins.Load(); n != h.Sent() || n == 0 {
		t.Errorf("server got %d logins, hey reports %d sent", n, h.Sent())
	}
	if h.Statuses["401"] != h.Sent() {
		t.Errorf("statuses %v, want only 401 (wrong password)", h.Statuses)
	}
}
