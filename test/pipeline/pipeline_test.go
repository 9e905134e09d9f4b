// Package pipeline runs the shipped collector pipeline for real: the test
// collector (test/collector) with deploy/collector/single.yaml, unmodified,
// on loopback ports, and a second collector as the trace backend writing a
// file. Tests send auth spans over OTLP/gRPC, scrape the span metrics and
// read what tail sampling kept. The agent end-to-end test extends this.
package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/test/testutil"
)

// Collector is a running collector process started by a test.
type Collector struct {
	// OTLP is the OTLP/gRPC address it receives on.
	OTLP string
	// Metrics is the span-metrics Prometheus endpoint (single.yaml only).
	Metrics string
	// Health is the health_check address (single.yaml only).
	Health string
	// AgentMetrics is where the agents' OTLP metrics are re-exposed for
	// Prometheus (single.yaml only).
	AgentMetrics string
	log          string
}

// Pipeline is the collector of single.yaml plus the file-writing backend.
type Pipeline struct {
	Collector *Collector
	// Traces is the JSON-lines file of the spans the backend received.
	Traces string
}

// mustCollectorBinary returns the test collector or skips the test.
func mustCollectorBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("AUTHPROBE_OTELCOL")
	if bin == "" {
		bin, _ = filepath.Abs("../collector/bin/otelcol-authprobe")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("test collector not built (%v): run `make -C test/collector build`", err)
	}
	return bin
}

// mustFreeAddr returns a loopback address with a port free right now.
func mustFreeAddr(tb testing.TB) string {
	tb.Helper()
	return testutil.FreeAddr(tb)
}

// mustStart runs the collector binary with a config and environment, and
// stops it (SIGTERM, then kill) at cleanup; its log is shown on failure.
func mustStart(tb testing.TB, bin, cfg string, env map[string]string) string {
	tb.Helper()
	logPath := filepath.Join(tb.TempDir(), filepath.Base(cfg)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if tb.Failed() {
			b, _ := os.ReadFile(logPath)
			tb.Logf("%s log:\n%s", cfg, b)
		}
	})
	return logPath
}

// mustWaitTCP waits until something accepts connections on addr.
func mustWaitTCP(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("nothing listens on %s after 30s", addr)
}

// MustStartPipeline starts the backend and the collector of single.yaml
// with test timings: span metrics flushed every second, tail-sampling
// decisions after one second, and no probabilistic sampling so that what
// reaches the backend is exactly what the other policies keep.
func MustStartPipeline(tb testing.TB) *Pipeline {
	tb.Helper()
	bin := mustCollectorBinary(tb)
	dir := tb.TempDir()
	p := &Pipeline{Traces: filepath.Join(dir, "traces.jsonl")}

	sink := mustFreeAddr(tb)
	mustStart(tb, bin, "testdata/sink.yaml", map[string]string{
		"SINK_OTLP_GRPC_ENDPOINT": sink,
		"SINK_FILE":               p.Traces,
	})
	mustWaitTCP(tb, sink)

	c := newCollector(tb)
	cfg, _ := filepath.Abs("../../deploy/collector/single.yaml")
	c.log = mustStart(tb, bin, cfg, collectorEnv(tb, c, map[string]string{
		"AUTHPROBE_TRACES_ENDPOINT":            sink,
		"AUTHPROBE_TAIL_DECISION_WAIT":         "1s",
		"AUTHPROBE_SPANMETRICS_FLUSH_INTERVAL": "1s",
		"AUTHPROBE_SAMPLE_PERCENT":             "0",
		"AUTHPROBE_SLOW_THRESHOLD_MS":          "1000",
	}))
	p.Collector = c
	mustWaitHealthy(tb, "http://"+c.Health+"/")
	mustWaitTCP(tb, c.OTLP)
	return p
}

func mustWaitHealthy(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("%s not healthy after 30s", url)
}

// authSpan is one span to send, shaped like the agent's.
type authSpan struct {
	name     string
	duration time.Duration
	attrs    []attribute.KeyValue
	failed   bool
}

