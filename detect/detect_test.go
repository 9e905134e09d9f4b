package detect_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/spanbuilder"
	"github.com/authprobe/authprobe/spanbuilder/secattr"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     detect.Config
		wantErr string
	}{
		{name: "zero takes defaults", cfg: detect.Config{}},
		{name: "explicit", cfg: detect.Config{Window: time.Minute, MaxSources: 10, TopSources: 5}},
		{name: "window too short", cfg: detect.Config{Window: time.Millisecond}, wantErr: "window"},
		{name: "negative window", cfg: detect.Config{Window: -time.Minute}, wantErr: "window"},
		{name: "negative max sources", cfg: detect.Config{MaxSources: -1}, wantErr: "max sources"},
		{name: "negative top sources", cfg: detect.Config{TopSources: -1}, wantErr: "top sources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := detect.New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || d == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: error %v, want one about %q", err, tt.wantErr)
			}
		})
	}
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name  string
		spans []spanbuilder.Span
		want  map[string]float64 // series; absent ones must be absent
	}{
		{
			name: "failures from one subnet count distinct usernames",
			spans: []spanbuilder.Span{
				failure("10.0.0.0/24", 1), failure("10.0.0.0/24", 2), failure("10.0.0.0/24", 2),
				failure("10.0.0.0/24", 3),
			},
			want: map[string]float64{
				`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 4,
				`authprobe_auth_failed_usernames{client_subnet="10.0.0.0/24"}`:                                            3,
				`authprobe_detect_sources_tracked`:                                                                        1,
				`authprobe_detect_sources_evicted_total`:                                                                  0,
			},
		},
		{
			name: "only failures with a username and a subnet reach the sketch",
			spans: []spanbuilder.Span{
				{Name: "auth.login", Result: spanbuilder.ResultSuccess, ClientSubnet: "10.0.0.0/24", UserKey: 1},
				{Name: "auth.login", Result: spanbuilder.ResultError, FailureReason: "server_error", ClientSubnet: "10.0.0.0/24", UserKey: 2},
				{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "invalid_credentials", ClientSubnet: "10.0.0.0/24"},
				{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "invalid_credentials", UserKey: 3},
			},
			want: map[string]float64{
				`authprobe_auth_attempts_total{failure_reason="",result="success",route="auth.login"}`:                    1,
				`authprobe_auth_attempts_total{failure_reason="server_error",result="error",route="auth.login"}`:          1,
				`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 2,
				`authprobe_detect_sources_tracked`:       0,
				`authprobe_detect_sources_evicted_total`: 0,
			},
		},
		{
			name: "subnets are counted apart and results outside the set become unknown",
			spans: []spanbuilder.Span{
				failure("10.0.0.0/24", 1), failure("10.0.1.0/24", 1), failure("2001:db8:1::/48", 7),
				{Name: "auth.token", Result: "maybe"},
			},
			want: map[string]float64{
				`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 3,
				`authprobe_auth_attempts_total{failure_reason="",result="unknown",route="auth.token"}`:                    1,
				`authprobe_auth_failed_usernames{client_subnet="10.0.0.0/24"}`:                                            1,
				`authprobe_auth_failed_usernames{client_subnet="10.0.1.0/24"}`:                                            1,
				`authprobe_auth_failed_usernames{client_subnet="2001:db8:1::/48"}`:                                        1,
				`authprobe_detect_sources_tracked`:                                                                        3,
				`authprobe_detect_sources_evicted_total`:                                                                  0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := mustDetector(t, detect.Config{})
			for _, s := range tt.spans {
				d.Observe(s)
			}
			assertSeries(t, mustGather(t, d), tt.want)
		})
	}
}

func TestSlidingWindow(t *testing.T) {
	// Window 10m in four sub-windows of 2.5m: a failure counts for at
	// least 10m and less than 12.5m.
	d, clock := mustDetector(t, detect.Config{Window: 10 * time.Minute})
	const subnet = "192.0.2.0/24"
	series := `authprobe_auth_failed_usernames{client_subnet="192.0.2.0/24"}`
	for k := uint64(1); k <= 10; k++ { // t=0, sub-window 0
		d.Observe(failure(subnet, k))
	}
	clock.Add(5 * time.Minute) // t=5m, sub-window 2
	for k := uint64(11); k <= 15; k++ {
		d.Observe(failure(subnet, k))
	}
	clock.Add(2*time.Minute + 29*time.Second) // t=7m29s, still sub-window 2
	d.Observe(failure(subnet, 3))             // key 3 again: distinct within sub-window 2

	steps := []struct {
		at      time.Duration
		want    float64 // 0: no series
		tracked float64
	}{
		{at: 9*time.Minute + 59*time.Second, want: 15, tracked: 1},
		{at: 12*time.Minute + 29*time.Second, want: 15, tracked: 1}, // t=0 still in (sub-window 4)
		{at: 12*time.Minute + 30*time.Second, want: 6, tracked: 1},  // sub-window 0 dropped: 11..15 and 3
		{at: 17*time.Minute + 29*time.Second, want: 6, tracked: 1},
		{at: 17*time.Minute + 30*time.Second, want: 0, tracked: 0}, // all gone: forgotten, not evicted
	}
	for _, st := range steps {
		clock.Set(st.at)
		got := mustGather(t, d)
		if got[series] != st.want {
			t.Errorf("at %v: estimate %v, want %v", st.at, got[series], st.want)
		}
		if _, ok := got[series]; st.want == 0 && ok {
			t.Errorf("at %v: series still exported", st.at)
		}
		if got["authprobe_detect_sources_tracked"] != st.tracked {
			t.Errorf("at %v: tracked %v, want %v", st.at, got["authprobe_detect_sources_tracked"], st.tracked)
		}
		if got["authprobe_detect_sources_evicted_total"] != 0 {
			t.Errorf("at %v: expiry counted as eviction", st.at)
		}
	}

	// A jump far ahead clears everything at once; failures start afresh.
	d.Observe(failure(subnet, 99))
	clock.Set(24 * time.Hour)
	d.Observe(failure(subnet, 100))
	if got := mustGather(t, d)[series]; got != 1 {
		t.Errorf("after a day: estimate %v, want 1", got)
	}
}

func TestEviction(t *testing.T) {
	t.Run("lowest estimate goes first", func(t *testing.T) {
		d, _ := mustDetector(t, detect.Config{MaxSources: 3})
		failN(d, "10.0.0.0/24", 1, 5)
		failN(d, "10.0.1.0/24", 100, 1)
		failN(d, "10.0.2.0/24", 200, 3)
		failN(d, "10.0.3.0/24", 300, 2)
		assertSeries(t, mustGather(t, d), map[string]float64{
			`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 11,
			`authprobe_auth_failed_usernames{client_subnet="10.0.0.0/24"}`:                                            5,
			`authprobe_auth_failed_usernames{client_subnet="10.0.2.0/24"}`:                                            3,
			`authprobe_auth_failed_usernames{client_subnet="10.0.3.0/24"}`:                                            2,
			`authprobe_detect_sources_tracked`:                                                                        3,
			`authprobe_detect_sources_evicted_total`:                                                                  1,
		})
	})
	t.Run("growth since the last read is seen", func(t *testing.T) {
		d, _ := mustDetector(t, detect.Config{MaxSources: 2})
		failN(d, "10.0.0.0/24", 1, 1)
		failN(d, "10.0.1.0/24", 100, 2)
		mustGather(t, d) // caches both estimates
		failN(d, "10.0.0.0/24", 2, 10)
		failN(d, "10.0.2.0/24", 200, 1)
		assertSeries(t, mustGather(t, d), map[string]float64{
			`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 14,
			`authprobe_auth_failed_usernames{client_subnet="10.0.0.0/24"}`:                                            11,
			`authprobe_auth_failed_usernames{client_subnet="10.0.2.0/24"}`:                                            1,
			`authprobe_detect_sources_tracked`:                                                                        2,
			`authprobe_detect_sources_evicted_total`:                                                                  1,
		})
	})
	t.Run("ties go to the least recently failing", func(t *testing.T) {
		d, clock := mustDetector(t, detect.Config{MaxSources: 2, Window: 10 * time.Minute})
		failN(d, "10.0.0.0/24", 1, 1)
		clock.Add(3 * time.Minute)
		failN(d, "10.0.1.0/24", 2, 1)
		clock.Add(3 * time.Minute)
		failN(d, "10.0.0.0/24", 1, 1) // same key: same estimate, newer failure
		failN(d, "10.0.2.0/24", 3, 1)
		got := mustGather(t, d)
		if _, ok := got[`authprobe_auth_failed_usernames{client_subnet="10.0.1.0/24"}`]; ok {
			t.Errorf("10.0.1.0/24 kept, want it evicted: %v", got)
		}
		if got["authprobe_detect_sources_evicted_total"] != 1 {
			t.Errorf("evicted %v, want 1", got["authprobe_detect_sources_evicted_total"])
		}
	})
	t.Run("a spray of new subnets keeps the heavy hitter", func(t *testing.T) {
		d, _ := mustDetector(t, detect.Config{MaxSources: 10})
		failN(d, "198.51.100.0/24", 1, 50)
		for i := range 1000 {
			d.Observe(failure(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), uint64(i+1)))
		}
		got := mustGather(t, d)
		if got[`authprobe_auth_failed_usernames{client_subnet="198.51.100.0/24"}`] < 45 {
			t.Errorf("heavy hitter lost: %v", got)
		}
		if got["authprobe_detect_sources_tracked"] != 10 || got["authprobe_detect_sources_evicted_total"] != 991 {
			t.Errorf("tracked %v evicted %v, want 10 and 991",
				got["authprobe_detect_sources_tracked"], got["authprobe_detect_sources_evicted_total"])
		}
	})
}

func TestTopSources(t *testing.T) {
	d, _ := mustDetector(t, detect.Config{TopSources: 2})
	failN(d, "10.0.0.0/24", 1, 4)
	failN(d, "10.0.1.0/24", 100, 9)
	failN(d, "10.0.2.0/24", 200, 1)
	failN(d, "10.0.3.0/24", 300, 6)
	assertSeries(t, mustGather(t, d), map[string]float64{
		`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`: 20,
		`authprobe_auth_failed_usernames{client_subnet="10.0.1.0/24"}`:                                            9,
		`authprobe_auth_failed_usernames{client_subnet="10.0.3.0/24"}`:                                            6,
		`authprobe_detect_sources_tracked`:                                                                        4,
		`authprobe_detect_sources_evicted_total`:                                                                  0,
	})
}

func TestAttemptSeriesCap(t *testing.T) {
	d, _ := mustDetector(t, detect.Config{})
	for i := range 1100 {
		d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: fmt.Sprintf("reason_%d", i)})
	}
	d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "reason_7"}) // existing set
	d.Observe(spanbuilder.Span{Name: "auth.token", Result: spanbuilder.ResultSuccess})                            // new route past the cap
	d.Observe(spanbuilder.Span{Name: "auth.token", Result: spanbuilder.ResultSuccess})

	for i := range 200 { // a runaway set of routes folds into route="other"
		d.Observe(spanbuilder.Span{Name: fmt.Sprintf("route_%d", i), Result: spanbuilder.ResultFailure, FailureReason: "forbidden"})
	}

	got := mustGather(t, d)
	var series int
	var total float64
	for k, v := range got {
		if strings.HasPrefix(k, "authprobe_auth_attempts_total{") {
			series++
			total += v
		}
	}
	if series > 1104 {
		t.Errorf("%d attempt series, want at most 1104", series)
	}
	if total != 1303 {
		t.Errorf("attempts sum to %v, want 1303", total)
	}
	for k, want := range map[string]float64{
		`authprobe_auth_attempts_total{failure_reason="reason_7",result="failure",route="auth.login"}`: 2,
		`authprobe_auth_attempts_total{failure_reason="other",result="failure",route="auth.login"}`:    100,
		`authprobe_auth_attempts_total{failure_reason="other",result="success",route="auth.token"}`:    2,
		`authprobe_auth_attempts_total{failure_reason="other",result="failure",route="route_97"}`:      1,
		`authprobe_auth_attempts_total{failure_reason="other",result="failure",route="other"}`:         102,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// TestAmbiguous: each kind a span names counts once under its route; an
// ambiguous failure has no username key and stays out of the sketch.
func TestAmbiguous(t *testing.T) {
	d, _ := mustDetector(t, detect.Config{})
	both := []string{secattr.AmbiguousUsername, secattr.AmbiguousJSONKey}
	for range 3 {
		d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "invalid_credentials",
			ClientSubnet: "203.0.113.0/24", Ambiguous: both})
	}
	d.Observe(spanbuilder.Span{Name: "auth.token", Result: spanbuilder.ResultSuccess, Ambiguous: []string{secattr.AmbiguousCLTE}})
	d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, ClientSubnet: "203.0.113.0/24", UserKey: 9})

	got := mustGather(t, d)
	want := map[string]float64{
		`authprobe_auth_ambiguous_total{kind="duplicate_username",route="auth.login"}`: 3,
		`authprobe_auth_ambiguous_total{kind="json_duplicate_key",route="auth.login"}`: 3,
		`authprobe_auth_ambiguous_total{kind="cl_te",route="auth.token"}`:              1,
		`authprobe_auth_failed_usernames{client_subnet="203.0.113.0/24"}`:              1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "authprobe_auth_ambiguous_total{") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d ambiguous series, want 3: %v", n, got)
	}
}

func TestAmbiguousSeriesCap(t *testing.T) {
	d, _ := mustDetector(t, detect.Config{})
	for i := range 400 {
		d.Observe(spanbuilder.Span{Name: fmt.Sprintf("route_%d", i), Result: spanbuilder.ResultFailure,
			Ambiguous: []string{fmt.Sprintf("kind_%d", i)}})
	}
	got := mustGather(t, d)
	var series int
	var total float64
	for k, v := range got {
		if strings.HasPrefix(k, "authprobe_auth_ambiguous_total{") {
			series++
			total += v
		}
	}
	if series > 301 || total != 400 {
		t.Errorf("%d series summing to %v, want at most 301 summing to 400", series, total)
	}
	if v := got[`authprobe_auth_ambiguous_total{kind="other",route="other"}`]; v != 100 {
		t.Errorf("overflow series = %v, want 100", v)
	}
}

// TestConcurrent runs Observe from several goroutines while collecting;
// its value is under -race.
func TestConcurrent(t *testing.T) {
	d, clock := mustDetector(t, detect.Config{MaxSources: 50, Window: time.Minute})
	const workers, each = 4, 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				mustGather(t, d)
				clock.Add(time.Second)
			}
		}
	})
	var observers sync.WaitGroup
	for w := range workers {
		observers.Go(func() {
			for i := range each {
				d.Observe(failure(fmt.Sprintf("10.%d.%d.0/24", w, i%80), uint64(w*each+i+1)))
			}
		})
	}
	observers.Wait()
	close(done)
	wg.Wait()

	got := mustGather(t, d)
	if n := got[`authprobe_auth_attempts_total{failure_reason="invalid_credentials",result="failure",route="auth.login"}`]; n != workers*each {
		t.Errorf("attempts %v, want %d", n, workers*each)
	}
	if n := got["authprobe_detect_sources_tracked"]; n < 1 || n > 50 {
		t.Errorf("tracked %v, want 1..50", n)
	}
}

// fakeClock is the injected Config.Now.
type fakeClock struct {
	mu    sync.Mutex
	start time.Time
	t     time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set puts the clock at d after its start.
func (c *fakeClock) Set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.start.Add(d)
}

// mustDetector returns a detector on a fake clock unless cfg has one.
func mustDetector(tb testing.TB, cfg detect.Config) (*detect.Detector, *fakeClock) {
	tb.Helper()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &fakeClock{start: start, t: start}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	d, err := detect.New(cfg)
	if err != nil {
		tb.Fatalf("new detector: %v", err)
	}
	return d, clock
}

func failure(subnet string, key uint64) spanbuilder.Span {
	return spanbuilder.Span{
		Name:          "auth.login",
		RouteKind:     "login",
		Result:        spanbuilder.ResultFailure,
		FailureReason: "invalid_credentials",
		ClientSubnet:  subnet,
		UserKey:       key,
	}
}

// failN observes n failures from subnet with keys first, first+1, ...
func failN(d *detect.Detector, subnet string, first uint64, n int) {
	for i := range n {
		d.Observe(failure(subnet, first+uint64(i)))
	}
}

// mustGather collects d through a pedantic registry (which also checks
// the descriptions against the metrics) and returns series by
// name{label="value",...} with labels sorted.
func mustGather(tb testing.TB, d *detect.Detector) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(d); err != nil {
		tb.Fatalf("register detector: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func assertSeries(tb testing.TB, got, want map[string]float64) {
	tb.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			tb.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			tb.Errorf("unexpected series %s = %v", k, v)
		}
	}
}
