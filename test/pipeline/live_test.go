package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/rulescale"
	"github.com/authprobe/authprobe/test/testutil"
)

// Loopback sources of the live test, each in its own /24: the agent's
// distinct-username sketch and the span metrics' auth_client_subnet are
// per /24, and Linux routes all of 127/8 to lo.
const (
	srcStuffing = "127.0.1.10"
	srcBrute    = "127.0.2.10"
	srcBenign   = "127.0.3.10"
	srcProbe    = "127.0.4.10"
	srcSlow     = "127.0.5.10"
	srcSmuggler = "127.0.6.10"

	subnetStuffing = "127.0.1.0/24"
	subnetBrute    = "127.0.2.0/24"
	subnetBenign   = "127.0.3.0/24"

	benignSubject = "carol" // authorized on /api/orders, never probing
	probeSubject  = "alice" // logs in, then walks /api/admin/...
)

// liveFactor is how much faster than production the live test runs: rule
// windows, for: durations, evaluation, scrape and span-metrics flush
// intervals are divided by it; thresholds are not, so the attacks send at
// rates that cross them within the shortened windows.
func liveFactor(tb testing.TB) float64 {
	tb.Helper()
	f := 20.0
	if s := os.Getenv("AUTHPROBE_LIVE_FACTOR"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 1 {
			tb.Fatalf("AUTHPROBE_LIVE_FACTOR=%q: want a number >= 1", s)
		}
		f = v
	}
	return f
}

func scaled(d time.Duration, factor float64) time.Duration {
	return time.Duration(float64(d) / factor).Round(time.Millisecond)
}

func promDuration(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// sent is one request a test client made: the agent's span carries its
// trace id.
type sent struct {
	traceID string
	route   string // span name the agent gives it
	status  int
}

// ledger records what the clients sent, from several goroutines.
type ledger struct {
	mu   sync.Mutex
	reqs []sent
	errs []string
}

func (l *ledger) add(route string, status int, traceID string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs = append(l.errs, fmt.Sprintf("%s: %v", route, err))
		return
	}
	l.reqs = append(l.reqs, sent{traceID: traceID, route: route, status: status})
}

func (l *ledger) snapshot() ([]sent, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sent(nil), l.reqs...), append([]string(nil), l.errs...)
}

