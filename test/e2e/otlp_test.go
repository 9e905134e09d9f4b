package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/otlpsink"
	"github.com/authprobe/authprobe/test/testutil"
)

// otlpArgs make the agent export to the sink instead of stdout (the last
// --exporter flag wins over the harness's stdout).
func otlpArgs(sink *otlpsink.Sink) []string {
	return []string{"--exporter", "otlp", "--otlp-endpoint", sink.Addr()}
}

// fromOTLP turns a received span into the harness's Span, so checkSpan and
// checkExactAttrs judge OTLP spans exactly as they judge stdout ones.
// Attribute values keep their OTLP types (int64, bool, string, []any).
func fromOTLP(s otlpsink.Span) Span {
	sp := s.Span
	status := strings.TrimPrefix(sp.GetStatus().GetCode().String(), "STATUS_CODE_")
	out := Span{
		Name:              sp.GetName(),
		TraceID:           hex.EncodeToString(sp.GetTraceId()),
		SpanID:            hex.EncodeToString(sp.GetSpanId()),
		ParentSpanID:      hex.EncodeToString(sp.GetParentSpanId()),
		Kind:              flexString(sp.GetKind().String()),
		StartTimeUnixNano: flexInt(sp.GetStartTimeUnixNano()),
		EndTimeUnixNano:   flexInt(sp.GetEndTimeUnixNano()),
		StatusCode:        status,
		Attributes:        s.Attrs(),
		Resource:          s.ResourceAttrs(),
	}
	raw, _ := json.Marshal(map[string]any{
		"name": out.Name, "trace_id": out.TraceID, "span_id": out.SpanID, "parent_span_id": out.ParentSpanID,
		"kind": out.Kind, "status": status, "attributes": out.Attributes, "resource": out.Resource,
	})
	out.Raw = string(raw)
	return out
}

// expectSinkSpans waits for n spans at the sink, gives stragglers
// spanSettle, and asserts there are exactly n.
func expectSinkSpans(t *testing.T, sink *otlpsink.Sink, n int) []Span {
	t.Helper()
	sink.WaitForSpans(t, n, spanWait)
	time.Sleep(spanSettle)
	var spans []Span
	for _, s := range sink.Spans() {
		spans = append(spans, fromOTLP(s))
	}
	if len(spans) != n {
		t.Fatalf("want exactly %d spans at the sink, got %d:\n%s", n, len(spans), describeSpans(spans))
	}
	return spans
}

