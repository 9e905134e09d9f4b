package spanbuilder

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// wireExchange is an exchange whose strings and bodies are cut from one
// buffer, as the decoder's are, so that a test can wipe it as the
// decoder does when the exchange is released.
type wireExchange struct {
	ex  *decoder.Exchange
	buf []byte
}

func newWireExchange(method, target string, reqHdr []string, body string, code int, respHdr []string, respBody string) *wireExchange {
	w := &wireExchange{buf: make([]byte, 0, 4096)}
	cut := func(s string) string {
		if s == "" {
			return ""
		}
		i := len(w.buf)
		w.buf = append(w.buf, s...)
		return unsafe.String(&w.buf[i], len(s))
	}
	header := func(kv []string) decoder.Header {
		var h decoder.Header
		for i := 0; i+1 < len(kv); i += 2 {
			h = append(h, decoder.HeaderField{Name: cut(kv[i]), Value: cut(kv[i+1])})
		}
		return h
	}
	bytesOf := func(s string) []byte { return []byte(cut(s)) }
	ex := exchange(cut(method), cut(target), header(reqHdr), "", code, header(respHdr), "")
	ex.Request.Body = bytesOf(body)
	if ex.Response != nil {
		ex.Response.Body = bytesOf(respBody)
	}
	w.ex = ex
	return w
}

func (w *wireExchange) wipe() { clear(w.buf[:cap(w.buf)]) }

// releaseExchanges are exchanges whose spans carry strings from every
// place a span's strings come from: the head, the bodies' fields, the
// username's hash, OAuth2 error codes (also a status message's reason),
// a traceparent with a tracestate.
func releaseExchanges() []*wireExchange {
	form := []string{"Host", "shop", "Content-Type", "application/x-www-form-urlencoded", "User-Agent", "curl/8.5"}
	json := []string{"Content-Type", "application/json"}
	return []*wireExchange{
		newWireExchange("POST", "/login", append(form, "traceparent", validTP, "tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
			"username=alice%40example.com&password=hunter2", 401, json, `{"error":"invalid_credentials"}`),
		newWireExchange("POST", "/login", form, "username=bob&password=correct-horse", 200, json, `{"token":"abc"}`),
		newWireExchange("POST", "/login", json, `{"username":"carol","password":"x"}`, 200, json, `{"error":"mfa"}`),
		newWireExchange("POST", "/oauth/token", form, "grant_type=password&username=dave&client_id=web-app&password=p",
			400, json, `{"error":"invalid_grant","error_description":"bad"}`),
		newWireExchange("POST", "/oauth/token", form, "grant_type=client_credentials&client_id=cli",
			400, json, `{"error":"invalid_client"}`),
		newWireExchange("GET", "/api/orders/7", []string{"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlcmluIn0.sig",
			"X-Forwarded-For", "203.0.113.9, 10.1.1.1"}, "", 403, nil, ""),
		newWireExchange("POST", "/login?username=a&username=b", form, "username=frank", 401, nil, ""),
	}
}

// spanDump is everything a span says, as an exporter would read it.
func spanDump(s Span) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s kind=%v parent=%s/%s/%q start=%v end=%v status=%v %q process=%+v route=%s result=%s reason=%q subnet=%q user=%x amb=%q layer=%q",
		s.Name, s.Kind, s.Parent.TraceID(), s.Parent.SpanID(), s.Parent.TraceState().String(), s.Start, s.End,
		s.StatusCode, s.StatusMessage, s.Process, s.RouteKind, s.Result, s.FailureReason, s.ClientSubnet, s.UserKey,
		s.Ambiguous, s.Layer)
	for _, kv := range s.Attributes {
		fmt.Fprintf(&b, " %s=%q", kv.Key, kv.Value.Emit())
	}
	return b.String()
}