// mustSend exports the spans over OTLP/gRPC, each in its own trace, and
// returns their trace ids in order.
func mustSend(tb testing.TB, endpoint string, spans []authSpan) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		tb.Fatalf("otlp exporter: %v", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "shop"),
		attribute.Int("process.pid", 4242),
		attribute.String("host.name", "node-a"),
	)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	tr := tp.Tracer("github.com/authprobe/authprobe")
	var ids []string
	end := time.Now()
	for _, s := range spans {
		_, span := tr.Start(context.Background(), s.name,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithTimestamp(end.Add(-s.duration)),
			trace.WithAttributes(s.attrs...))
		if s.failed {
			span.SetStatus(codes.Error, "")
		}
		span.End(trace.WithTimestamp(end))
		ids = append(ids, span.SpanContext().TraceID().String())
	}
	if err := tp.Shutdown(ctx); err != nil {
		tb.Fatalf("export spans: %v", err)
	}
	return ids
}

func login(result, reason string, d time.Duration) authSpan {
	a := []attribute.KeyValue{
		attribute.String("auth.result", result),
		attribute.String("auth.method", "password"),
		attribute.String("auth.username", "hmac:5f2c0e1a"),
		attribute.String("client.address", "127.0.0.5"),
		attribute.String("net.peer.ip", "127.0.0.5"),
		attribute.String("auth.client.subnet", "127.0.0.0/24"),
		attribute.String("http.route", "/login"),
		attribute.String("http.request.method", "POST"),
		attribute.String("auth.route.kind", "login"),
	}
	code := 200
	if reason != "" {
		a = append(a, attribute.String("auth.failure_reason", reason))
		code = 401
	}
	a = append(a, attribute.Int("http.response.status_code", code))
	return authSpan{name: "auth.login", duration: d, attrs: a, failed: result == "failure"}
}

func authorize(subject, result, reason string, extra ...attribute.KeyValue) authSpan {
	a := []attribute.KeyValue{
		attribute.String("auth.result", result),
		attribute.String("auth.method", "bearer"),
		attribute.String("auth.subject", subject),
		attribute.String("auth.roles", "user"),
		attribute.String("client.address", "127.0.0.7"),
		attribute.String("auth.client.subnet", "127.0.0.0/24"),
		attribute.String("http.route", "/api/**"),
		attribute.String("http.request.method", "GET"),
		attribute.String("auth.route.kind", "authorize"),
		attribute.Bool("auth.token.unsigned", false),
		attribute.Bool("auth.token.expired", false),
	}
	code := 200
	if reason != "" {
		a = append(a, attribute.String("auth.failure_reason", reason))
		code = 403
	}
	a = append(a, attribute.Int("http.response.status_code", code))
	a = append(a, extra...) // later values win in the SDK
	return authSpan{name: "auth.authorize", duration: 5 * time.Millisecond, attrs: a, failed: result == "failure"}
}