// actor sends step(i) every period, at most max times, until ctx ends.
func actor(ctx context.Context, wg *sync.WaitGroup, period time.Duration, max int, step func(i int)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; i < max; i++ {
			step(i)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// firing is the first time an alert was seen firing, with its labels.
type firing struct {
	at     time.Time
	labels map[string]string
}

// TestLiveDetection runs the whole detection path for real on loopback: an
// uninstrumented python login service (plus a slow replica) under the
// agent, the agent exporting OTLP to the collector of
// deploy/collector/single.yaml (unmodified), a trace backend, and
// Prometheus scraping the collector and the agent with the shipped alert
// rules time-scaled by test/rulescale. Scripted attacks from distinct /24s
// must fire BruteForce, CredentialStuffing, AuthorizationProbing and
// AuthLatencyAnomaly with labels naming the attacker, and nothing for the
// benign client. Then: the backend holds every failed attempt and about
// 10% of the successes, every metric the rules and the dashboard use
// exists, and the dashboard's main panels render from the run
// (AUTHPROBE_WRITE_SNAPSHOT=1 writes them to docs/dashboard-snapshot.txt).
func TestLiveDetection(t *testing.T) {
	testutil.MustRoot(t)
	mustPrometheusBinary(t)
	collectorBin := mustCollectorBinary(t)
	factor := liveFactor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	interval := scaled(15*time.Second, factor)

	// Trace backend, then the collector of single.yaml.
	traces := filepath.Join(t.TempDir(), "traces.jsonl")
	sink := mustFreeAddr(t)
	mustStart(t, collectorBin, "testdata/sink.yaml", map[string]string{"SINK_OTLP_GRPC_ENDPOINT": sink, "SINK_FILE": traces})
	mustWaitTCP(t, sink)
	col := newCollector(t)
	singleCfg, _ := filepath.Abs("../../deploy/collector/single.yaml")
	col.log = mustStart(t, collectorBin, singleCfg, collectorEnv(t, col, map[string]string{
		"AUTHPROBE_TRACES_ENDPOINT":            sink,
		"AUTHPROBE_SPANMETRICS_FLUSH_INTERVAL": promDuration(interval),
		"AUTHPROBE_TAIL_DECISION_WAIT":         "1s",
		// AUTHPROBE_SAMPLE_PERCENT stays at the shipped 10.
	}))
	mustWaitHealthy(t, "http://"+col.Health+"/")
	mustWaitTCP(t, col.OTLP)

	// The service, a slow replica of it, and the agent watching both.
	srv := mustStartLoginServer(t, 0)
	slow := mustStartLoginServer(t, 0, "SLOW_MS=300")
	agentBin := mustBuildAgent(t)
	ag := mustStartAgent(t, nil, agentBin, mustWriteAgentConfig(t, "shop"),
		"--pid", strconv.Itoa(srv.PID), "--pid", strconv.Itoa(slow.PID), "--otlp-endpoint", col.OTLP)

	shipped, err := os.ReadFile("../../deploy/prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := rulescale.Scale(shipped, factor)
	if err != nil {
		t.Fatalf("scale rules: %v", err)
	}
	prom := mustStartPrometheus(t, promConfig{
		Interval: promDuration(interval),
		Rules:    rules,
		Jobs:     map[string]string{"authprobe-agent": ag.MetricsAddr, "authprobe-collector": col.Metrics},
	})
	t.Logf("factor %v: scrape/eval/flush every %v; agent %s, collector %s, prometheus %s",
		factor, interval, ag.MetricsAddr, col.Metrics, prom.Addr)

	// ---- traffic ----
	base, slowBase := "http://"+srv.Addr, "http://"+slow.Addr
	var led ledger
	trafficCtx, stopTraffic := context.WithTimeout(ctx, 150*time.Second)
	defer stopTraffic()
	var wg sync.WaitGroup
	loginStep := func(s *source, b, user, pw string) {
		st, id, _, err := s.login(b, user, pw)
		led.add("auth.login", st, id, err)
	}
	apiStep := func(s *source, path, token string) {
		st, id, err := s.do(http.MethodGet, base+path, "", "", token)
		led.add("auth.authorize", st, id, err)
	}

	// Benign users behind one NAT: ordinary logins, one typo in eight, and
	// authorized API calls. Starts first so that the latency rule has a
	// baseline when the slow replica joins.
	benign := newSource(srcBenign)
	trafficStart := time.Now()
	actor(trafficCtx, &wg, 250*time.Millisecond, 1000, func(i int) {
		switch {
		case i%8 == 7:
			loginStep(benign, base, "alice", "correct-hrose")
		case i%2 == 0:
			loginStep(benign, base, "alice", "correct-horse")
		default:
			loginStep(benign, base, "bob", "hunter2")
		}
	})
	carol := testutil.MakeJWT(benignSubject, "user")
	actor(trafficCtx, &wg, time.Second, 200, func(i int) { apiStep(benign, fmt.Sprintf("/api/orders/%d", i), carol) })

	select {
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		t.Fatal("deadline before the attacks started")
	}

	// BruteForce: > 20 failures per 1m/factor from one /24, > 50% failing.
	// 20/s gives 60 per window at factor 20.
	attackStart := time.Now()
	brute := newSource(srcBrute)
	actor(trafficCtx, &wg, 50*time.Millisecond, 3000, func(i int) {
		loginStep(brute, base, "alice", fmt.Sprintf("guess-%d", i))
	})
	// CredentialStuffing: > 20 distinct failed usernames (the agent's 10m
	// sketch, not scaled) and > 50% failing over 10m/factor. 3/s stays
	// under BruteForce's 20 per 1m/factor, so only this rule names it.
	stuff := newSource(srcStuffing)
	actor(trafficCtx, &wg, 333*time.Millisecond, 150, func(i int) {
		loginStep(stuff, base, fmt.Sprintf("user%03d@example.com", i), "Winter2024!")
	})
	// AuthorizationProbing: >= 10 forbidden per subject in 10m/factor while
	// the subject is also authorized. The token comes from a real login.
	probe := newSource(srcProbe)
	st, id, token, err := probe.login(base, probeSubject, "correct-horse")
	led.add("auth.login", st, id, err)
	if err != nil || st != http.StatusOK || token == "" {
		t.Fatalf("prober login: status %d, err %v", st, err)
	}
	actor(trafficCtx, &wg, 500*time.Millisecond, 400, func(i int) {
		if i%3 == 2 {
			apiStep(probe, fmt.Sprintf("/api/orders/%d", i), token)
			return
		}
		apiStep(probe, fmt.Sprintf("/api/admin/users/%d", i), token)
	})

	// AmbiguousAuthRequest: a login naming the username twice, a decoy
	// first, as an attacker pinning auth.username would; a few are enough.
	smuggler := newSource(srcSmuggler)
	actor(trafficCtx, &wg, 2*time.Second, 20, func(i int) {
		st, id, err := smuggler.do(http.MethodPost, base+"/login",
			fmt.Sprintf("username=decoy&username=alice&password=guess-%d", i), "application/x-www-form-urlencoded", "")
		led.add("auth.login", st, id, err)
	})

	// AuthLatencyAnomaly: the slow replica answers logins after 300ms.
	// Its P99 over 5m/factor must exceed twice the baseline of 2h/factor
	// offset 15m/factor, so it joins once that offset has passed since the
	// benign traffic began.
	slowStart := trafficStart.Add(scaled(15*time.Minute, factor) + 5*time.Second)
	slowSrc := newSource(srcSlow)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-time.After(time.Until(slowStart)):
		case <-trafficCtx.Done():
			return
		}
		var inner sync.WaitGroup
		// Three clients: each waits 300ms per login.
		for range 3 {
			actor(trafficCtx, &inner, 300*time.Millisecond, 300, func(i int) { loginStep(slowSrc, slowBase, "bob", "hunter2") })
		}
		inner.Wait()
	}()

	// ---- detection ----
	want := map[string]string{
		"BruteForce":           "auth_client_subnet=" + subnetBrute,
		"CredentialStuffing":   "client_subnet=" + subnetStuffing,
		"AuthorizationProbing": "auth_subject=" + probeSubject,
		"AuthLatencyAnomaly":   "span_name=auth.login",
		"AmbiguousAuthRequest": "kind=duplicate_username",
	}
	first := map[string]firing{}
	var wrong []string
	var floor time.Duration // attack start to the first attack series in Prometheus
	seenWrong := map[string]bool{}
	for len(first) < len(want) {
		if trafficCtx.Err() != nil {
			break
		}
		if floor == 0 {
			if v, err := prom.query(fmt.Sprintf(`sum(authprobe_auth_calls_total{auth_client_subnet=%q})`, subnetBrute)); err == nil && len(v) > 0 && v[0].Value > 0 {
				floor = time.Since(attackStart)
			}
		}
		alerts, err := prom.alerts()
		if err != nil {
			t.Logf("alerts: %v", err)
		}
		for _, a := range alerts {
			name := a.Labels["alertname"]
			key, ok := want[name]
			if !ok || !matches(a.Labels, key) {
				// Not one we expect, or about someone else: pending is
				// already wrong for the benign client, firing for anyone.
				if a.State == "firing" || mentionsBenign(a.Labels) {
					s := fmt.Sprintf("%s %s %v", name, a.State, a.Labels)
					if !seenWrong[s] {
						seenWrong[s] = true
						wrong = append(wrong, s)
					}
				}
				continue
			}
			if _, done := first[name]; !done && a.State == "firing" {
				first[name] = firing{at: time.Now(), labels: a.Labels}
				t.Logf("%s firing after %.1fs: %v", name, time.Since(attackStart).Seconds(), a.Labels)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}

	// While the attacks still run: the metrics the rules and the dashboard
	// read, and the dashboard's panels.
	checkMetricNames(t, prom)
	checkAgentOTLPMetrics(t, col)
	snapshot := renderDashboard(t, prom, factor, "30s")
	if os.Getenv("AUTHPROBE_WRITE_SNAPSHOT") == "1" {
		path := filepath.Join(testutil.RepoRoot(t), "docs", "dashboard-snapshot.txt")
		if err := os.WriteFile(path, []byte(snapshot), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	} else {
		t.Logf("dashboard snapshot:\n%s", snapshot)
	}
	stopTraffic()
	wg.Wait()

	// ---- verdicts on detection ----
	for _, name := range []string{"BruteForce", "CredentialStuffing", "AuthorizationProbing", "AuthLatencyAnomaly", "AmbiguousAuthRequest"} {
		f, ok := first[name]
		if !ok {
			t.Errorf("%s never fired for %s", name, want[name])
			continue
		}
		start := attackStart
		if name == "AuthLatencyAnomaly" {
			start = slowStart
		}
		d := f.at.Sub(start)
		t.Logf("time to detect %-20s %5.1fs here, x%v = %4.0fs at production timings (labels %v)",
			name, d.Seconds(), factor, d.Seconds()*factor, f.labels)
	}
	t.Logf("pipeline floor (attack start to its first series in Prometheus): %.1fs", floor.Seconds())
	for _, w := range wrong {
		t.Errorf("unexpected alert: %s", w)
	}

	// The agent's log: span exports must all have succeeded; other
	// warnings are shown.
	for _, l := range strings.Split(ag.stderr.String(), "\n") {
		if strings.Contains(l, "span export failed") {
			t.Errorf("agent: %s", l)
		} else if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Logf("agent: %s", l)
		}
	}

	// ---- tail sampling ----
	reqs, errs := led.snapshot()
	if len(errs) > 0 {
		t.Errorf("%d requests failed at the client, first: %s", len(errs), errs[0])
	}
	failed := map[string]sent{}
	var successes int
	for _, r := range reqs {
		if r.status >= 400 {
			failed[r.traceID] = r
		} else {
			successes++
		}
	}
	// The agent's own count of failures, exact (span metrics are computed
	// before sampling), must be what the clients caused.
	var agentFailures float64
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		v, err := prom.query(`sum(authprobe_auth_calls_total{auth_result="failure"})`)
		if err == nil && len(v) == 1 {
			agentFailures = v[0].Value
			if int(agentFailures) == len(failed) {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if int(agentFailures) != len(failed) {
		t.Errorf("span metrics count %v failures, the clients caused %d", agentFailures, len(failed))
	}

	var kept map[string]keptSpan
	deadline = time.Now().Add(30 * time.Second)
	for {
		kept = mustReadKept(t, traces)
		missing := 0
		for id := range failed {
			if _, ok := kept[id]; !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // stragglers of the last decisions
	kept = mustReadKept(t, traces)
	var missing []string
	for id, r := range failed {
		k, ok := kept[id]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s %s %d", id, r.route, r.status))
		case k.name != r.route || k.result != "failure":
			t.Errorf("trace %s: kept as %s result %s, sent %s status %d", id, k.name, k.result, r.route, r.status)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%d of %d failed attempts missing from the sampled traces, e.g. %v", len(missing), len(failed), missing[:min(5, len(missing))])
	}
	keptFailures, keptSuccesses := 0, 0
	for _, k := range kept {
		switch k.result {
		case "failure":
			keptFailures++
		case "success":
			keptSuccesses++
		}
	}
	if keptFailures != len(failed) {
		t.Errorf("backend holds %d failure spans, want exactly %d", keptFailures, len(failed))
	}
	frac := float64(keptSuccesses) / float64(successes)
	t.Logf("tail sampling: kept %d/%d failures, %d/%d successes = %.1f%% (policy: all failures, 10%% of the rest)",
		keptFailures, len(failed), keptSuccesses, successes, 100*frac)
	if successes < 200 {
		t.Errorf("only %d successful attempts: too few to judge the sampled fraction", successes)
	} else if frac < 0.02 || frac > 0.30 {
		t.Errorf("kept %.1f%% of successes, want about 10%% (2%%..30%%)", 100*frac)
	}
}

// matches reports whether labels hold key ("name=value").
func matches(labels map[string]string, key string) bool {
	k, v, _ := strings.Cut(key, "=")
	return labels[k] == v
}

func mentionsBenign(labels map[string]string) bool {
	for _, v := range labels {
		if v == subnetBenign || v == benignSubject {
			return true
		}
	}
	return false
}

// metricNameRE finds the authprobe metric names in PromQL text.
var metricNameRE = regexp.MustCompile(`\bauthprobe_[a-zA-Z0-9_]+`)

// checkMetricNames asserts that every metric the shipped rules and
// dashboard query exists in Prometheus during the run.
func checkMetricNames(t *testing.T, prom *promServer) {
	t.Helper()
	used := map[string][]string{"up": {"rules.yaml", "dashboard"}, "ALERTS": {"dashboard"}}
	for _, f := range []struct{ path, what string }{
		{"../../deploy/prometheus/rules.yaml", "rules.yaml"},
		{"../../deploy/grafana/authprobe-dashboard.json", "dashboard"},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range metricNameRE.FindAllString(string(b), -1) {
			used[n] = append(used[n], f.what)
		}
	}
	have, err := prom.metricNames()
	if err != nil {
		t.Fatalf("metric names: %v", err)
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !have[n] {
			t.Errorf("metric %s (used by %s) does not exist in Prometheus", n, strings.Join(dedup(used[n]), ", "))
		}
	}
	t.Logf("%d metric names of the rules and dashboard exist: %s", len(names), strings.Join(names, " "))
}

func dedup(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// legendRE is a Grafana legend placeholder {{label}}.
var legendRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// renderDashboard evaluates every target of the shipped dashboard now,
// $__rate_interval being window and $service all services, and writes
// the results as plain text, one block per panel.
func renderDashboard(t *testing.T, prom *promServer, factor float64, window string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/authprobe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr         string `json:"expr"`
				LegendFormat string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%s: snapshot of a live run\n", dash.Title)
	fmt.Fprintf(&out, "Generated by `AUTHPROBE_WRITE_SNAPSHOT=1 go test -run TestLiveDetection ./test/pipeline/`\n")
	fmt.Fprintf(&out, "(scripted attacks on loopback, timings scaled by %v; $__rate_interval = %s,\n", factor, window)
	fmt.Fprintf(&out, "rates per second; taken while the attacks were running). See docs/pipeline.md.\n")
	for _, p := range dash.Panels {
		fmt.Fprintf(&out, "\n== %s ==\n", p.Title)
		var rows [][2]string
		for _, tg := range p.Targets {
			q := strings.NewReplacer("$__rate_interval", window, "$service", ".*").Replace(tg.Expr)
			res, err := prom.query(q)
			if err != nil {
				t.Errorf("dashboard panel %q: %v", p.Title, err)
				continue
			}
			for _, s := range res {
				legend := legendRE.ReplaceAllStringFunc(tg.LegendFormat, func(m string) string {
					return s.Metric[legendRE.FindStringSubmatch(m)[1]]
				})
				if strings.TrimSpace(legend) == "" {
					legend = "(value)"
				}
				rows = append(rows, [2]string{legend, strconv.FormatFloat(s.Value, 'f', 3, 64)})
			}
		}
		// Largest first, as the panels' top-10 legends read; ties by name.
		sort.SliceStable(rows, func(i, j int) bool {
			vi, _ := strconv.ParseFloat(rows[i][1], 64)
			vj, _ := strconv.ParseFloat(rows[j][1], 64)
			if vi != vj {
				return vi > vj
			}
			return rows[i][0] < rows[j][0]
		})
		if len(rows) == 0 {
			fmt.Fprintf(&out, "  (no data)\n")
		}
		width := 0
		for _, r := range rows {
			width = max(width, len(r[0]))
		}
		for _, r := range rows {
			fmt.Fprintf(&out, "  %-*s  %s\n", width, r[0], r[1])
		}
	}
	return out.String()
}

// checkAgentOTLPMetrics: with an OTLP endpoint the agent also pushes its
// detection metrics as OTLP metrics; single.yaml re-exposes them under the
// agent's own names.
func checkAgentOTLPMetrics(t *testing.T, col *Collector) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second) // the agent pushes every 15s
	var body string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + col.AgentMetrics + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, "authprobe_auth_attempts_total{") && strings.Contains(body, "authprobe_auth_failed_usernames{") {
				t.Logf("the agent's OTLP metrics reach the collector")
				return
			}
		}
		time.Sleep(time.Second)
	}
	t.Errorf("agent OTLP metrics not re-exposed by the collector at %s:\n%.2000s", col.AgentMetrics, body)
}