// TestReleaseReuses builds the same exchanges, several times over, with a
// Builder whose spans are never given back and with one whose spans and
// exchanges are given back and wiped after every span, as the pipeline
// does: every span must read the same. Whatever kept a string of a
// released span or exchange (a cache key, a trace state) shows as a
// difference in a later span.
func TestReleaseReuses(t *testing.T) {
	for _, privacy := range []string{config.PrivacyPlain, config.PrivacyHash} {
		t.Run(privacy, func(t *testing.T) {
			edit := func(c *Config) {
				// One key for both builders: UserKey is keyed in every mode.
				c.Security.Username = config.UsernameConfig{Privacy: privacy, KeyEnv: "K"}
				c.SecAttr.Env = func(string) string { return testKey }
			}
			kept, released := mustBuilder(t, edit), mustBuilder(t, edit)
			reused := 0
			for round := range 3 {
				for i, w := range releaseExchanges() {
					want, ok := kept.Build(newWireExchangeCopy(w).ex, Process{PID: 1, Exe: "/bin/shop"})
					if !ok {
						t.Fatalf("exchange %d not built", i)
					}
					s, ok := released.Build(w.ex, Process{PID: 1, Exe: "/bin/shop"})
					if !ok {
						t.Fatalf("exchange %d not built", i)
					}
					if s.mem.gen > 0 {
						reused++
					}
					if got, want := spanDump(s), spanDump(want); got != want {
						t.Errorf("round %d exchange %d differs when spans are released:\n kept:     %s\n released: %s", round, i, want, got)
					}
					released.Release(&s)
					w.wipe()
				}
			}
			if reused == 0 {
				t.Error("no span memory was reused")
			}
		})
	}
}

const testKey = "0123456789abcdef0123456789abcdef"

// hashedUsernames sets privacy hash with a fixed key.
func hashedUsernames(c *Config) {
	c.Security.Username = config.UsernameConfig{Privacy: config.PrivacyHash, KeyEnv: "K"}
	c.SecAttr.Env = func(string) string { return testKey }
}

// newWireExchangeCopy is w with a buffer of its own, never wiped.
func newWireExchangeCopy(w *wireExchange) *wireExchange {
	r := w.ex.Request
	h := func(hd decoder.Header) []string {
		var kv []string
		for _, f := range hd {
			kv = append(kv, f.Name, f.Value)
		}
		return kv
	}
	code, respHdr, respBody := 0, []string(nil), ""
	if w.ex.Response != nil {
		code, respHdr, respBody = w.ex.Response.StatusCode, h(w.ex.Response.Header), string(w.ex.Response.Body)
	}
	return newWireExchange(r.Method, r.Target, h(r.Header), string(r.Body), code, respHdr, respBody)
}

// TestReleaseStaleCopy: giving back a copy of a span that was given back
// already does nothing, even once another span uses that memory.
func TestReleaseStaleCopy(t *testing.T) {
	b := mustBuilder(t, hashedUsernames) // the hash lives in the span's memory
	ws := releaseExchanges()
	s1, _ := b.Build(ws[0].ex, Process{})
	stale := s1
	b.Release(&s1)
	s2, _ := b.Build(ws[1].ex, Process{})
	want := spanDump(s2)
	b.Release(&stale) // must not give s2's memory back
	s3, _ := b.Build(ws[3].ex, Process{})
	if got := spanDump(s2); got != want {
		t.Errorf("a stale copy's Release freed a live span's memory:\n before: %s\n after:  %s", want, got)
	}
	b.Release(&s3)
	b.Release(&s2)
}

// TestTraceStateOutlivesHeader: the caller's trace state is kept by the
// Chain for the request's calls, after its exchange's memory was reused.
func TestTraceStateOutlivesHeader(t *testing.T) {
	buf := []byte("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	h := hdr("traceparent", validTP, "tracestate", unsafe.String(&buf[0], len(buf)))
	tc := extractTraceContext(h)
	clear(buf)
	var want trace.TraceState
	want, _ = want.Insert("congo", "t61rcWkgMzE")
	want, _ = want.Insert("rojo", "00f067aa0ba902b7")
	if got := tc.parent.TraceState().String(); got != want.String() {
		t.Errorf("trace state %q after the header's memory was wiped, want %q", got, want.String())
	}
}