func TestSingleCollectorPipeline(t *testing.T) {
	p := MustStartPipeline(t)

	spans := []authSpan{
		0:  login("failure", "invalid_credentials", 20*time.Millisecond),
		1:  login("failure", "invalid_credentials", 20*time.Millisecond),
		2:  login("failure", "invalid_credentials", 20*time.Millisecond),
		3:  login("success", "", 30*time.Millisecond),
		4:  login("success", "", 30*time.Millisecond),
		5:  login("success", "", 1500*time.Millisecond), // slow
		6:  authorize("alice", "success", "", attribute.Bool("auth.token.unsigned", true)),
		7:  authorize("alice", "failure", "forbidden"),
		8:  authorize("alice", "failure", "forbidden"),
		9:  authorize("bob", "success", "", attribute.Bool("auth.token.expired", true)),
		10: authorize("bob", "success", ""),
		// Not an auth span: the filter drops it before metrics and traces.
		11: {name: "GET /index.html", duration: time.Millisecond, attrs: []attribute.KeyValue{attribute.String("auth.result", "failure")}, failed: true},
	}
	ids := mustSend(t, p.Collector.OTLP, spans)

	t.Run("span metrics", func(t *testing.T) {
		fams := mustScrapeUntil(t, "http://"+p.Collector.Metrics+"/metrics", func(f map[string]*dto.MetricFamily) bool {
			return sumCounter(f["authprobe_auth_calls_total"], nil) >= 11
		})
		calls := fams["authprobe_auth_calls_total"]
		if calls == nil {
			t.Fatalf("no authprobe_auth_calls_total; families: %v", names(fams))
		}
		// Exact counts: computed before sampling.
		for _, c := range []struct {
			labels map[string]string
			want   float64
		}{
			{map[string]string{"span_name": "auth.login", "auth_result": "failure", "auth_failure_reason": "invalid_credentials",
				"auth_method": "password", "auth_client_subnet": "127.0.0.0/24", "service_name": "shop",
				"span_kind": "SPAN_KIND_SERVER", "status_code": "STATUS_CODE_ERROR"}, 3},
			{map[string]string{"span_name": "auth.login", "auth_result": "success", "auth_client_subnet": "127.0.0.0/24"}, 3},
			{map[string]string{"span_name": "auth.authorize", "auth_result": "failure", "auth_failure_reason": "forbidden", "auth_subject": "alice"}, 2},
			{map[string]string{"span_name": "auth.authorize", "auth_result": "success", "auth_subject": "alice"}, 1},
			{map[string]string{"span_name": "auth.authorize", "auth_result": "success", "auth_subject": "bob", "auth_method": "bearer"}, 2},
			{map[string]string{"span_name": "GET /index.html"}, 0},
			{nil, 11},
		} {
			if got := sumCounter(calls, c.labels); got != c.want {
				t.Errorf("authprobe_auth_calls_total%v = %v, want %v", c.labels, got, c.want)
			}
		}
		for _, m := range calls.GetMetric() {
			if l := label(m, "auth_username"); l != "" {
				t.Errorf("auth_username is a label: %v", m.GetLabel())
			}
		}

		hist := fams["authprobe_auth_duration_seconds"]
		if hist == nil || hist.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("no histogram authprobe_auth_duration_seconds; families: %v", names(fams))
		}
		var bounds []float64
		var slowLogin *dto.Histogram
		for _, m := range hist.GetMetric() {
			if label(m, "span_name") == "auth.login" && label(m, "auth_result") == "success" {
				slowLogin = m.GetHistogram()
			}
			if label(m, "auth_client_subnet") != "" || label(m, "auth_subject") != "" {
				t.Errorf("histogram carries calls-only dimensions: %v", m.GetLabel())
			}
		}
		if slowLogin == nil {
			t.Fatal("no duration histogram for successful logins")
		}
		for _, b := range slowLogin.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			switch b.GetUpperBound() {
			case 1:
				if b.GetCumulativeCount() != 2 {
					t.Errorf("login success le=1: %d, want 2", b.GetCumulativeCount())
				}
			case 2.5:
				if b.GetCumulativeCount() != 3 {
					t.Errorf("login success le=2.5: %d, want 3", b.GetCumulativeCount())
				}
			}
		}
		if want := []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, math.Inf(1)}; fmt.Sprint(bounds) != fmt.Sprint(want) {
			t.Errorf("buckets = %v, want %v", bounds, want)
		}
		t.Logf("families: %v", names(fams))
	})

	t.Run("exemplars carry trace ids", func(t *testing.T) {
		// The connector attaches exemplars to the points of the flush after
		// the spans arrived and clears them at the next flush, so fresh
		// spans are sent and the endpoint polled within a flush interval.
		more := mustSend(t, p.Collector.OTLP, []authSpan{login("failure", "invalid_credentials", 20*time.Millisecond)})
		deadline := time.Now().Add(15 * time.Second)
		var body string
		for time.Now().Before(deadline) {
			body = mustGet(t, "http://"+p.Collector.Metrics+"/metrics", "application/openmetrics-text; version=1.0.0")
			if strings.Contains(body, `trace_id="`+more[0]+`"`) {
				for _, l := range strings.Split(body, "\n") {
					if strings.Contains(l, more[0]) && !strings.HasPrefix(l, "authprobe_auth_calls_total{") && !strings.HasPrefix(l, "authprobe_auth_duration_seconds_bucket{") {
						t.Errorf("exemplar on an unexpected series: %s", l)
					}
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("the failed login's trace id %s never appeared as an exemplar:\n%s", more[0], grep(body, "auth.login"))
	})

	t.Run("tail sampling", func(t *testing.T) {
		keep := []int{0, 1, 2, 5, 6, 7, 8, 9} // failures, slow, unsigned, expired
		drop := []int{3, 4, 10, 11}           // fast ordinary successes, not auth
		got := mustReadTracesUntil(t, p.Traces, func(got map[string]string) bool {
			for _, i := range keep {
				if _, ok := got[ids[i]]; !ok {
					return false
				}
			}
			return true
		})
		for _, i := range keep {
			if name, ok := got[ids[i]]; !ok || name != spans[i].name {
				t.Errorf("span %d (%s) not kept: got %q", i, spans[i].name, name)
			}
		}
		// Decisions for all traces were taken together; a last short wait
		// lets a wrongly kept one arrive before the check.
		time.Sleep(2 * time.Second)
		got = mustReadTraces(t, p.Traces)
		for _, i := range drop {
			if _, ok := got[ids[i]]; ok {
				t.Errorf("span %d (%s) kept, want dropped", i, spans[i].name)
			}
		}
	})
}

func mustGet(tb testing.TB, url, accept string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// mustScrapeUntil scrapes the Prometheus text endpoint until ready holds
// (or 30s pass) and returns the last scrape.
func mustScrapeUntil(tb testing.TB, url string, ready func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	tb.Helper()
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := mustGet(tb, url, "text/plain")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		fams, err = parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			tb.Fatalf("parse scrape of %s: %v\n%s", url, err, body)
		}
		if ready(fams) || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sumCounter adds the counters whose labels include want.
func sumCounter(f *dto.MetricFamily, want map[string]string) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		ok := true
		for k, v := range want {
			if label(m, k) != v {
				ok = false
			}
		}
		if ok {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func names(f map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range f {
		out = append(out, n)
	}
	return out
}

func grep(body, s string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// keptSpan is what the backend received of one trace's auth span.
type keptSpan struct {
	name, result string
}

// mustReadKept reads the backend's file: trace id -> name and auth.result.
func mustReadKept(tb testing.TB, path string) map[string]keptSpan {
	tb.Helper()
	got := map[string]keptSpan{}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return got
	}
	if err != nil {
		tb.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var td struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct {
						TraceID    string `json:"traceId"`
						Name       string `json:"name"`
						Attributes []struct {
							Key   string `json:"key"`
							Value struct {
								StringValue string `json:"stringValue"`
							} `json:"value"`
						} `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &td); err != nil {
			continue // a line being written
		}
		for _, rs := range td.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					k := keptSpan{name: s.Name}
					for _, a := range s.Attributes {
						if a.Key == "auth.result" {
							k.result = a.Value.StringValue
						}
					}
					got[strings.ToLower(s.TraceID)] = k
				}
			}
		}
	}
	return got
}

// mustReadTraces reads the backend's file: trace id -> span name.
func mustReadTraces(tb testing.TB, path string) map[string]string {
	tb.Helper()
	names := map[string]string{}
	for id, k := range mustReadKept(tb, path) {
		names[id] = k.name
	}
	return names
}

func mustReadTracesUntil(tb testing.TB, path string, ready func(map[string]string) bool) map[string]string {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := mustReadTraces(tb, path)
		if ready(got) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// collectorEnv gives a collector config fresh loopback addresses for every
// listener the shipped configs open.
func collectorEnv(tb testing.TB, c *Collector, extra map[string]string) map[string]string {
	tb.Helper()
	_, telemetryPort, _ := net.SplitHostPort(mustFreeAddr(tb))
	env := map[string]string{
		"AUTHPROBE_OTLP_GRPC_ENDPOINT":       c.OTLP,
		"AUTHPROBE_PROMETHEUS_ENDPOINT":      c.Metrics,
		"AUTHPROBE_HEALTH_ENDPOINT":          c.Health,
		"AUTHPROBE_AGENT_METRICS_ENDPOINT":   c.AgentMetrics,
		"AUTHPROBE_COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
		"AUTHPROBE_COLLECTOR_TELEMETRY_PORT": telemetryPort,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func newCollector(tb testing.TB) *Collector {
	tb.Helper()
	return &Collector{OTLP: mustFreeAddr(tb), Metrics: mustFreeAddr(tb), Health: mustFreeAddr(tb), AgentMetrics: mustFreeAddr(tb)}
}

// TestGatewaySamplerPipeline runs the scaled layout: gateway.yaml routing
// by trace id to two sampler.yaml instances, which send what they keep to
// the backend. Span metrics come from the gateway, exact; traces arrive
// whole whichever sampler took them.
func TestGatewaySamplerPipeline(t *testing.T) {
	bin := mustCollectorBinary(t)
	traces := filepath.Join(t.TempDir(), "traces.jsonl")
	sink := mustFreeAddr(t)
	mustStart(t, bin, "testdata/sink.yaml", map[string]string{"SINK_OTLP_GRPC_ENDPOINT": sink, "SINK_FILE": traces})
	mustWaitTCP(t, sink)

	samplerCfg, _ := filepath.Abs("../../deploy/collector/sampler.yaml")
	var samplers []string
	for range 2 {
		s := newCollector(t)
		mustStart(t, bin, samplerCfg, collectorEnv(t, s, map[string]string{
			"AUTHPROBE_TRACES_ENDPOINT":    sink,
			"AUTHPROBE_TAIL_DECISION_WAIT": "1s",
			"AUTHPROBE_SAMPLE_PERCENT":     "0",
		}))
		mustWaitHealthy(t, "http://"+s.Health+"/")
		samplers = append(samplers, s.OTLP)
	}

	gwCfg, _ := filepath.Abs("../../deploy/collector/gateway.yaml")
	gw := newCollector(t)
	mustStart(t, bin, gwCfg, collectorEnv(t, gw, map[string]string{
		"AUTHPROBE_SAMPLER_ENDPOINTS":          "[" + strings.Join(samplers, ", ") + "]",
		"AUTHPROBE_SPANMETRICS_FLUSH_INTERVAL": "1s",
	}))
	mustWaitHealthy(t, "http://"+gw.Health+"/")
	mustWaitTCP(t, gw.OTLP)

	var spans []authSpan
	for range 10 {
		spans = append(spans, login("failure", "invalid_credentials", 10*time.Millisecond))
	}
	for range 10 {
		spans = append(spans, login("success", "", 10*time.Millisecond))
	}
	ids := mustSend(t, gw.OTLP, spans)

	fams := mustScrapeUntil(t, "http://"+gw.Metrics+"/metrics", func(f map[string]*dto.MetricFamily) bool {
		return sumCounter(f["authprobe_auth_calls_total"], nil) >= 20
	})
	calls := fams["authprobe_auth_calls_total"]
	if got := sumCounter(calls, map[string]string{"span_name": "auth.login", "auth_result": "failure"}); got != 10 {
		t.Errorf("gateway failures = %v, want 10", got)
	}
	if got := sumCounter(calls, map[string]string{"span_name": "auth.login", "auth_result": "success"}); got != 10 {
		t.Errorf("gateway successes = %v, want 10", got)
	}

	got := mustReadTracesUntil(t, traces, func(got map[string]string) bool {
		for _, id := range ids[:10] {
			if _, ok := got[id]; !ok {
				return false
			}
		}
		return true
	})
	for i, id := range ids[:10] {
		if _, ok := got[id]; !ok {
			t.Errorf("failed login %d (trace %s) not kept", i, id)
		}
	}
	time.Sleep(2 * time.Second)
	got = mustReadTraces(t, traces)
	for i, id := range ids[10:] {
		if _, ok := got[id]; ok {
			t.Errorf("fast successful login %d (trace %s) kept, want dropped", i, id)
		}
	}
}
