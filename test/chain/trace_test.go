package chain

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// newTraceparent is a caller's traceparent of a trace of its own, and
// the trace and span ids in it.
func newTraceparent() (tp, trace, span string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	trace, span = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + trace + "-" + span + "-01", trace, span
}

// tracedCall is one request sent with a traceparent of its own.
type tracedCall struct {
	call
	trace, parent string
}

func doTraced(tb testing.TB, client *http.Client, base string, c call) tracedCall {
	tb.Helper()
	tp, trace, span := newTraceparent()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		tb.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("traceparent", tp)
	resp, err := client.Do(req)
	if err != nil {
		tb.Errorf("%s: %v", c.name, err)
		return tracedCall{call: c, trace: trace, parent: span}
	}
	resp.Body.Close()
	if resp.StatusCode != c.want {
		tb.Errorf("%s: %s %s = %d, want %d", c.name, c.method, c.path, resp.StatusCode, c.want)
	}
	return tracedCall{call: c, trace: trace, parent: span}
}

// layerOf names the process of a span as the flow knows it.
func layerOf(s Span) string {
	exe, _ := s.Resource["process.executable.name"].(string)
	switch {
	case exe == "nginx":
		return "gateway"
	case strings.HasPrefix(exe, "python"):
		return Python
	case exe == "java":
		return Java
	case exe == goBackend:
		return Go
	}
	return exe
}

// describe is one line of a trace tree: what a test can assert exactly.
func describe(s Span) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", s.Kind, layerOf(s), s.Name)
	if s.Attr("db.system.name") != "" {
		if c := s.Attr("db.response.status_code"); c != "" {
			b.WriteString(" sqlstate=" + c)
		}
		return b.String()
	}
	if c := s.Attr("http.response.status_code"); c != "" {
		b.WriteString(" " + c)
	}
	if s.Kind == "CLIENT" {
		u := s.Attr("url.full")
		if i := strings.Index(u, "://"); i >= 0 {
			if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
				u = u[i+3+j:]
			}
		}
		b.WriteString(" " + u)
	}
	if l := s.Attr("auth.decision.layer"); l != "" {
		b.WriteString(" layer=" + l)
		if c := s.Attr("auth.decision.sqlstate"); c != "" {
			b.WriteString("/" + c)
		}
		if c := s.Attr("auth.decision.upstream.status_code"); c != "" {
			b.WriteString("/" + c)
		}
	}
	return b.String()
}

// tree renders the spans of one trace, children under their parent in
// start order; a root is a span whose parent is not in the trace (it
// names its parent's id when that is the caller's, want).
func tree(spans []Span, trace, callerSpan string) string {
	var in []Span
	ids := map[string]bool{}
	for _, s := range spans {
		if s.TraceID == trace {
			in = append(in, s)
			ids[s.SpanID] = true
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Start < in[j].Start })
	var b strings.Builder
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		for _, s := range in {
			if s.Parent == parent {
				b.WriteString(strings.Repeat("  ", depth) + describe(s) + "\n")
				walk(s.SpanID, depth+1)
			}
		}
	}
	for _, s := range in {
		if !ids[s.Parent] {
			root := "root"
			if s.Parent == callerSpan {
				root = "caller"
			}
			b.WriteString(root + ": " + describe(s) + "\n")
			walk(s.SpanID, 1)
		}
	}
	return b.String()
}

// chainEnv is the flow with the agent watching it from before it
// started: every connection the services open is seen from its SYN.
type chainEnv struct {
	*Env
	agent *Agent
}

func startWatched(t *testing.T, opts Options) *chainEnv {
	t.Helper()
	pg := MustStartPostgres(t, opts.Postgres)
	langs := opts.Langs
	if len(langs) == 0 {
		langs = []string{Python, Java, Go}
	}
	var targets []AgentTarget
	backendPorts, gatewayPorts := map[string]int{}, map[string]int{}
	for _, lang := range langs {
		backendPorts[lang], gatewayPorts[lang] = FreePort(t), FreePort(t)
		targets = append(targets, AgentTarget{Port: backendPorts[lang]}, AgentTarget{Port: gatewayPorts[lang], Gateway: true})
	}
	agent := MustStartAgent(t, targets, "--go-spawns")
	env := &Env{Postgres: pg, Backends: map[string]*Backend{}, Gateways: map[string]*Gateway{}}
	for _, lang := range langs {
		bo := opts.Backend
		bo.Lang, bo.Port = lang, backendPorts[lang]
		b := MustStartBackend(t, pg, bo)
		env.Backends[lang] = b
		env.Gateways[lang] = MustStartGateway(t, GatewayOptions{Upstream: b.Addr, ForwardTraceparent: opts.ForwardTraceparent, Port: gatewayPorts[lang]})
	}
	var pids []int
	for lang, gw := range env.Gateways {
		workers := Children(t, gw.PID)
		if len(workers) == 0 {
			t.Fatalf("nginx %d has no worker", gw.PID)
		}
		pids = append(pids, env.Backends[lang].PID, gw.PID)
		pids = append(pids, workers...)
	}
	agent.WaitWatching(t, pids, 20*time.Second)
	return &chainEnv{Env: env, agent: agent}
}

// waitSpans waits until the agent printed spans for every trace, and
// a settle time after, and returns them all.
func (e *chainEnv) waitSpans(t *testing.T, calls []tracedCall, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := e.agent.Spans(t)
		have := map[string]bool{}
		for _, s := range spans {
			if s.Kind == "SERVER" && s.Parent != "" && layerOf(s) == "gateway" {
				have[s.TraceID] = true
			}
		}
		all := true
		for _, c := range calls {
			all = all && have[c.trace]
		}
		if all || time.Now().After(deadline) {
			time.Sleep(time.Second)
			return e.agent.Spans(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