// TestOTLPExporter: the logins of TestLoginSpans, exported over OTLP/gRPC
// to a real receiver, arrive with the same names, trace context,
// attributes (typed) and resource, and nothing is printed on stdout.
func TestOTLPExporter(t *testing.T) {
	const serviceName = "login-service-e2e"
	forEachLang(t, func(t *testing.T, lang string) {
		srv := mustStartServer(t, lang)
		sink := otlpsink.Start(t)
		ag := mustStartAgent(t, AgentOptions{
			PIDs:  []int{srv.PID},
			Extra: map[string]any{"service_name": serviceName},
			Args:  otlpArgs(sink),
		})

		cases := []secCase{
			{name: "form ok traced", req: formLogin("alice", "correct-horse"), status: 200, span: "auth.login", result: "success", parent: true,
				attrs: map[string]any{"auth.method": "password", "auth.username": "alice", "auth.session.issued": true}},
			{name: "json bad password", req: jsonLogin("alice", "not-her-password"), status: 401, span: "auth.login", result: "failure", reason: "invalid_credentials",
				attrs: map[string]any{"auth.method": "password", "auth.username": "alice"}},
			{name: "form locked traced", req: formLogin("locked-user", "whatever"), status: 423, span: "auth.login", result: "failure", reason: "locked", parent: true,
				attrs: map[string]any{"auth.method": "password", "auth.username": "locked-user"}},
			{name: "json ok", req: jsonLogin("bob", "hunter2"), status: 200, span: "auth.login", result: "success",
				attrs: map[string]any{"auth.method": "password", "auth.username": "bob", "auth.session.issued": true}},
			{name: "form bad password traced", req: formLogin("bob", "not-his-password"), status: 401, span: "auth.login", result: "failure", reason: "invalid_credentials", parent: true,
				attrs: map[string]any{"auth.method": "password", "auth.username": "bob"}},
			{name: "json rate limited", req: jsonLogin("ratelimited", "whatever"), status: 429, span: "auth.login", result: "failure", reason: "rate_limited",
				attrs: map[string]any{"auth.method": "password", "auth.username": "ratelimited"}},
		}
		var all []sentCase
		for i, c := range cases {
			src := fmt.Sprintf("127.0.3.%d", 10+i)
			w := spanWant{
				name: c.span, method: c.req.Method, path: c.req.Path, status: c.status, result: c.result,
				reason: c.reason, client: src, username: c.attrs["auth.username"].(string), authMethod: "password",
			}
			req := c.req
			if c.parent {
				tp := newTraceParent(t)
				w.parent = &tp
				req = req.With("traceparent", tp.String())
			}
			conn := rawConn(t, src, srv.Addr)
			conn.Send(t, req)
			mustStatus(t, c.name, conn.ReadResponses(t, 1)[0], c.status)
			w.peerPort = int(conn.LocalAddr().Port())
			all = append(all, sentCase{c: c, src: src, want: w})
		}

		spans := expectSinkSpans(t, sink, len(cases))
		checkSentSpans(t, srv, spans, all, true, func(s sentCase, sp Span) {
			if sp.Kind != "SPAN_KIND_SERVER" {
				t.Errorf("%s: kind %s, want SPAN_KIND_SERVER", s.c.name, sp.Kind)
			}

			// OTLP carries types: numbers are ints, flags are bools.
			for attr, want := range map[string]any{
				"http.response.status_code": int64(s.c.status),
				"network.peer.port":         int64(s.want.peerPort),
				"server.port":               int64(srv.Port),
				"http.request.method":       "POST",
				"url.path":                  "/login",
				"http.route":                "/login",
				"net.peer.ip":               s.src,
			} {
				if got := sp.Attributes[attr]; got != want {
					t.Errorf("%s: %s = %#v (%T), want %#v (%T)", s.c.name, attr, got, got, want, want)
				}
			}

			res := sp.Resource
			if got := res["service.name"]; got != serviceName {
				t.Errorf("%s: resource service.name %#v, want %q", s.c.name, got, serviceName)
			}
			if got := res["process.pid"]; got != int64(srv.PID) {
				t.Errorf("%s: resource process.pid %#v (%T), want int64 %d", s.c.name, got, got, srv.PID)
			}
			for _, attr := range []string{"process.executable.name", "host.name"} {
				if v, _ := res[attr].(string); v == "" {
					t.Errorf("%s: resource %s %#v, want a name", s.c.name, attr, res[attr])
				}
			}
			if want := serverExecutable(lang); want != "" && !strings.HasPrefix(valueText(res["process.executable.name"]), want) {
				t.Errorf("%s: resource process.executable.name %q, want %s*", s.c.name, valueText(res["process.executable.name"]), want)
			}
		})

		ag.Stop(t)
		if out := ag.Stdout(); out != "" {
			t.Errorf("agent printed on stdout with the OTLP exporter:\n%s", testutil.Tail(out, 2000))
		}
		if n := len(sink.Spans()); n != len(cases) {
			t.Errorf("%d spans at the sink after the agent stopped, want %d", n, len(cases))
		}
		if strings.Contains(ag.Stderr(), "span export failed") {
			t.Errorf("agent logged failed span exports:\n%s", testutil.Tail(ag.Stderr(), 4000))
		}
	})
}

// serverExecutable is how the server's executable name starts.
func serverExecutable(lang string) string {
	switch lang {
	case "python":
		return "python3"
	case "node":
		return "node"
	case "java":
		return "java"
	case "go":
		return "goserver"
	}
	return ""
}
