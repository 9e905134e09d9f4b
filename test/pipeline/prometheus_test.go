package pipeline

// A Prometheus of the distribution's package, run by a test on its own
// loopback port and storage, and a small client of its HTTP API.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// promServer is a running Prometheus.
type promServer struct {
	Addr   string
	client *http.Client
}

// promConfig is what the live test asks Prometheus to do.
type promConfig struct {
	Interval string            // scrape and evaluation interval
	Rules    []byte            // the rules file's content
	Jobs     map[string]string // job name -> target host:port
}

// mustPrometheusBinary returns /usr/bin/prometheus (or $AUTHPROBE_PROMETHEUS)
// or skips.
func mustPrometheusBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("AUTHPROBE_PROMETHEUS")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("prometheus"); err != nil {
			tb.Skip("prometheus not installed (apt-get install prometheus)")
		}
	}
	return bin
}

// mustStartPrometheus writes the config and rules into a temp dir, runs
// Prometheus with its own storage on a free loopback port, waits until it
// is ready and stops it at cleanup.
func mustStartPrometheus(tb testing.TB, cfg promConfig) *promServer {
	tb.Helper()
	bin := mustPrometheusBinary(tb)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), cfg.Rules, 0o644); err != nil {
		tb.Fatal(err)
	}
	// A scrape must end before the next one starts.
	timeout := "500ms"
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", cfg.Interval, timeout, cfg.Interval)
	fmt.Fprintf(&b, "rule_files: [%q]\nscrape_configs:\n", filepath.Join(dir, "rules.yaml"))
	jobs := make([]string, 0, len(cfg.Jobs))
	for j := range cfg.Jobs {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		fmt.Fprintf(&b, "  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", j, cfg.Jobs[j])
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}

	p := &promServer{Addr: mustFreeAddr(tb), client: &http.Client{Timeout: 5 * time.Second}}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.Addr,
		"--enable-feature=exemplar-storage",
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if tb.Failed() {
			out, _ := os.ReadFile(logf.Name())
			tb.Logf("prometheus log:\n%s\nconfig:\n%s", testutil.Tail(string(out), 4000), b.String())
		}
	})
	mustWaitHealthy(tb, "http://"+p.Addr+"/-/ready")
	return p
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// query evaluates an instant PromQL query now.
func (p *promServer) query(q string) ([]promSample, error) {
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, res.Error)
	}
	out := make([]promSample, 0, len(res.Data.Result))
	for _, r := range res.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64) // also NaN, +Inf
		if err != nil {
			return nil, fmt.Errorf("query %q: value %q: %w", q, s, err)
		}
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// promAlert is one entry of /api/v1/alerts.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promServer) alerts() ([]promAlert, error) {
	var res struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/alerts", &res); err != nil {
		return nil, err
	}
	return res.Data.Alerts, nil
}

// metricNames is every metric name Prometheus holds.
func (p *promServer) metricNames() (map[string]bool, error) {
	var res struct {
		Data []string `json:"data"`
	}
	if err := p.get("/api/v1/label/__name__/values", &res); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, n := range res.Data {
		names[n] = true
	}
	return names, nil
}

func (p *promServer) get(path string, v any) error {
	resp, err := p.client.Get("http://" + p.Addr + path)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("prometheus %s: status %d: %w", path, resp.StatusCode, err)
	}
	return nil
}
