package detect_test

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/spanbuilder"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestScrape serves the detector with promhttp on a loopback server,
// scrapes it as Prometheus would, compares the exposition text with
// testdata/scrape.golden, parses it, and lets promtool lint it when
// installed.
func TestScrape(t *testing.T) {
	d, _ := mustDetector(t, detect.Config{TopSources: 2})
	failN(d, "203.0.113.0/24", 1, 12)
	failN(d, "2001:db8:7::/48", 100, 3)
	failN(d, "198.51.100.0/24", 200, 1)
	d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultSuccess, ClientSubnet: "203.0.113.0/24", UserKey: 1})
	d.Observe(spanbuilder.Span{Name: "auth.token", Result: spanbuilder.ResultFailure, FailureReason: "rate_limited", ClientSubnet: "203.0.113.0/24", UserKey: 50})
	d.Observe(spanbuilder.Span{Name: "auth.login", Result: spanbuilder.ResultFailure, FailureReason: "invalid_credentials", ClientSubnet: "203.0.113.0/24",
		Ambiguous: []string{"cl_te", "duplicate_username"}})

	body := mustScrape(t, d)
	golden := filepath.Join("testdata", "scrape.golden")
	if *update {
		if err := os.WriteFile(golden, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden: %v", err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("exposition differs from %s (run with -update to accept):\n%s", golden, body)
	}

	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	failed := mfs["authprobe_auth_failed_usernames"]
	if failed == nil || len(failed.GetMetric()) != 2 {
		t.Fatalf("want 2 failed-username series (TopSources), got %v", failed)
	}
	top := failed.GetMetric()[0]
	for _, m := range failed.GetMetric() {
		if m.GetGauge().GetValue() > top.GetGauge().GetValue() {
			top = m
		}
	}
	if l := top.GetLabel()[0]; l.GetName() != "client_subnet" || l.GetValue() != "203.0.113.0/24" || top.GetGauge().GetValue() != 13 {
		t.Errorf("top source %v = %v, want client_subnet 203.0.113.0/24 = 13", l, top.GetGauge().GetValue())
	}
	if got := mfs["authprobe_detect_sources_tracked"].GetMetric()[0].GetGauge().GetValue(); got != 3 {
		t.Errorf("sources tracked %v, want 3", got)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed; exposition lint skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// mustScrape serves d from its own registry over loopback HTTP and
// returns one scrape in the text format.
func mustScrape(tb testing.TB, d *detect.Detector) []byte {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(d); err != nil {
		tb.Fatalf("register detector: %v", err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	tb.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	return body
}
